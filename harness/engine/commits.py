"""Group commit: the state changes the engine's workers make in one turn of the event loop are
committed to the run store in one transaction.

A worker that starts an attempt or records a success waits for the commit before it goes on
(sends the request, tells the progress display, hands the answer on), so every change is
still committed before anyone is told of it, and a killed run resumes from what the file says.
What is saved is the cost of a commit per change: a SQLite commit writes the pages it touched
to the WAL (and every ~1,000 pages checkpoints them with two fsyncs), and requests finishing
together touch the same pages. At high concurrency that was the largest cost of a run besides
the HTTP client itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import Any

from harness.engine.providers.base import Completion
from harness.engine.store import Attempt, RunStore, ScoreRow


class GroupCommit:
    """One per engine, on its event loop. The changes queued before the loop's next turn are
    committed together; if the commit fails, every one of them gets the error."""

    def __init__(self, store: RunStore) -> None:
        self.store = store
        self._queued: list[tuple[Callable[[], Any], asyncio.Future[Any]]] = []

    async def start_attempt(self, request_id: str) -> Attempt | None:
        """RunStore.start_attempt, committed with the others of this turn."""
        return await self._queue(lambda: self.store.start_attempt(request_id))

    async def succeed(self, request_id: str, attempt: int, completion: Completion, latency_ms: float,
                      scores: Iterable[ScoreRow] = (), cost_usd: float | None = None) -> bool:
        """RunStore.succeed, committed with the others of this turn."""
        return await self._queue(lambda: self.store.succeed(request_id, attempt, completion, latency_ms, scores,
                                                            cost_usd=cost_usd))

    def flush(self) -> None:
        """Commits what is queued now (also called when the engine stops, so that answers
        received are stored, not sent again)."""
        queued, self._queued = self._queued, []
        if not queued:
            return
        try:
            with self.store.batch():
                results = [change() for change, _ in queued]
        except Exception as exc:  # noqa: BLE001 - handed to every waiting worker, which raises it
            for _, waiter in queued:
                if not waiter.done():
                    waiter.set_exception(exc)
            return
        for (_, waiter), result in zip(queued, results, strict=True):
            if not waiter.done():  # a worker cancelled while it waited: its change is stored all the same
                waiter.set_result(result)

    def _queue(self, change: Callable[[], Any]) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        if not self._queued:
            # Runs after every callback ready in this turn: the workers woken together queue together.
            loop.call_soon(self.flush)
        self._queued.append((change, waiter))
        return waiter
