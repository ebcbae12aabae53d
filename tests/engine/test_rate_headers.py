"""Both providers' rate-limit headers read into one shape; unreadable values count as absent."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from harness.engine.rate_headers import read_rate_limits


def test_openai_headers_with_go_durations():
    info = read_rate_limits({"X-RateLimit-Limit-Requests": "1200", "x-ratelimit-remaining-requests": "1187",
                             "x-ratelimit-reset-requests": "6m0s", "x-ratelimit-limit-tokens": "20000",
                             "x-ratelimit-remaining-tokens": "19000", "x-ratelimit-reset-tokens": "350ms"})
    assert (info.requests.limit, info.requests.remaining, info.requests.reset_in_s) == (1200, 1187, 360.0)
    assert (info.tokens.limit, info.tokens.remaining) == (20000, 19000)
    assert abs(info.tokens.reset_in_s - 0.35) < 1e-9


def test_go_durations_of_every_shape():
    for text, seconds in [("1s", 1.0), ("1h2m3.5s", 3723.5), ("20ms", 0.02), ("2", 2.0)]:
        assert abs(read_rate_limits({"x-ratelimit-reset-requests": text}).requests.reset_in_s - seconds) < 1e-9


def test_anthropic_headers_with_rfc3339_resets():
    now = datetime(2026, 11, 30, 12, 0, 0, tzinfo=UTC)
    reset = (now + timedelta(seconds=42)).isoformat().replace("+00:00", "Z")
    info = read_rate_limits({"anthropic-ratelimit-requests-limit": "4000",
                             "anthropic-ratelimit-requests-remaining": "3999",
                             "anthropic-ratelimit-requests-reset": reset,
                             "anthropic-ratelimit-tokens-limit": "400000"}, now=now.timestamp())
    assert (info.requests.limit, info.requests.remaining) == (4000, 3999)
    assert abs(info.requests.reset_in_s - 42) < 1e-6
    assert info.tokens.limit == 400000 and info.tokens.reset_in_s is None


def test_garbage_is_absent_not_an_error():
    info = read_rate_limits({"x-ratelimit-limit-requests": "lots", "x-ratelimit-reset-requests": "soon",
                             "anthropic-ratelimit-tokens-reset": "yesterday", "x-ratelimit-remaining-tokens": "-5"})
    assert info.empty
