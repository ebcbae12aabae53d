"""A run killed part-way (a real subprocess, SIGKILL) resumes without re-sending what succeeded;
Ctrl-C (SIGINT) stops cleanly and prints how to resume."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
from pathlib import Path

import pytest

from harness.testing.fake_server import FakeLLMServer, keyword_replier
from tests.conftest import base_suite
from tests.runs.processes import ITEMS, many_tickets, start, succeeded_ids, wait_for_progress


@pytest.fixture
def slow_server():
    with FakeLLMServer(keyword_replier({}, default="billing"), latency_s=0.05) as server:
        yield server


@pytest.fixture
def big_project(project):
    many_tickets(project)
    return project


def _start_run(project, *extra: str) -> subprocess.Popen:
    return start("run", str(project.suite_path), *extra)


def _wait_for_progress(project, process: subprocess.Popen, at_least: int) -> Path:
    return wait_for_progress(project.root / "reports" / "demo", process, at_least)


def test_sigkill_then_resume_sends_nothing_twice(big_project, slow_server):
    suite = base_suite(slow_server.base_url)
    big_project.write_suite(suite)
    process = _start_run(big_project)
    run_dir = _wait_for_progress(big_project, process, at_least=30)
    process.kill()  # SIGKILL: no cleanup code runs
    process.wait(timeout=10)

    done_before = succeeded_ids(run_dir)
    assert 30 <= len(done_before) < ITEMS
    in_flight = _attempts_in_flight(run_dir)
    slow_server.log.reset()

    resumed = _start_run(big_project)
    out, err = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, out + err
    assert f"Resuming unfinished run {run_dir.name}" in out

    sent_again = set(slow_server.log.attempts) & done_before
    assert sent_again == set(), "requests that had succeeded were sent again"
    assert len(slow_server.log.attempts) == ITEMS - len(done_before)
    assert max(slow_server.log.attempts.values()) == 1
    results = [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()]
    assert len(results) == ITEMS and {r["state"] for r in results} == {"succeeded"}
    assert json.loads((run_dir / "manifest.json").read_text())["status"] == "complete"
    assert big_project.run_dirs() == [run_dir]  # resumed in place, no second run folder
    db = sqlite3.connect(run_dir / "run.sqlite")
    abandoned = {row[0] for row in db.execute("SELECT request_id FROM attempts WHERE outcome = 'abandoned'")}
    assert db.execute("SELECT COUNT(*) FROM attempts WHERE ended_at IS NULL").fetchone()[0] == 0
    db.close()
    assert abandoned == in_flight  # what the killed process had in flight got an outcome on resume


def _attempts_in_flight(run_dir: Path) -> set[str]:
    db = sqlite3.connect(f"file:{run_dir / 'run.sqlite'}?mode=ro", uri=True)
    try:
        return {row[0] for row in db.execute("SELECT request_id FROM attempts WHERE ended_at IS NULL")}
    finally:
        db.close()


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_stops_cleanly_and_says_how_to_resume(big_project, slow_server, stop_signal):
    big_project.write_suite(base_suite(slow_server.base_url))
    process = _start_run(big_project)
    run_dir = _wait_for_progress(big_project, process, at_least=10)
    process.send_signal(stop_signal)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 130, out + err
    assert f"--resume {run_dir.name}" in err
    assert "Traceback" not in err and "Task exception" not in err, err  # as quiet as Ctrl-C
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "interrupted"
    first_wall_time = manifest["wall_time_s"]
    assert first_wall_time > 0
    written = [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()]
    assert len(written) == ITEMS and sum(r["state"] == "succeeded" for r in written) >= 10
    db = sqlite3.connect(run_dir / "run.sqlite")
    states = dict(db.execute("SELECT state, COUNT(*) FROM requests GROUP BY state").fetchall())
    db.close()
    assert "processing" not in states  # in-flight requests went back to the queue
    assert states.get("succeeded", 0) >= 10

    resumed = _start_run(big_project, "--resume", run_dir.name)
    out, err = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, out + err
    assert len(succeeded_ids(run_dir)) == ITEMS
    # Both processes' time counts: the resumed run's wall time adds to the first one's.
    assert json.loads((run_dir / "manifest.json").read_text())["wall_time_s"] >= first_wall_time


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM])
def test_a_second_signal_right_after_the_first_still_stops_the_run(big_project, slow_server, stop_signal):
    """Impatient Ctrl-C Ctrl-C: the first stops the run, the second is ignored; the process ends
    (130) with the run stored and resumable instead of hanging with its lock held."""
    big_project.write_suite(base_suite(slow_server.base_url))
    process = _start_run(big_project)
    run_dir = _wait_for_progress(big_project, process, at_least=10)
    process.send_signal(stop_signal)
    process.send_signal(stop_signal)
    try:
        out, err = process.communicate(timeout=60)  # a hang detector, not a timing check
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
        raise AssertionError("the run hung after two signals\n" + err) from None
    assert process.returncode == 130, out + err
    assert "Traceback" not in err, err
    assert json.loads((run_dir / "manifest.json").read_text())["status"] == "interrupted"
    db = sqlite3.connect(run_dir / "run.sqlite")
    states = dict(db.execute("SELECT state, COUNT(*) FROM requests GROUP BY state").fetchall())
    db.close()
    assert "processing" not in states
    resumed = _start_run(big_project, "--resume", run_dir.name)  # the run lock was released
    out, err = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, out + err
    assert len(succeeded_ids(run_dir)) == ITEMS
