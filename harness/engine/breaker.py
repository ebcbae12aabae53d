"""Stops a target's lane after N consecutive failures that say the endpoint itself is wrong
(down, wrong URL, bad key), instead of trying every request against it."""

from __future__ import annotations

from harness.engine.providers.base import ProviderError

# Request-specific rejections (a prompt too long, a bad parameter) say nothing about the endpoint.
_LANE_STATUSES = {401, 402, 403, 404, 405}


def is_rate_limited(error: ProviderError) -> bool:
    """A 429 about pace (not quota): wait and resend; it says the endpoint works."""
    return error.status == 429 and error.kind == "transient"


def says_endpoint_is_wrong(error: ProviderError) -> bool:
    """No reply at all, a server error, a bad key, URL or model, or a spent quota (a terminal 429)."""
    if error.status is None or error.status >= 500 or error.status in _LANE_STATUSES:
        return True
    return error.status == 429 and not is_rate_limited(error)


class CircuitBreaker:
    def __init__(self, threshold: int) -> None:
        self.threshold = threshold
        self.consecutive = 0
        self.reason: str | None = None

    @property
    def open(self) -> bool:
        return self.reason is not None

    def succeeded(self) -> None:
        self.consecutive = 0

    def failed(self, error: ProviderError) -> None:
        if not says_endpoint_is_wrong(error):
            return
        self.consecutive += 1
        if self.consecutive >= self.threshold and self.reason is None:
            self.reason = f"{self.consecutive} consecutive requests failed; the last: {error.describe()}"
