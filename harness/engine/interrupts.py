"""Ctrl-C (SIGINT) and SIGTERM while an event loop runs a run's work: the work's task is
cancelled at its await, and the process then stores what finished before it stops.

Raising KeyboardInterrupt from a plain signal handler instead lands inside whichever task (or the
loop's own code) runs: each such task dies noisily, and a second Ctrl-C landing in the loop's
teardown could leave the process spinning with the run locked. So the first signal cancels and
later ones are ignored: after a signal, SIGINT and SIGTERM stay ignored until the stopped run is
stored (`Terminated.restore_signals`). Loops that poll (batch mode) also look at `Stop.received`
each round, so a cancellation a library swallows still stops them.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any


class Terminated(Exception):
    """Ctrl-C (SIGINT) or SIGTERM arrived while requests were in flight (raised by the loop,
    never inside a task). Later signals stay ignored until `restore_signals`, so a second
    Ctrl-C cannot cut off storing what finished."""

    def __init__(self, previous: dict[int, Any]) -> None:
        super().__init__()
        self.previous = previous

    def restore_signals(self) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


@dataclass
class Stop:
    received: list[int]
    previous: dict[int, Any]


@contextmanager
def signals_cancel(task: asyncio.Task | None) -> Iterator[Stop]:
    """While inside, SIGINT and SIGTERM cancel `task` (the first of them; see the module)."""
    loop = asyncio.get_running_loop()
    stop = Stop([], {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)})

    def on_signal(sig: int) -> None:
        stop.received.append(sig)
        if len(stop.received) == 1 and task is not None:
            task.cancel()

    added = []
    try:
        for sig in stop.previous:
            loop.add_signal_handler(sig, on_signal, sig)
            added.append(sig)
    except (ValueError, RuntimeError, NotImplementedError):  # not the main thread: leave signals alone
        for sig in added:
            loop.remove_signal_handler(sig)
            signal.signal(sig, stop.previous[sig])
        yield stop
        return
    try:
        yield stop
    finally:
        for sig, handler in stop.previous.items():
            loop.remove_signal_handler(sig)
            signal.signal(sig, signal.SIG_IGN if stop.received else handler)
