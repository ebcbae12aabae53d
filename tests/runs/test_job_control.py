"""Job control on real runs: `status` while another process sends, `cancel` (running and idle)
then resume, and `retry --failed` with the prompt version frozen in the run."""

from __future__ import annotations

import json
import re
import signal
import sqlite3

import pytest

from harness.runs.manifest import read_manifest
from harness.testing.fake_server import FakeLLMServer, FaultRule, keyword_replier
from tests.conftest import TICKET_REPLIES, base_suite
from tests.runs.processes import ITEMS, many_tickets, start, succeeded_ids, wait_for_progress


@pytest.fixture
def slow_server():
    # 120 requests at 4 in flight and 0.2 s each: the run lasts ~6 s, time to look at it.
    with FakeLLMServer(keyword_replier({}, default="billing"), latency_s=0.2) as server:
        yield server


def _states(run_dir) -> dict[str, int]:
    db = sqlite3.connect(f"file:{run_dir / 'run.sqlite'}?mode=ro", uri=True)
    try:
        return dict(db.execute("SELECT state, COUNT(*) FROM requests GROUP BY state").fetchall())
    finally:
        db.close()


def _cancel_flag(run_dir) -> bool:
    db = sqlite3.connect(f"file:{run_dir / 'run.sqlite'}?mode=ro", uri=True)
    try:
        return db.execute("SELECT 1 FROM meta WHERE key = 'cancel_requested'").fetchone() is not None
    finally:
        db.close()


def test_status_of_a_run_another_process_is_sending(project, cli, slow_server):
    many_tickets(project)
    project.write_suite(base_suite(slow_server.base_url))
    process = start("run", str(project.suite_path))
    try:
        run_dir = wait_for_progress(project.root / "reports" / "demo", process, at_least=8)
        result = cli("status", run_dir.name, "--suite", str(project.suite_path), "--json")
        assert result.exit_code == 0, result.output
        job = json.loads(result.output)
        assert process.poll() is None  # it was looked at while it ran
        assert job["running"].startswith(f"process {process.pid} ")
        assert job["requests"] == sum(job["states"].values()) == ITEMS
        assert job["states"]["succeeded"] >= 8 and job["remaining"] > 0
        assert job["remaining"] == ITEMS - job["states"]["succeeded"] - job["states"]["failed_terminal"]
        assert job["rate_per_s"] > 0 and job["eta_s"] > 0
        assert job["metrics"]["submitted"] == ITEMS and job["metrics"]["succeeded"] == job["states"]["succeeded"]
        assert job["spend_usd"] is None  # the fake model has no price
        text = cli("status", str(run_dir))  # by folder, from anywhere
        assert text.exit_code == 0, text.output
        assert f"running: process {process.pid} " in text.output and "req/s over the last minute" in text.output
        assert "metrics: 120 submitted" in text.output
    finally:
        out, err = process.communicate(timeout=120)
    assert process.returncode == 0, out + err
    # The reader took no lock and wrote nothing: the run finished as if alone.
    finished = cli("status", run_dir.name, "--reports-dir", str(project.root / "reports"))
    assert "run " + run_dir.name + " (demo): complete" in finished.output and "ETA" not in finished.output
    assert len(slow_server.log.attempts) == ITEMS and set(slow_server.log.attempts.values()) == {1}


def test_cancel_a_running_run_then_resume_it_without_sending_anything_twice(project, cli, slow_server):
    many_tickets(project)
    project.write_suite(base_suite(slow_server.base_url))
    process = start("run", str(project.suite_path))
    run_dir = wait_for_progress(project.root / "reports" / "demo", process, at_least=8)
    cancelled = cli("cancel", run_dir.name, "--suite", str(project.suite_path))
    assert cancelled.exit_code == 0, cancelled.output
    assert f"cancel requested: process {process.pid} " in cancelled.output
    assert f"--resume {run_dir.name}" in cancelled.output

    out, err = process.communicate(timeout=60)
    assert process.returncode == 1, out + err
    assert f"Run {run_dir.name} was cancelled (evalbatch cancel)" in out
    assert re.search(rf"Resume with: evalbatch run \S+demo.yaml --resume {run_dir.name}", out), out
    assert "Traceback" not in err
    assert read_manifest(run_dir).status == "cancelled"
    states = _states(run_dir)
    # It stopped sending: requests were left, and none is stuck in flight.
    assert states.get("queued", 0) > 0 and "processing" not in states, states
    sent_before = dict(slow_server.log.attempts)
    assert len(sent_before) == states["succeeded"] and set(sent_before.values()) == {1}

    resumed = cli("run", str(project.suite_path), "--resume", run_dir.name)
    assert resumed.exit_code == 0, resumed.output
    assert f"Run {run_dir.name} was cancelled; the cancel request is cleared and the run continues" in resumed.output
    assert read_manifest(run_dir).status == "complete" and not _cancel_flag(run_dir)
    assert len(succeeded_ids(run_dir)) == ITEMS
    # Each request reached the server exactly once over both processes.
    assert len(slow_server.log.attempts) == ITEMS and set(slow_server.log.attempts.values()) == {1}
    assert read_manifest(run_dir).metrics.attempts == ITEMS


def test_cancel_an_idle_run_marks_it_cancelled_and_resuming_clears_it(project, cli, slow_server):
    many_tickets(project)
    project.write_suite(base_suite(slow_server.base_url))
    process = start("run", str(project.suite_path))
    run_dir = wait_for_progress(project.root / "reports" / "demo", process, at_least=5)
    process.send_signal(signal.SIGINT)
    process.communicate(timeout=60)
    assert read_manifest(run_dir).status == "interrupted"
    done_before = succeeded_ids(run_dir)
    slow_server.log.reset()  # requests cut off by Ctrl-C were answered, never stored: they go again

    cancelled = cli("cancel", str(run_dir))
    assert cancelled.exit_code == 0, cancelled.output
    assert f"run {run_dir.name} cancelled (no process was running it)" in cancelled.output
    assert read_manifest(run_dir).status == "cancelled" and _cancel_flag(run_dir)
    shown = cli("status", str(run_dir))
    assert f"run {run_dir.name} (demo): cancelled" in shown.output and "running:" not in shown.output
    assert f"not finished. Resume with: evalbatch run {project.suite_path} --resume {run_dir.name}" in shown.output

    resumed = cli("run", str(project.suite_path), "--resume", run_dir.name)
    assert resumed.exit_code == 0, resumed.output
    assert "the cancel request is cleared" in resumed.output
    assert read_manifest(run_dir).status == "complete" and not _cancel_flag(run_dir)
    assert len(succeeded_ids(run_dir)) == ITEMS
    assert len(slow_server.log.attempts) == ITEMS - len(done_before) and set(slow_server.log.attempts.values()) == {1}
    assert not set(slow_server.log.attempts) & done_before

    again = cli("cancel", str(run_dir))  # a finished run has nothing to cancel, and stays as it is
    assert again.exit_code == 0 and "is complete; nothing to cancel" in again.output
    assert read_manifest(run_dir).status == "complete" and not _cancel_flag(run_dir)


def test_retry_failed_uses_the_prompt_version_frozen_in_the_run(project, cli):
    (project.root / "prompts" / "route" / "v2.j2").write_text("Ticket: {{ text }}\nTeam, in one word:")
    answered: list[str] = []

    def replier(prompt: str) -> str:
        answered.append(prompt)
        return keyword_replier(TICKET_REPLIES)(prompt)

    # Two tickets fail 3 times with 503: with max_retries 2 they end failed_terminal.
    faults = [FaultRule(status=503, times=3, match="billed"), FaultRule(status=503, times=3, match="dark mode")]
    with FakeLLMServer(replier, faults=faults) as server:
        project.write_suite(base_suite(server.base_url))
        first = cli("run", str(project.suite_path))
        assert first.exit_code == 1, first.output
        [run_dir] = project.run_dirs()
        assert _states(run_dir) == {"succeeded": 4, "failed_terminal": 2}
        # The suite moves on to v2 before the retry.
        suite = base_suite(server.base_url)
        suite["prompt"]["version"] = "v2"
        project.write_suite(suite)
        answered.clear()
        sent_before = server.log.total

        assert cli("retry", run_dir.name, "--suite", str(project.suite_path)).exit_code == 2  # no --failed
        retried = cli("retry", run_dir.name, "--failed", "--suite", str(project.suite_path))
    assert retried.exit_code == 0, retried.output
    assert f"Retrying 2 failed request(s) of run {run_dir.name} with prompt route@v1 (frozen in the run)" in retried.output
    # Only the two failed requests were sent again, each once, with v1's text.
    assert server.log.total - sent_before == 2 and set(server.log.successes.values()) == {1}
    assert sorted(answered) == ["Ticket: I was billed twice this month\nTeam:", "Ticket: Please add dark mode\nTeam:"]
    manifest = read_manifest(run_dir)
    assert manifest.status == "complete" and manifest.prompt.version == "v1"
    db = sqlite3.connect(run_dir / "run.sqlite")
    assert db.execute("SELECT retry_round, requeued FROM retry_rounds").fetchall() == [(2, 2)]
    assert db.execute("SELECT COUNT(*) FROM attempts WHERE retry_round = 2").fetchone()[0] == 2
    assert cli("retry", run_dir.name, "--failed", "--suite", str(project.suite_path)).output.startswith(
        f"run {run_dir.name} has no failed requests; nothing to retry")


def test_retry_refuses_when_the_frozen_prompt_text_changed(project, cli):
    with FakeLLMServer(keyword_replier(TICKET_REPLIES), faults=[FaultRule(status=400, times=9, match="billed")]) as server:
        project.write_suite(base_suite(server.base_url))
        assert cli("run", str(project.suite_path)).exit_code == 1
        [run_dir] = project.run_dirs()
        (project.root / "prompts" / "route" / "v1.j2").write_text("Ticket text: {{ text }}\nTeam:")
        server.log.reset()
        refused = cli("retry", str(run_dir), "--failed")
    assert refused.exit_code == 2 and server.log.total == 0
    assert "prompt route@v1 changed since run" in refused.output and "v1.j2" in refused.output


def test_cancel_a_run_with_nothing_left_to_send_changes_nothing(project, cli):
    """Only terminal failures left: cancelling would only keep the run from being promoted."""
    with FakeLLMServer(keyword_replier(TICKET_REPLIES), [FaultRule(status=400, times=99, match="billed")]) as server:
        project.write_suite(base_suite(server.base_url))
        assert cli("run", str(project.suite_path)).exit_code == 1
    [run_dir] = project.run_dirs()
    before = read_manifest(run_dir).status
    result = cli("cancel", str(run_dir))
    assert result.exit_code == 0 and "nothing to cancel" in result.output
    assert read_manifest(run_dir).status == before == "incomplete" and not _cancel_flag(run_dir)


def test_status_and_retry_of_an_emptied_store_are_bad_input(project, cli, fake_server):
    project.write_suite(base_suite(fake_server.base_url))
    assert cli("run", str(project.suite_path)).exit_code == 0
    [run_dir] = project.run_dirs()
    (run_dir / "run.sqlite").write_bytes(b"")
    for args in (("status", str(run_dir)), ("retry", str(run_dir), "--failed")):
        result = cli(*args)
        assert result.exit_code == 2 and "the run store is empty" in result.output
