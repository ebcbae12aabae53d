"""Ctrl-C or SIGTERM during `promote --full` stops as cleanly as `run`, and the printed command
finishes that full run (sorting its outputs) without re-sending what succeeded."""

from __future__ import annotations

import json
import re
import shlex
import signal

import pytest

from harness.testing.fake_server import FakeLLMServer
from tests.conftest import base_suite, write_records
from tests.runs.processes import start, succeeded_ids, wait_for_progress

LABELS = ["billing", "bug", "feature request", "account access", "cancellation"]
N = 300


def _echo_label(prompt: str) -> str:
    return next((label for label in LABELS if label in prompt), "no idea")


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_full_run_resumes_with_the_printed_command(project, cli, stop_signal):
    records = [{"id": f"s{n:03d}", "text": f"ticket {n} about {LABELS[n % 5]}", "label": LABELS[n % 5]}
               for n in range(N)]
    write_records(project.root / "suites" / "data" / "tickets.jsonl", records)
    with FakeLLMServer(_echo_label) as server:
        suite = base_suite(server.base_url)
        suite["gate"] = {"primary": [{"metric": "accuracy", "margin": 0.02}]}
        project.write_suite(suite)
        assert cli("run", str(project.suite_path)).exit_code == 0
        [baseline] = project.run_dirs()
        assert cli("baseline", "set", str(project.suite_path), "--from", baseline.name).exit_code == 0
        assert cli("run", str(project.suite_path), "--new").exit_code == 0
        candidate = project.run_dirs()[-1]
        assert cli("gate", candidate.name, "--reports-dir", str(project.root / "reports")).exit_code == 0

        server.latency_s = 0.05  # slow enough to stop the full run part-way
        process = start("promote", str(project.suite_path), "--run", candidate.name, "--full")
        full = wait_for_progress(project.root / "reports" / "demo", process, at_least=20,
                                 ignore=(baseline, candidate))
        process.send_signal(stop_signal)
        out, err = process.communicate(timeout=30)
        assert process.returncode == 130, out + err
        assert "Traceback" not in err and "Task exception" not in err, err
        command = re.search(r"Resume with: (.+)", err).group(1)
        assert json.loads((full / "manifest.json").read_text())["status"] == "interrupted"
        done_before = succeeded_ids(full)
        server.log.reset()

        words = shlex.split(command)
        assert words[:2] == ["evalbatch", "run"]
        resumed = cli(*words[1:])
    assert resumed.exit_code == 0, resumed.output
    assert f"Resuming run {full.name}" in resumed.output and f"full run {full.name}:" in resumed.output
    assert len(project.run_dirs()) == 3  # baseline, candidate, the one full run
    assert not set(server.log.attempts) & done_before and len(server.log.attempts) == N - len(done_before)
    sorted_lines = [(full / name).read_text().splitlines() for name in ("validated.jsonl", "needs_review.jsonl")]
    assert sum(len(lines) for lines in sorted_lines) == N
