"""Which failures are retried and how long the engine waits: pure functions, no server."""

from __future__ import annotations

import email.utils
import json
import random
import time

from harness.engine.providers.base import ProviderError
from harness.engine.providers.http_errors import classify_status, retry_after_seconds, status_error
from harness.engine.retry import RetryPolicy


def test_status_classes():
    assert [classify_status(s, "") for s in (408, 409, 429, 500, 502, 503, 504, 529)] == ["transient"] * 8
    assert [classify_status(s, "") for s in (400, 401, 402, 403, 404, 413, 422)] == ["terminal"] * 7
    assert classify_status(429, '{"error": {"code": "insufficient_quota"}}') == "terminal"
    assert classify_status(429, '{"error_code": "enforced_spend_limit_reached"}') == "terminal"
    anthropic_spend = {"type": "error", "error": {"type": "rate_limit_error", "message": "spend limit",
                                                  "details": {"error_code": "enforced_spend_limit_reached"}}}
    assert classify_status(429, json.dumps(anthropic_spend)) == "terminal"
    # OpenAI's rate-limit message for low tiers mentions billing: it is still about pace.
    low_tier = {"error": {"message": "Rate limit reached for gpt-4o ... add a payment method at "
                                     "https://platform.openai.com/account/billing", "type": "requests",
                          "code": "rate_limit_exceeded"}}
    assert classify_status(429, json.dumps(low_tier)) == "transient"
    assert classify_status(429, "insufficient_quota: you exceeded your current quota") == "terminal"
    assert status_error(400, "This model's maximum context length is 8192 tokens", {}).kind == "terminal"
    assert status_error(500, "prompt is too long", {}).kind == "terminal"


def test_retry_after_headers():
    assert retry_after_seconds({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    assert retry_after_seconds({"retry-after": "7"}) == 7.0
    future = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 <= retry_after_seconds({"retry-after": future}) <= 31
    assert retry_after_seconds({"retry-after": "soon"}) is None
    assert retry_after_seconds({}) is None


def test_backoff_is_capped_jittered_and_yields_to_retry_after():
    policy = RetryPolicy(max_retries=3, base_s=0.5, max_s=4.0)
    rng = random.Random(0)
    transient = ProviderError("x", kind="transient")
    delays = [policy.delay_s(transient, attempt, rng) for attempt in range(1, 7)]
    ceilings = [min(4.0, 0.5 * 2 ** (a - 1)) for a in range(1, 7)]
    assert all(0 <= d <= c for d, c in zip(delays, ceilings, strict=True))  # full jitter
    told = ProviderError("x", kind="transient", retry_after_s=20.0)
    assert 20.0 <= policy.delay_s(told, 1, rng) <= 21.0  # the server's word wins over the 4 s cap
    assert policy.should_retry(transient, 3) and not policy.should_retry(transient, 4)
    assert not policy.should_retry(ProviderError("x", kind="terminal"), 1)
