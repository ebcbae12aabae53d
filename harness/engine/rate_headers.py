"""What a provider's reply says about its rate limits: OpenAI `x-ratelimit-*` and Anthropic
`anthropic-ratelimit-*` headers, read the same way from successes and 429s alike."""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

_GO_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNIT_S = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


@dataclass(frozen=True)
class LimitState:
    """One limit (requests or tokens) as the server last stated it."""

    limit: float | None
    remaining: float | None
    reset_in_s: float | None


@dataclass(frozen=True)
class RateLimitInfo:
    requests: LimitState
    tokens: LimitState

    @property
    def empty(self) -> bool:
        return all(getattr(state, name) is None for state in (self.requests, self.tokens)
                   for name in ("limit", "remaining", "reset_in_s"))


def read_rate_limits(headers: Mapping[str, str], now: float | None = None) -> RateLimitInfo:
    """Both providers' formats; a header that cannot be read counts as absent (it must never stop a run)."""
    if not headers:  # servers that state no limits (vLLM, llama.cpp): read for every reply
        return _NO_LIMITS
    lowered = {key.lower(): value for key, value in headers.items()}
    now = time.time() if now is None else now
    return RateLimitInfo(requests=_state(lowered, "requests", now), tokens=_state(lowered, "tokens", now))


_NO_LIMITS = RateLimitInfo(LimitState(None, None, None), LimitState(None, None, None))


def _state(headers: dict[str, str], kind: str, now: float) -> LimitState:
    openai_reset = _go_duration_s(headers.get(f"x-ratelimit-reset-{kind}"))
    anthropic_reset = _rfc3339_in_s(headers.get(f"anthropic-ratelimit-{kind}-reset"), now)
    return LimitState(
        limit=_number(headers.get(f"x-ratelimit-limit-{kind}") or headers.get(f"anthropic-ratelimit-{kind}-limit")),
        remaining=_number(headers.get(f"x-ratelimit-remaining-{kind}")
                          or headers.get(f"anthropic-ratelimit-{kind}-remaining")),
        reset_in_s=openai_reset if openai_reset is not None else anthropic_reset)


def _number(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if number >= 0 else None


def _go_duration_s(value: str | None) -> float | None:
    """OpenAI's resets are Go durations: `1s`, `6m0s`, `350ms`, `1h2m3.5s`."""
    if not value:
        return None
    value = value.strip()
    parts = _GO_DURATION.findall(value)
    if not parts or "".join(number + unit for number, unit in parts) != value:
        return _number(value)  # some compatible servers send plain seconds
    return sum(float(number) * _UNIT_S[unit] for number, unit in parts)


def _rfc3339_in_s(value: str | None, now: float) -> float | None:
    """Anthropic's resets are RFC 3339 timestamps."""
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None
    return max(0.0, moment.timestamp() - now)
