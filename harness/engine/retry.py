"""When to try a failed request again, and how long to wait first: one policy for the engine.

A request has an attempt cap (max_retries after the first), an optional total deadline, and
exponential backoff with full jitter. A 429 about pace does not spend the retry budget (the
server only asked us to slow down, and the lane pauses for everyone), but it has a cap of its
own so a server that answers 429 forever cannot hold a run for ever. Retry-After is honoured,
never below the backoff floor once 429s repeat.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

from harness.config.suite import EngineSpec
from harness.engine.breaker import is_rate_limited
from harness.engine.providers.base import ProviderError

RATE_LIMITED_CAP = 100
"""429s for pace one request may meet in a row before it fails terminally."""


@dataclass
class RequestTries:
    """One request's history: when this process first sent it (the deadline counts from there,
    not from waiting for its turn) and its 429s for pace in the round (None: not read yet)."""

    started_at: float | None = None
    rate_limited: int | None = None
    rate_limited_in_row: int = 0

    def began(self) -> None:
        if self.started_at is None:
            self.started_at = time.monotonic()

    def spent(self, round_attempts: int) -> int:
        """Attempts of the round that spent the retry budget."""
        return round_attempts - (self.rate_limited or 0)


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int
    base_s: float
    max_s: float
    deadline_s: float | None = None

    @classmethod
    def from_spec(cls, spec: EngineSpec) -> RetryPolicy:
        return cls(spec.max_retries, spec.backoff_base_s, spec.backoff_max_s, spec.deadline_s)

    def should_retry(self, error: ProviderError, attempt: int) -> bool:
        """attempt is 1-based and counts attempts that spent the budget: with max_retries=4 a
        request is tried at most 5 times (not counting 429s for pace)."""
        return error.kind == "transient" and attempt <= self.max_retries

    def why_not_retry(self, error: ProviderError, tries: RequestTries, round_attempts: int,
                      now: float) -> str | None:
        """None: try again (and `tries` has counted this failure). Otherwise why the request ends."""
        if is_rate_limited(error):
            tries.rate_limited = (tries.rate_limited or 0) + 1
            tries.rate_limited_in_row += 1
        else:
            tries.rate_limited_in_row = 0
        started = now if tries.started_at is None else tries.started_at
        if self.deadline_s is not None and now - started >= self.deadline_s:
            return f"its deadline of {self.deadline_s:g} s passed"
        if is_rate_limited(error):
            return None if tries.rate_limited_in_row < RATE_LIMITED_CAP else f"{RATE_LIMITED_CAP} rate-limit replies in a row"
        return None if self.should_retry(error, tries.spent(round_attempts)) else "no retry"

    def pause_s(self, error: ProviderError, in_row: int, rng: random.Random) -> float:
        """How long a lane pauses after a 429 for pace: the server's Retry-After (from the second
        429 in a row never below the backoff floor), else backoff. No jitter: the whole lane waits
        once and its requests then go one by one through the pacer, not all at once."""
        ceiling = min(self.max_s, self.base_s * 2 ** (max(in_row, 1) - 1))
        if error.retry_after_s is None:
            return rng.uniform(ceiling / 2, ceiling)
        return max(error.retry_after_s, ceiling / 2 if in_row > 1 else 0.0)

    def delay_s(self, error: ProviderError, attempt: int, rng: random.Random) -> float:
        """Retry-After when the server gave one (from the second 429 in a row never below the
        backoff floor; a little jitter so waiting requests do not return in lockstep), else
        exponential backoff with full jitter. `attempt`: failures in a row of this kind, 1-based."""
        ceiling = min(self.max_s, self.base_s * 2 ** (max(attempt, 1) - 1))
        if error.retry_after_s is not None:
            wait = max(error.retry_after_s, ceiling / 2 if attempt > 1 else 0.0)
            return wait + rng.uniform(0, min(1.0, 0.1 * wait + 0.05))
        return rng.uniform(0, ceiling)
