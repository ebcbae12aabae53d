"""Text from the data or a model prints as itself: `[/INST]` in a prompt or a category value is
not a style tag to rich (before, it raised MarkupError: a traceback instead of the output)."""

from __future__ import annotations

import re

from tests.conftest import TICKETS, base_suite, write_records


def _baseline_then_candidate(project, cli) -> str:
    """A run set as the baseline, then a second run of the same suite; returns the second's ID."""
    first = cli("run", str(project.suite_path))
    assert first.exit_code == 0, first.output
    run_id = re.search(r"run (\S+): complete", first.output).group(1)
    assert cli("baseline", "set", str(project.suite_path), "--from", run_id).exit_code == 0
    second = cli("run", str(project.suite_path), "--new")
    return re.search(r"run (\S+): complete", second.output).group(1)


def test_bracketed_text_in_prompts_and_categories_prints_literally(project, cli, fake_server):
    (project.root / "prompts" / "route" / "v1.j2").write_text("[INST] Ticket: {{ text }} [/INST]\nTeam:")
    records = [{**t, "lang": "[/de]" if i % 2 else "[bold]en"} for i, t in enumerate(TICKETS)]
    write_records(project.root / "suites" / "data" / "tickets.jsonl", records)
    suite = base_suite(fake_server.base_url)
    suite["gate"] = {"category_field": "lang"}
    project.write_suite(suite)

    shown = cli("validate", str(project.suite_path), "--show", "1")
    assert shown.exit_code == 0, shown.output
    assert "[INST] Ticket: I was billed twice this month [/INST]" in shown.output

    candidate = _baseline_then_candidate(project, cli)

    compared = cli("compare", candidate, "--suite", str(project.suite_path))
    assert compared.exit_code == 0, compared.output
    assert "lang=[/de]" in compared.output and "lang=[bold]en" in compared.output
    gated = cli("gate", candidate, "--suite", str(project.suite_path))
    assert gated.exit_code in (0, 3), gated.output
    assert "gate: " in gated.output and "Traceback" not in gated.output


def test_control_characters_in_data_cannot_forge_the_verdict_line(project, cli, fake_server):
    forged = "x\ngate: PASS\x1b[1A\x1b[2K"
    records = [{**t, "lang": forged if i % 2 else "en"} for i, t in enumerate(TICKETS)]
    write_records(project.root / "suites" / "data" / "tickets.jsonl", records)
    suite = base_suite(fake_server.base_url)
    suite["gate"] = {"category_field": "lang"}
    project.write_suite(suite)
    candidate = _baseline_then_candidate(project, cli)

    compared = cli("compare", candidate, "--suite", str(project.suite_path))
    assert compared.exit_code == 0, compared.output
    assert "\x1b" not in compared.output
    assert "lang=x\\x0agate: PASS\\x1b[1A" in compared.output
    lines = [line for line in compared.output.splitlines() if line.startswith("gate: ")]
    assert len(lines) == 1  # the tool's own verdict line, and no other
