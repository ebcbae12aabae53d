"""Locks that keep two processes from working on the same run (and paying for it twice).

Both are `flock` locks: the kernel releases them when the holding process ends, however it
ends (even SIGKILL), so a lock file left on disk by a dead process never blocks anyone. The
PID, host and start time written into `run.lock` are only there to name the holder.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from harness.errors import UserError
from harness.runs.files import now_iso

RUN_LOCK = "run.lock"
SUITE_LOCK = ".lock"


class RunLock:
    """Held by the one process that works on a run, from choosing it until it stops."""

    def __init__(self, folder: Path, handle) -> None:
        self.folder = folder
        self._handle = handle

    @classmethod
    def acquire(cls, folder: Path, run_id: str) -> RunLock:
        """Never waits: a second process is refused (UserError) before it sends anything."""
        handle = (folder / RUN_LOCK).open("a+", encoding="utf-8")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(handle)
            handle.close()
            raise UserError(f"run {run_id} is in use by {holder}; two processes on one run would send "
                            "its requests twice", file=str(folder / RUN_LOCK),
                            hint="wait for that process to finish (or stop it with Ctrl-C), then rerun. "
                                 "The lock is released automatically when that process ends, even if it "
                                 "was killed, so there is no file to delete") from None
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started_at": now_iso()}))
        handle.flush()
        return cls(folder, handle)

    def release(self) -> None:
        if not self._handle.closed:
            self._handle.close()  # closing the file releases the flock

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _read_holder(handle) -> str:
    handle.seek(0)
    try:
        holder = json.loads(handle.read() or "{}")
    except ValueError:
        holder = {}
    if not isinstance(holder, dict) or "pid" not in holder:
        return "another process"
    return f"process {holder['pid']} on {holder.get('host', '?')} (since {holder.get('started_at', '?')})"


@contextmanager
def suite_lock(suite_dir: Path) -> Iterator[None]:
    """Serialises choosing a suite's run (resume one or create one): two `evalbatch run` started
    together then agree on one run instead of creating two. Held only for that moment."""
    suite_dir.mkdir(parents=True, exist_ok=True)
    with (suite_dir / SUITE_LOCK).open("a", encoding="utf-8") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        yield
