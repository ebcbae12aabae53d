"""Pacing one target's lane under its rate limits: token buckets for requests and tokens per
minute (and per day), the window budget the server's headers state, and lane-wide pauses.

Limits come from the suite (`engine.limits`, a target's `limits`, `--rpm/--tpm`) or are learned
from the replies' rate-limit headers; where both exist the lower one holds. Buckets refill at
HEADROOM of the limit, so windows that do not line up with ours and clock skew stay under it.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from harness.config.suite import RateLimits
from harness.engine.rate_headers import LimitState, RateLimitInfo

HEADROOM = 0.98
BURST_S = 1.0
"""A bucket holds one second's worth: sending stays smooth, so no window sees a burst on top of the rate."""
_DAY_S = 86_400.0
_STOP_CHECK_S = 0.5


class TokenBucket:
    """Refills at `rate_per_s` up to `capacity`. A request larger than the capacity goes once the
    bucket is full and leaves it in debt, so no request is ever unsendable."""

    def __init__(self, rate_per_s: float, capacity: float, level: float, now: float) -> None:
        self.rate_per_s, self.capacity, self.level, self.updated = rate_per_s, capacity, level, now

    @classmethod
    def per_minute(cls, limit: float, now: float) -> TokenBucket:
        """Starts with one unit: the first request goes at once, and no window sees a burst."""
        rate = limit * HEADROOM / 60
        capacity = max(1.0, rate * BURST_S)
        return cls(rate, capacity, min(capacity, 1.0), now)

    @classmethod
    def per_day(cls, limit: float, now: float) -> TokenBucket:
        """A day's quota: what was used before this run is unknown, so it starts full."""
        return cls(limit / _DAY_S, limit, limit, now)

    def _refill(self, now: float) -> None:
        self.level = min(self.capacity, self.level + (now - self.updated) * self.rate_per_s)
        self.updated = now

    def wait_s(self, amount: float, now: float) -> float:
        self._refill(now)
        need = min(amount, self.capacity)
        # A shortfall left by float rounding would ask for a wait too small to move the clock.
        return 0.0 if self.level >= need - 1e-6 else (need - self.level) / self.rate_per_s

    def take(self, amount: float, now: float) -> None:
        self._refill(now)
        self.level -= amount

    def give_back(self, amount: float, now: float) -> None:
        """Corrects an estimate once the real count is known (negative: it cost more)."""
        self._refill(now)
        self.level = min(self.capacity, self.level + amount)

    def set_limit_per_minute(self, limit: float, now: float) -> None:
        self._refill(now)
        self.rate_per_s = limit * HEADROOM / 60
        self.capacity = max(1.0, self.rate_per_s * BURST_S)
        self.level = min(self.level, self.capacity)


@dataclass
class WindowBudget:
    """What the server said is left until its window resets, less what was sent since it said so."""

    remaining: float
    resets_at: float


@dataclass(frozen=True)
class Ticket:
    """One admitted request: what it was counted as, and where the send counters stood."""

    tokens: float
    raw_prompt_tokens: int
    max_tokens: int
    sent_requests: int
    sent_tokens: float


class LanePacer:
    def __init__(self, declared: RateLimits, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        now = clock()
        self.declared = declared
        self.requests = TokenBucket.per_minute(declared.rpm, now) if declared.rpm else None
        self.tokens = TokenBucket.per_minute(declared.tpm, now) if declared.tpm else None
        self.daily = [TokenBucket.per_day(limit, now) for limit in (declared.rpd, declared.tpd) if limit]
        self._daily_counts_tokens = [False] * bool(declared.rpd) + [True] * bool(declared.tpd)
        self.learned: dict[str, float] = {}
        """Limits taken from the server's headers (lower than declared, or none declared)."""
        self._in_force: dict[str, float] = {key: limit for key, limit in (("requests", declared.rpm),
                                                                           ("tokens", declared.tpm)) if limit}
        self.windows: dict[str, WindowBudget] = {}
        self.paused_until = 0.0
        self.paused_s = 0.0
        self.prompt_ratio = 1.0
        self._sent_requests = 0
        self._sent_tokens = 0.0
        self._lock = asyncio.Lock()

    @property
    def declares_token_limits(self) -> bool:
        """A token limit is declared: prompts are counted with the model's tokenizer from the first
        request on. Otherwise chars/4 will do: a limit learned from a reply comes with the reported
        usage that scales the estimate (prompt_ratio), and the tokenizer's load is spared."""
        return bool(self.declared.tpm or self.declared.tpd)

    @property
    def knows_limits(self) -> bool:
        return self.requests is not None or self.tokens is not None

    def describe(self) -> str:
        parts = []
        for name, key, bucket in (("rpm", "requests", self.requests), ("tpm", "tokens", self.tokens)):
            if bucket is not None:
                source = "from the server's headers" if key in self.learned else "declared"
                parts.append(f"{bucket.rate_per_s * 60 / HEADROOM:,.0f} {name} ({source})")
        return ", ".join(parts) or "no limits known"

    def estimate(self, raw_prompt_tokens: int, max_tokens: int) -> float:
        """What a TPM limit counts: the prompt (scaled by what the server reported for earlier
        prompts) plus max_tokens."""
        return math.ceil(raw_prompt_tokens * self.prompt_ratio) + max_tokens

    async def admit(self, raw_prompt_tokens: int, max_tokens: int,
                    stop: Callable[[], bool] | None = None) -> Ticket | None:
        """Waits until the lane may send one more request of this size, then counts it; None when
        `stop` said to give up while waiting (a cancel, a stopped lane). Waiters queue in order, so
        one worker waits on the buckets while the others wait their turn."""
        tokens = self.estimate(raw_prompt_tokens, max_tokens)
        async with self._lock:
            while (wait := self._wait_s(tokens)) > 1e-6:
                if stop is not None and stop():
                    return None
                await asyncio.sleep(min(wait, _STOP_CHECK_S) if stop is not None else wait)
            now = self.clock()
            for bucket, amount in self._buckets(tokens):
                bucket.take(amount, now)
            for key, amount in (("requests", 1.0), ("tokens", tokens)):
                if key in self.windows:
                    self.windows[key].remaining -= amount
            ticket = Ticket(tokens, raw_prompt_tokens, max_tokens, self._sent_requests, self._sent_tokens)
            self._sent_requests += 1
            self._sent_tokens += tokens
            return ticket

    def _buckets(self, tokens: float) -> list[tuple[TokenBucket, float]]:
        buckets = [(bucket, amount) for bucket, amount in ((self.requests, 1.0), (self.tokens, tokens))
                   if bucket is not None]
        return buckets + [(bucket, tokens if counts_tokens else 1.0)
                          for bucket, counts_tokens in zip(self.daily, self._daily_counts_tokens, strict=True)]

    def _wait_s(self, tokens: float) -> float:
        now = self.clock()
        waits = [self.paused_until - now]
        waits += [bucket.wait_s(amount, now) for bucket, amount in self._buckets(tokens)]
        for key, amount in (("requests", 1.0), ("tokens", tokens)):
            window = self.windows.get(key)
            if window is None:
                continue
            if now >= window.resets_at:
                del self.windows[key]
            elif window.remaining < min(amount, 1.0 if key == "requests" else amount):
                waits.append(window.resets_at - now)
        return max(waits)

    def pause(self, seconds: float, rate_limited: bool = True) -> None:
        """The whole lane waits (a 429 for pace, or the circuit breaker's pause before it tries
        again). Time paused for rate limits is counted once, however many workers were told."""
        now = self.clock()
        until = now + seconds
        if until > self.paused_until:
            if rate_limited:
                self.paused_s += until - max(now, self.paused_until)
            self.paused_until = until

    def refund(self, ticket: Ticket) -> None:
        """A request that never reached the server (no connection) counted against nothing."""
        now = self.clock()
        for bucket, amount in self._buckets(ticket.tokens):
            bucket.give_back(amount, now)
        for key, amount in (("requests", 1.0), ("tokens", ticket.tokens)):
            if key in self.windows:
                self.windows[key].remaining += amount

    def observe(self, ticket: Ticket, info: RateLimitInfo, input_tokens: int | None) -> None:
        """Learns from a reply (success or 429): the server's limits and what is left of its
        window, and how its prompt token counts compare with our estimate."""
        now = self.clock()
        if input_tokens is not None and ticket.raw_prompt_tokens > 0:
            observed = input_tokens / ticket.raw_prompt_tokens
            self.prompt_ratio = 0.8 * self.prompt_ratio + 0.2 * observed
            if self.tokens is not None:
                self.tokens.give_back(ticket.tokens - (input_tokens + ticket.max_tokens), now)
        self._adopt("requests", info.requests, now, sent_since=self._sent_requests - ticket.sent_requests - 1)
        self._adopt("tokens", info.tokens, now, sent_since=self._sent_tokens - ticket.sent_tokens - ticket.tokens)

    def _adopt(self, key: str, state: LimitState, now: float, sent_since: float) -> None:
        if state.limit:
            declared = self.declared.rpm if key == "requests" else self.declared.tpm
            limit = min(state.limit, declared) if declared else state.limit
            bucket = self.requests if key == "requests" else self.tokens
            if bucket is None:
                setattr(self, key, TokenBucket.per_minute(limit, now))
            elif self._in_force.get(key) != limit:
                bucket.set_limit_per_minute(limit, now)
            if limit != declared:
                self.learned[key] = limit
            self._in_force[key] = limit
        if state.remaining is not None and state.reset_in_s is not None:
            self.windows[key] = WindowBudget(state.remaining - max(0.0, sent_since), now + state.reset_in_s)
