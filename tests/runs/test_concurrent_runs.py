"""Two processes on one suite: one run, every request sent once, the second refused clearly."""

from __future__ import annotations

import json
import re
import signal

import pytest

from harness.testing.fake_server import FakeLLMServer, keyword_replier
from tests.conftest import base_suite
from tests.runs.processes import ITEMS, many_tickets, start, succeeded_ids, wait_for_progress


@pytest.fixture
def slow_server():
    with FakeLLMServer(keyword_replier({}, default="billing"), latency_s=0.05) as server:
        yield server


def _assert_refused_by(refused_err: str, holder_pid: int) -> None:
    assert f"process {holder_pid} " in refused_err, refused_err
    assert "released automatically" in refused_err and "Traceback" not in refused_err


def test_two_runs_of_one_suite_started_together_send_everything_once(project, slow_server):
    many_tickets(project)
    project.write_suite(base_suite(slow_server.base_url))
    first, second = start("run", str(project.suite_path)), start("run", str(project.suite_path))
    outcomes = {process.pid: (*process.communicate(timeout=120), process.returncode) for process in (first, second)}
    codes = sorted(code for _, _, code in outcomes.values())
    assert codes == [0, 2], outcomes
    [winner] = [pid for pid, (_, _, code) in outcomes.items() if code == 0]
    [(_, refused_err, _)] = [o for pid, o in outcomes.items() if pid != winner]
    _assert_refused_by(refused_err, winner)

    [run_dir] = project.run_dirs()
    assert len(slow_server.log.attempts) == ITEMS and set(slow_server.log.attempts.values()) == {1}
    assert len(succeeded_ids(run_dir)) == ITEMS
    assert json.loads((run_dir / "manifest.json").read_text())["status"] == "complete"


def test_a_second_process_cannot_resume_a_run_in_progress(project, slow_server):
    many_tickets(project)
    project.write_suite(base_suite(slow_server.base_url))
    first = start("run", str(project.suite_path))
    run_dir = wait_for_progress(project.root / "reports" / "demo", first, at_least=5)
    first.send_signal(signal.SIGINT)
    first.communicate(timeout=30)
    done_before = succeeded_ids(run_dir)
    slow_server.log.reset()
    # Two processes resume the interrupted run at once (one by name, one automatically).
    named, automatic = start("run", str(project.suite_path), "--resume", run_dir.name), start("run", str(project.suite_path))
    outcomes = {process.pid: (*process.communicate(timeout=120), process.returncode) for process in (named, automatic)}
    assert sorted(code for _, _, code in outcomes.values()) == [0, 2], outcomes
    [winner] = [pid for pid, (_, _, code) in outcomes.items() if code == 0]
    [(refused_out, refused_err, _)] = [o for pid, o in outcomes.items() if pid != winner]
    _assert_refused_by(refused_err, winner)
    assert re.search(r"stopped_early", refused_out + refused_err) is None

    assert project.run_dirs() == [run_dir]
    # Nothing sent twice by the two processes, nothing that had succeeded sent again.
    assert set(slow_server.log.attempts.values()) == {1} and not set(slow_server.log.attempts) & done_before
    assert len(slow_server.log.attempts) == ITEMS - len(done_before) and len(succeeded_ids(run_dir)) == ITEMS
