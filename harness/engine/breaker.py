"""Stops a target's lane when its failures say the endpoint itself is wrong (down, wrong URL,
bad key, spent quota) instead of trying every request against it.

A bad key, URL or model, or a spent quota, fails the same way for every request: the lane stops
after `threshold` of them in a row. No reply or a server error can be a blip: after `threshold`
in a row the lane pauses until the streak has lasted MIN_SPAN_S, then tries again, and stops only
if that fails too. A server that answers nothing but 429s for pace for NO_SUCCESS_S stops the
lane as well, instead of holding the run for days.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from harness.engine.providers.base import ProviderError

MIN_SPAN_S = 5.0
NO_SUCCESS_S = 300.0

# Wrong for every request: a bad key, no permission, a wrong URL or model.
_HARD_STATUSES = {401, 402, 403, 404, 405}


def is_rate_limited(error: ProviderError) -> bool:
    """A 429 about pace (not quota): wait and resend; it says the endpoint works."""
    return error.status == 429 and error.kind == "transient"


def says_endpoint_is_wrong(error: ProviderError) -> bool:
    """No reply at all, a server error, a bad key, URL or model, or a spent quota (a terminal 429).
    Request-specific rejections (a prompt too long, a bad parameter) say nothing about the endpoint."""
    return _is_hard(error) or error.status is None or error.status >= 500


def _is_hard(error: ProviderError) -> bool:
    return error.status in _HARD_STATUSES or (error.status == 429 and not is_rate_limited(error))


class CircuitBreaker:
    def __init__(self, threshold: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.threshold = threshold
        self.clock = clock
        self.consecutive = 0
        self.rate_limited_in_row = 0
        self._streak_began = 0.0
        self._last_success = clock()
        self.reason: str | None = None

    @property
    def open(self) -> bool:
        return self.reason is not None

    def succeeded(self) -> None:
        self.consecutive = 0
        self.rate_limited_in_row = 0
        self._last_success = self.clock()

    def failed(self, error: ProviderError) -> float:
        """Counts a failure; returns how long the lane should pause before trying again (0: no pause)."""
        now = self.clock()
        if is_rate_limited(error):
            self.rate_limited_in_row += 1
            quiet = now - self._last_success
            if self.rate_limited_in_row >= self.threshold and quiet >= NO_SUCCESS_S and self.reason is None:
                self.reason = (f"for {quiet / 60:.0f} minutes the server answered only 429 (rate limited); "
                               f"the last: {error.describe()}")
            return 0.0
        if not says_endpoint_is_wrong(error):
            return 0.0
        self.consecutive += 1
        if self.consecutive == 1:
            self._streak_began = now
        if self.consecutive < self.threshold or self.reason is not None:
            return 0.0
        span = now - self._streak_began
        if _is_hard(error) or span >= MIN_SPAN_S:
            self.reason = f"{self.consecutive} consecutive requests failed; the last: {error.describe()}"
            return 0.0
        return MIN_SPAN_S - span
