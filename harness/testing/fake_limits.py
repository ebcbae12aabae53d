"""The fake server's rate limits and random faults.

Limits are tumbling windows of `window_s` seconds, counted from the server's start. `rpm` and
`tpm` always mean per minute, as providers state them; one window admits rpm * window_s / 60
requests and tpm * window_s / 60 tokens, so a test can use 2-second windows and keep realistic
per-minute figures in the headers. A request costs its prompt estimate (len(json of messages)/4)
plus its max_tokens, because OpenAI counts max_tokens against TPM at admission.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

FAULT_KINDS = ("429", "500", "502", "503", "529", "reset", "slow", "malformed")
"""What the random fault mode injects. `reset` drops the connection without a reply; `slow`
answers 503 after `slow_s` (past the client's timeout), so a slow request is never answered;
`malformed` is a 200 whose body is not JSON."""


def request_cost(body: dict[str, Any]) -> int:
    """Tokens a request counts against TPM: the prompt estimate plus the completion it may use."""
    return approx_tokens(json.dumps(body.get("messages", []))) + int(body.get("max_tokens") or 0)


def approx_tokens(text: str) -> int:
    return max(1, len(text) // 4)


@dataclass(frozen=True)
class WindowLimits:
    rpm: float | None = None
    tpm: float | None = None
    window_s: float = 60.0

    def __post_init__(self) -> None:
        if self.window_s <= 0:
            raise ValueError("window_s must be > 0")

    @property
    def request_capacity(self) -> int | None:
        return None if self.rpm is None else max(1, math.floor(self.rpm * self.window_s / 60))

    @property
    def token_capacity(self) -> int | None:
        return None if self.tpm is None else max(1, math.floor(self.tpm * self.window_s / 60))


@dataclass(frozen=True)
class Admission:
    """What the limiter decided for one request, and the window's state after it."""

    admitted: bool
    exceeded: str | None  # "requests" or "tokens" when refused
    remaining_requests: int | None
    remaining_tokens: int | None
    reset_s: float  # seconds until the current window ends


class WindowLimiter:
    """Counts requests and tokens per tumbling window; refuses what would exceed either."""

    def __init__(self, limits: WindowLimits, origin: float) -> None:
        self.limits = limits
        self.origin = origin
        self._window = -1
        self._requests = 0
        self._tokens = 0

    def admit(self, now: float, tokens: int) -> Admission:
        window = math.floor((now - self.origin) / self.limits.window_s)
        if window != self._window:
            self._window, self._requests, self._tokens = window, 0, 0
        reset_s = self.origin + (window + 1) * self.limits.window_s - now
        exceeded = None
        if (cap := self.limits.request_capacity) is not None and self._requests + 1 > cap:
            exceeded = "requests"
        elif (cap := self.limits.token_capacity) is not None and self._tokens + tokens > cap:
            exceeded = "tokens"
        if exceeded is None:
            self._requests += 1
            self._tokens += tokens
        return Admission(exceeded is None, exceeded, _left(self.limits.request_capacity, self._requests),
                         _left(self.limits.token_capacity, self._tokens), reset_s)

    def window_of(self, moment: float) -> int:
        return math.floor((moment - self.origin) / self.limits.window_s)


def _left(capacity: int | None, used: int) -> int | None:
    return None if capacity is None else max(0, capacity - used)


def limit_headers(limits: WindowLimits, admission: Admission, style: str) -> dict[str, str]:
    """The provider's rate-limit headers: the limit is the per-minute figure, remaining and reset
    describe the current window."""
    headers: dict[str, str] = {}
    for name, limit, remaining in (("requests", limits.rpm, admission.remaining_requests),
                                   ("tokens", limits.tpm, admission.remaining_tokens)):
        if limit is None:
            continue
        if style == "anthropic":
            reset = datetime.now(UTC) + timedelta(seconds=admission.reset_s)
            headers[f"anthropic-ratelimit-{name}-limit"] = f"{limit:g}"
            headers[f"anthropic-ratelimit-{name}-remaining"] = str(remaining)
            headers[f"anthropic-ratelimit-{name}-reset"] = rfc3339(reset)
        else:
            headers[f"x-ratelimit-limit-{name}"] = f"{limit:g}"
            headers[f"x-ratelimit-remaining-{name}"] = str(remaining)
            headers[f"x-ratelimit-reset-{name}"] = go_duration(admission.reset_s)
    return headers


def retry_after_headers(seconds: float) -> dict[str, str]:
    """retry-after in whole seconds (rounded up, as providers send it) and the exact retry-after-ms."""
    return {"retry-after": str(max(1, math.ceil(seconds))), "retry-after-ms": str(max(1, math.ceil(seconds * 1000)))}


def go_duration(seconds: float) -> str:
    """A duration as OpenAI's headers write it (Go's time.Duration): 350ms, 1s, 1.5s, 6m0s."""
    millis = max(0, math.ceil(seconds * 1000))
    if millis < 1000:
        return f"{millis}ms"
    minutes, millis = divmod(millis, 60_000)
    secs = f"{millis / 1000:.3f}".rstrip("0").rstrip(".")
    return f"{minutes}m{secs}s" if minutes else f"{secs}s"


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class RandomFaults:
    """A fault for a fraction of attempts, decided by (seed, request ID, attempt number) so a run
    sees the same faults whatever order its requests arrive in."""

    rate: float
    seed: int = 0
    kinds: tuple[str, ...] = FAULT_KINDS
    slow_s: float = 2.0
    retry_after_ms: int = 20

    def __post_init__(self) -> None:
        unknown = set(self.kinds) - set(FAULT_KINDS)
        if unknown or not self.kinds:
            raise ValueError(f"fault kinds must be some of {', '.join(FAULT_KINDS)}; got {sorted(unknown) or 'none'}")
        if not 0 <= self.rate <= 1:
            raise ValueError("fault_rate must be in [0, 1]")

    def pick(self, request_id: str, attempt: int) -> str | None:
        rng = random.Random(f"{self.seed}:{request_id}:{attempt}")
        if rng.random() >= self.rate:
            return None
        return rng.choice(self.kinds)
