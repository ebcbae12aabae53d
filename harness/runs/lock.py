"""Locks that keep two processes from working on the same run (and paying for it twice).

All are `flock` locks: the kernel releases them when the holding process ends, however it
ends (even SIGKILL), so a lock file left on disk by a dead process never blocks anyone. The
PID, host and start time written into `run.lock` are only there to name the holder.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO

from harness.errors import UserError
from harness.runs.files import now_iso

RUN_LOCK = "run.lock"
SUITE_LOCK = ".lock"


class RunLock:
    """Held by the one process that works on a run, from choosing it until it stops: a lock on
    the run folder itself and one on its `run.lock` file (which names the holder). The folder's
    lock still holds when `run.lock` is deleted by hand while the run works; the file's keeps out
    versions that locked only the file."""

    def __init__(self, folder: Path, handle: IO[str], folder_fd: int) -> None:
        self.folder = folder
        self._handle = handle
        self._folder_fd: int | None = folder_fd

    @classmethod
    def acquire(cls, folder: Path, run_id: str) -> RunLock:
        """Never waits: a second process is refused (UserError) before it sends anything."""
        folder_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        handle: IO[str] | None = None
        try:
            try:
                fcntl.flock(folder_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                handle = (folder / RUN_LOCK).open("a+", encoding="utf-8")
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise UserError(f"run {run_id} is in use by {_holder_named_in(folder / RUN_LOCK)}; two processes "
                                "on one run would send its requests twice", file=str(folder / RUN_LOCK),
                                hint="wait for that process to finish (or stop it with Ctrl-C), then rerun. "
                                     "The lock is released automatically when that process ends, even if it "
                                     "was killed, so there is no file to delete") from None
            handle.seek(0)
            handle.truncate()
            handle.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started_at": now_iso()}))
            handle.flush()
        except BaseException:  # refused, or a full disk: nothing stays held or open
            try:
                if handle is not None:
                    with suppress(OSError):  # closing flushes what could not be written: it fails again
                        handle.close()
            finally:
                os.close(folder_fd)
            raise
        return cls(folder, handle, folder_fd)

    def release(self) -> None:
        if not self._handle.closed:
            self._handle.close()  # closing the file releases the flock
        if self._folder_fd is not None:
            os.close(self._folder_fd)
            self._folder_fd = None

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _holder_named_in(path: Path) -> str:
    try:
        with path.open("r", encoding="utf-8") as handle:
            return _read_holder(handle)
    except OSError:  # deleted by hand: the folder's lock still tells that a process holds the run
        return "another process"


def _read_holder(handle: IO[str]) -> str:
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
