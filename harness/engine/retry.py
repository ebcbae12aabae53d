"""When to try a failed request again, and how long to wait first."""

from __future__ import annotations

import random
from dataclasses import dataclass

from harness.config.suite import EngineSpec
from harness.engine.providers.base import ProviderError


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int
    base_s: float
    max_s: float

    @classmethod
    def from_spec(cls, spec: EngineSpec) -> RetryPolicy:
        return cls(spec.max_retries, spec.backoff_base_s, spec.backoff_max_s)

    def should_retry(self, error: ProviderError, attempt: int) -> bool:
        """attempt is 1-based: with max_retries=4 a request is tried at most 5 times."""
        return error.kind == "transient" and attempt <= self.max_retries

    def delay_s(self, error: ProviderError, attempt: int, rng: random.Random) -> float:
        """The server's Retry-After when it gave one (plus a little jitter so waiting
        requests do not return in lockstep), else exponential backoff with full jitter."""
        if error.retry_after_s is not None:
            return error.retry_after_s + rng.uniform(0, min(1.0, 0.1 * error.retry_after_s + 0.05))
        ceiling = min(self.max_s, self.base_s * 2 ** (attempt - 1))
        return rng.uniform(ceiling / 2, ceiling)
