"""--retry-failed keeps every attempt, and the printed retry command repeats the run's options."""

from __future__ import annotations

import re
import shlex
import sqlite3

from harness.testing.fake_server import FakeLLMServer, FaultRule, keyword_replier
from tests.conftest import TICKET_REPLIES, base_suite


def _follow(cli, command: str):
    words = shlex.split(command)
    assert words[:2] == ["evalbatch", "run"]
    return cli(*words[1:])


def test_retry_failed_keeps_every_attempt_and_the_printed_command_retries_that_run(project, cli, tmp_path):
    (project.root / "prompts" / "route" / "v2.j2").write_text("Ticket: {{ text }}\nTeam, in one word:")
    reports = tmp_path / "elsewhere reports"  # a space: the command must be quoted
    # Every request fails 3 times with 503: with max_retries 2 the first round ends failed_terminal.
    with FakeLLMServer(keyword_replier(TICKET_REPLIES), faults=[FaultRule(status=503, times=3)]) as server:
        project.write_suite(base_suite(server.base_url))
        first = cli("run", str(project.suite_path), "--reports-dir", str(reports), "--slice", "all",
                    "--limit", "4", "--prompt-version", "v2", "--sample", "5")
        assert first.exit_code == 1, first.output
        retry = re.search(r"Retry them with: (.+)", first.output).group(1)
        assert server.log.total == 4 * 3
        again = _follow(cli, retry)
    assert again.exit_code == 0, again.output
    [run_dir] = sorted(p for p in (reports / "demo").glob("*/"))
    assert f"Resuming run {run_dir.name}" in again.output
    assert server.log.total == 4 * 4 and set(server.log.successes.values()) == {1}

    db = sqlite3.connect(run_dir / "run.sqlite")
    per_request = {}
    for request_id, attempt, retry_round, outcome, status in db.execute(
            "SELECT request_id, attempt, retry_round, outcome, status FROM attempts ORDER BY request_id, attempt"):
        per_request.setdefault(request_id, []).append((attempt, retry_round, outcome, status))
    assert len(per_request) == 4
    for history in per_request.values():  # the first 503 is still there, and numbers never restart
        assert history == [(1, 1, "failed_retryable", 503), (2, 1, "failed_retryable", 503),
                           (3, 1, "failed_terminal", 503), (4, 2, "succeeded", None)]
    assert db.execute("SELECT retry_round, requeued FROM retry_rounds").fetchall() == [(2, 4)]
    assert db.execute("SELECT DISTINCT attempts FROM requests").fetchall() == [(4,)]
