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


_WRITE_FAILS = textwrap.dedent("""
    import os, resource, signal, sys
    from pathlib import Path
    from harness.runs.lock import RunLock
    folder = Path(sys.argv[1])
    before = len(os.listdir("/proc/self/fd"))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (10, hard))  # the holder's line cannot be written
    try:
        RunLock.acquire(folder, "r1")
    except OSError:
        pass
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    print(len(os.listdir("/proc/self/fd")) - before)
    RunLock.acquire(folder, "r1").release()  # not refused by its own leftover lock
    print("again")
""")


def test_a_failed_write_of_the_holder_leaves_nothing_held(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    done = subprocess.run([sys.executable, "-c", _WRITE_FAILS, str(folder)], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["0", "again"]
