"""`evalbatch validate`: shows what would be sent, warns about a relabelled prompt, sends nothing."""

from __future__ import annotations

import json

from tests.conftest import TICKETS, base_suite, write_records


def test_validate_shows_the_rendered_requests(project, cli, fake_server):
    project.write_suite(base_suite(fake_server.base_url))
    result = cli("validate", str(project.suite_path), "--show", "2")
    assert result.exit_code == 0, result.output
    assert "--- a1 (line 1), fake\nTicket: I was billed twice this month\nTeam:\n" in result.output
    assert "--- a2 (line 2), fake\nTicket: The export button crashes the app\nTeam:\n" in result.output
    assert "a3" not in result.output and "ok: demo: 6 items" in result.output
    assert fake_server.log.total == 0


def test_validate_shows_chat_messages_of_another_prompt_version(project, cli):
    (project.root / "prompts" / "route" / "v2.chat.yaml").write_text(
        "- {role: system, content: 'Route the ticket to a team.'}\n- {role: user, content: '{{ text }}'}\n")
    result = cli("validate", str(project.suite_path), "--prompt-version", "v2", "--show", "1")
    assert result.exit_code == 0, result.output
    assert ("--- a1 (line 1), fake\n[system]\n  Route the ticket to a team.\n[user]\n"
            "  I was billed twice this month\n") in result.output
    assert "prompt route@v2" in result.output


def test_validate_shortens_long_prompts_for_the_console(project, cli):
    examples = "".join(f"Example {n}: ticket {n}\n" for n in range(30))
    (project.root / "prompts" / "route" / "v1.j2").write_text(examples + "Ticket: {{ text }}\nTeam:")
    records = [dict(TICKETS[0], text="word " * 100)]
    write_records(project.root / "suites" / "data" / "tickets.jsonl", records)
    result = cli("validate", str(project.suite_path), "--show", "1")
    assert result.exit_code == 0, result.output
    shown = result.output.split("ok: ")[0].splitlines()
    assert shown[0] == "--- a1 (line 1), fake" and shown[1] == "Example 0: ticket 0"
    assert "... 21 more lines ..." in shown and shown[-1] == "Team:"
    assert any(line.endswith("... (+348 chars)") for line in shown), shown
    assert len(shown) == 13


def test_validate_warns_when_the_prompt_changed_under_the_same_version(project, cli, fake_server):
    project.write_suite(base_suite(fake_server.base_url))
    assert cli("run", str(project.suite_path)).exit_code == 0
    [run_dir] = project.run_dirs()
    assert "warning" not in cli("validate", str(project.suite_path)).output
    (project.root / "prompts" / "route" / "v1.j2").write_text("Support ticket: {{ text }}\nTeam:")
    result = cli("validate", str(project.suite_path))
    assert result.exit_code == 0, result.output
    assert f"prompt route@v1 changed since run {run_dir.name}" in result.output.replace("\n", " ")
    assert fake_server.log.total == 6  # only the run sent anything


def test_validate_lists_every_bad_record(project, cli):
    path = project.root / "suites" / "data" / "tickets.jsonl"
    write_records(path, TICKETS + [{"id": "a7", "label": "bug"}])
    path.write_text(path.read_text() + '{"id": "a8", "text": \n' + json.dumps(TICKETS[0]) + "\n")
    result = cli("validate", str(project.suite_path), "--show", "3")
    assert result.exit_code == 2, result.output
    assert "3 problems in the input; nothing was sent" in result.output
    assert "line 7 (id 'a7'): missing text" in result.output and "line 8: invalid JSON" in result.output
    assert "line 9: duplicate item ID 'a1' (at line 1, line 9)" in result.output
    assert "---" not in result.output
