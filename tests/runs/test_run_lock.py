"""The run lock is held by a process of its own here, as it is in use: deleting `run.lock` by
hand while that process works does not let a second one in, and `status` still sees the holder."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from harness.commands.jobs import lock_holder
from harness.errors import UserError
from harness.runs.lock import RUN_LOCK, RunLock

_HOLD = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from harness.runs.lock import RunLock
    lock = RunLock.acquire(Path(sys.argv[1]), "r1")
    print("held", flush=True)
    sys.stdin.readline()  # until the test lets go
    lock.release()
""")


@pytest.fixture
def holder(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    process = subprocess.Popen([sys.executable, "-c", _HOLD, str(folder)], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "held"
    yield folder, process
    if process.poll() is None:
        process.communicate("go\n", timeout=10)


def test_a_second_process_is_refused_naming_the_holder(holder):
    folder, process = holder
    with pytest.raises(UserError) as refused:
        RunLock.acquire(folder, "r1")
    assert f"process {process.pid} on " in refused.value.message
    assert lock_holder(folder).startswith(f"process {process.pid} on ")


def test_deleting_run_lock_by_hand_does_not_let_a_second_process_in(holder):
    folder, process = holder
    (folder / RUN_LOCK).unlink()
    with pytest.raises(UserError) as refused:
        RunLock.acquire(folder, "r1")
    assert "in use by another process" in refused.value.message
    assert lock_holder(folder) == "another process"  # status still sees the run held
    process.communicate("go\n", timeout=10)
    assert lock_holder(folder) is None
    with RunLock.acquire(folder, "r1"):  # free once the holder has ended
        assert lock_holder(folder).startswith("process ")


def test_a_killed_holder_leaves_nothing_that_blocks(holder):
    folder, process = holder
    process.kill()
    process.wait(timeout=10)
    with RunLock.acquire(folder, "r1"):
        pass
    assert lock_holder(folder) is None
