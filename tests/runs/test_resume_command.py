"""The printed resume command repeats the run's options: following it continues that very run."""

from __future__ import annotations

import json
import re
import shlex
import signal

import pytest

from harness.testing.fake_server import FakeLLMServer, keyword_replier
from tests.conftest import base_suite
from tests.runs.processes import ITEMS, many_tickets, start, succeeded_ids, wait_for_progress


@pytest.fixture
def slow_server():
    with FakeLLMServer(keyword_replier({}, default="billing"), latency_s=0.05) as server:
        yield server


def test_the_printed_resume_command_resumes_the_same_run(project, cli, slow_server, tmp_path):
    many_tickets(project)
    (project.root / "prompts" / "route" / "v2.j2").write_text("Ticket: {{ text }}\nTeam, in one word:")
    project.write_suite(base_suite(slow_server.base_url))
    reports = tmp_path / "other reports"
    process = start("run", str(project.suite_path), "--reports-dir", str(reports), "--slice", "all",
                    "--limit", "100", "--prompt-version", "v2", "--sample", "110", "--rpm", "60000")
    run_dir = wait_for_progress(reports / "demo", process, at_least=10)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 130, out + err
    command = re.search(r"Resume with: (.+)", err).group(1)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["options"] == {"slices": ["all"], "limit": 100, "prompt_version": "v2", "sample": 110,
                                   "reports_dir": str(reports.resolve()), "full_promotion": False,
                                   "rpm": 60000.0, "tpm": None, "mode": None}
    assert "--rpm 60000 --resume" in command  # the resumed session is paced as the first was
    done_before = succeeded_ids(run_dir)
    slow_server.log.reset()

    words = shlex.split(command)
    assert words[:2] == ["evalbatch", "run"]
    resumed = cli(*words[1:])
    assert resumed.exit_code == 0, resumed.output
    assert f"Resuming run {run_dir.name}" in resumed.output
    assert sorted(p.name for p in (reports / "demo").glob("*/")) == [run_dir.name]  # no second run
    assert not set(slow_server.log.attempts) & done_before  # nothing that had succeeded was sent again
    assert len(succeeded_ids(run_dir)) == 100 == len(done_before) + len(slow_server.log.attempts)
    assert ITEMS > 100
