"""How many requests a lane has in flight: at most the suite's concurrency, halved when the
provider says it is overloaded (429, 529) and grown back by one per window of successes (AIMD).

A provider at its capacity answers a large share of requests with 429/529; a healthy one sends
the odd one. Only the first is a reason to send less, so the limit is halved when overload
replies are a quarter or more of the recent ones, not on every single one (that would collapse
concurrency under a few percent of stray errors)."""

from __future__ import annotations

import asyncio
import time
from collections import deque

_RECENT = 40
"""Replies the overload share is measured over."""
_OVERLOAD_SHARE = 0.25
_MIN_OVERLOADS = 3
"""A lone 429 among the first replies is not yet a share."""


class AdaptiveConcurrency:
    DECREASE_COOLDOWN_S = 1.0
    """One overload signal per second halves the limit: the replies of one burst arrive together."""

    def __init__(self, ceiling: int) -> None:
        self.ceiling = ceiling
        self.limit = float(ceiling)
        self.in_flight = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._last_decrease = float("-inf")
        self._recent: deque[bool] = deque(maxlen=_RECENT)
        self._recent_overloads = 0

    async def __aenter__(self) -> None:
        if self.in_flight < int(self.limit) and not self._waiters:
            self.in_flight += 1
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._release()  # granted, then cancelled before it could run: hand the slot on
            raise

    async def __aexit__(self, *exc: object) -> None:
        self._release()

    def _release(self) -> None:
        self.in_flight -= 1
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self.in_flight < int(self.limit):
            waiter = self._waiters.popleft()
            if not waiter.done():
                self.in_flight += 1
                waiter.set_result(None)

    def succeeded(self) -> None:
        self._remember(overload=False)
        if self.limit < self.ceiling:
            self.limit = min(float(self.ceiling), self.limit + 1 / self.limit)
            self._wake()

    def overloaded(self) -> None:
        self._remember(overload=True)
        now = time.monotonic()
        share = self._recent_overloads / len(self._recent)
        if (self._recent_overloads >= _MIN_OVERLOADS and share >= _OVERLOAD_SHARE
                and now - self._last_decrease >= self.DECREASE_COOLDOWN_S):
            self.limit = max(1.0, self.limit / 2)
            self._last_decrease = now

    def _remember(self, overload: bool) -> None:
        if len(self._recent) == self._recent.maxlen:
            self._recent_overloads -= self._recent[0]
        self._recent.append(overload)
        self._recent_overloads += overload
