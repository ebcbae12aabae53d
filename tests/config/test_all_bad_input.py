"""All bad input at once: every problem of a dataset (unreadable lines, duplicate IDs, records the
prompt or a scorer cannot use) is listed in one pass with its file and line; exit 2, nothing sent."""

from __future__ import annotations

import json

from tests.conftest import TICKETS, base_suite


def _write_lines(project, lines: list[str]) -> None:
    path = project.root / "suites" / "data" / "tickets.jsonl"
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def test_every_problem_of_a_dataset_is_reported_in_one_pass(project, cli, fake_server):
    lines = [json.dumps(t) for t in TICKETS[:2]]
    lines.append('{"id": "a3", "text": "cut off')                                  # line 3: truncated
    lines += [json.dumps(t) for t in TICKETS[3:6]]
    lines.append(json.dumps(dict(TICKETS[1], text="again")))                       # line 7: a2 again
    lines.append(json.dumps({"id": "a8", "label": "bug"}))                         # line 8: no text
    lines.append(json.dumps({"id": "a9", "text": "Where is my invoice?"}))         # line 9: no label
    _write_lines(project, lines)
    project.write_suite(base_suite(fake_server.base_url))
    result = cli("run", str(project.suite_path))
    assert result.exit_code == 2, result.output
    assert "tickets.jsonl: 4 problems in the input; nothing was sent" in result.output
    for expected in ["line 3: invalid JSON: Unterminated string starting at (column 22)",
                     "line 7: duplicate item ID 'a2' (at line 2, line 7)",
                     "line 8 (id 'a8'): missing text, which the prompt route@v1 uses",
                     "line 9 (id 'a9'): no 'label' for scorer accuracy"]:
        assert expected in result.output, result.output
    assert fake_server.log.total == 0
    assert project.run_dirs() == []


def test_the_column_of_a_json_error_is_on_its_own_line(project, cli):
    _write_lines(project, [json.dumps(TICKETS[0]), '{"id": "a2", "text": "no closing brace"'])
    result = cli("validate", str(project.suite_path))
    assert result.exit_code == 2, result.output
    assert "line 2: invalid JSON: Expecting ',' delimiter (column 40)" in result.output


def test_a_long_list_of_problems_is_capped(project, cli, fake_server):
    _write_lines(project, [json.dumps({"id": f"x{n}", "text": "t"}) for n in range(25)])
    project.write_suite(base_suite(fake_server.base_url))
    result = cli("run", str(project.suite_path))
    assert result.exit_code == 2, result.output
    assert "25 problems in the input" in result.output and "and 5 more" in result.output
    assert "line 20 (id 'x19')" in result.output and "line 21 (id 'x20')" not in result.output
    assert fake_server.log.total == 0


def test_a_dataset_path_without_extension_is_not_found_at_once(project, cli, fake_server):
    suite = base_suite(fake_server.base_url)
    suite["dataset"]["path"] = "data/tickets"  # not a file (tickets.jsonl is), and not a hub name
    project.write_suite(suite)
    result = cli("run", str(project.suite_path))
    assert result.exit_code == 2, result.output
    assert "dataset file not found" in result.output and "did you mean tickets.jsonl?" in result.output
    assert str(project.root / "suites" / "data" / "tickets") in result.output.replace("\n", "")


def test_an_owner_slash_name_path_is_a_hub_dataset_only_when_format_says_so(project, cli):
    suite = base_suite()
    suite["dataset"]["path"] = "acme/support-tickets"
    project.write_suite(suite)
    result = cli("validate", str(project.suite_path))
    assert result.exit_code == 2, result.output
    assert "dataset file not found" in result.output and "dataset.format: hub" in result.output
