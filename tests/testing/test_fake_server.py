"""The fake server itself, through the real openai and anthropic clients: enforced windows with
provider-format rate-limit headers, every random fault kind as the SDKs see it, quota 429s."""

from __future__ import annotations

from datetime import UTC, datetime

import anthropic
import openai
import pytest

from harness.testing.fake_limits import RandomFaults, go_duration
from harness.testing.fake_server import FakeLLMServer, FaultRule


def _openai(server: FakeLLMServer, timeout: float = 5.0) -> openai.OpenAI:
    return openai.OpenAI(api_key="test", base_url=server.base_url + "/v1", max_retries=0, timeout=timeout)


def _ask(client: openai.OpenAI, text: str = "hello", request_id: str | None = None):
    headers = {"X-Evalbatch-Request-Id": request_id} if request_id else None
    return client.chat.completions.with_raw_response.create(
        model="fake", messages=[{"role": "user", "content": text}], max_tokens=5, extra_headers=headers)


def test_request_window_admits_its_capacity_then_answers_429_with_headers():
    # rpm 120 in 10-second windows: 20 requests per window.
    with FakeLLMServer(rpm=120, window_s=10) as server:
        client = _openai(server)
        replies = [_ask(client) for _ in range(20)]
        assert replies[0].headers["x-ratelimit-limit-requests"] == "120"  # always the per-minute figure
        assert [int(r.headers["x-ratelimit-remaining-requests"]) for r in replies] == list(range(19, -1, -1))
        assert replies[-1].headers["x-ratelimit-reset-requests"].endswith("s")
        with pytest.raises(openai.RateLimitError) as refused:
            _ask(client)
    error = refused.value
    assert error.body["code"] == "rate_limit_exceeded" and error.body["type"] == "requests"
    assert error.response.headers["x-ratelimit-remaining-requests"] == "0"
    assert 1 <= int(error.response.headers["retry-after"]) <= 10
    assert 0 < int(error.response.headers["retry-after-ms"]) <= 10_000
    assert len(server.log.accepted_times) == 20 and len(server.log.rejected_429) == 1
    assert server.log.limited == 1 and server.accepted_per_window() == [20]


def test_token_window_counts_the_prompt_estimate_and_max_tokens():
    # 600 tokens per minute in 6-second windows: 60 tokens; each request costs about 10 + 5.
    with FakeLLMServer(tpm=600, window_s=6) as server:
        client = _openai(server)
        first = _ask(client)
        assert first.headers["x-ratelimit-limit-tokens"] == "600"
        cost = 60 - int(first.headers["x-ratelimit-remaining-tokens"])
        assert cost > 5
        answered = 1
        with pytest.raises(openai.RateLimitError) as refused:
            while True:
                _ask(client)
                answered += 1
    assert answered == 60 // cost
    assert refused.value.body["type"] == "tokens"


def test_anthropic_headers_and_429_body(monkeypatch):
    with FakeLLMServer(rpm=60, tpm=100_000, window_s=2) as server:
        client = anthropic.Anthropic(api_key="test", base_url=server.base_url, max_retries=0)
        raw = client.messages.with_raw_response.create(model="fake", max_tokens=5,
                                                       messages=[{"role": "user", "content": "hi"}])
        assert raw.headers["anthropic-ratelimit-requests-limit"] == "60"
        assert raw.headers["anthropic-ratelimit-requests-remaining"] == "1"
        assert raw.headers["anthropic-ratelimit-tokens-limit"] == "100000"
        reset = datetime.fromisoformat(raw.headers["anthropic-ratelimit-requests-reset"])
        assert 0 <= (reset - datetime.now(UTC)).total_seconds() <= 2.5
        client.messages.create(model="fake", max_tokens=5, messages=[{"role": "user", "content": "hi"}])
        with pytest.raises(anthropic.RateLimitError) as refused:
            client.messages.create(model="fake", max_tokens=5, messages=[{"role": "user", "content": "hi"}])
    assert refused.value.body["error"]["type"] == "rate_limit_error"
    assert "anthropic-ratelimit-requests-reset" in refused.value.response.headers


def test_without_limits_no_limit_is_stated():
    """A stated limit is one the engine paces by: an unlimited server must not claim one."""
    with FakeLLMServer() as server:
        reply = _ask(_openai(server))
    assert reply.status_code == 200
    assert not [name for name in reply.headers if "ratelimit" in name]


@pytest.mark.parametrize(("kind", "error"), [
    ("429", openai.RateLimitError), ("500", openai.InternalServerError), ("502", openai.InternalServerError),
    ("503", openai.InternalServerError), ("529", openai.InternalServerError),
    ("reset", openai.APIConnectionError), ("slow", openai.APITimeoutError),
])
def test_each_random_fault_kind_reaches_the_client_as_its_error(kind, error):
    with FakeLLMServer(fault_rate=1.0, fault_kinds=(kind,), slow_s=0.6) as server:
        with pytest.raises(error):
            _ask(_openai(server, timeout=0.3), request_id="r1")
    assert server.log.faults == {kind: 1}
    assert not server.log.successes  # a fault never counts as an answer


def test_malformed_fault_is_a_200_the_client_cannot_parse():
    with FakeLLMServer(fault_rate=1.0, fault_kinds=("malformed",)) as server:
        raw = _ask(_openai(server), request_id="r1")
        assert raw.status_code == 200
        with pytest.raises(ValueError):
            raw.parse()
    assert not server.log.successes


def test_the_connection_after_a_reset_still_works():
    with FakeLLMServer(fault_rate=0.5, fault_seed=3, fault_kinds=("reset",)) as server:
        client = _openai(server)
        outcomes = []
        for n in range(20):
            try:
                _ask(client, request_id=f"r{n}")
                outcomes.append("ok")
            except openai.APIConnectionError:
                outcomes.append("reset")
    assert outcomes.count("ok") == sum(server.log.successes.values()) > 0
    assert outcomes.count("reset") == server.log.faults["reset"] > 0


def test_random_faults_depend_only_on_seed_request_and_attempt():
    faults = RandomFaults(rate=0.3, seed=5)
    picks = [faults.pick(f"r{n}", attempt) for n in range(2000) for attempt in (1, 2)]
    assert picks == [RandomFaults(rate=0.3, seed=5).pick(f"r{n}", a) for n in range(2000) for a in (1, 2)]
    assert picks != [RandomFaults(rate=0.3, seed=6).pick(f"r{n}", a) for n in range(2000) for a in (1, 2)]
    share = sum(p is not None for p in picks) / len(picks)
    assert 0.27 < share < 0.33
    assert {p for p in picks if p} == set(faults.kinds)
    with pytest.raises(ValueError, match="fault kinds"):
        RandomFaults(rate=0.1, kinds=("teapot",))


def test_quota_rule_is_an_insufficient_quota_429():
    with FakeLLMServer(faults=[FaultRule(quota=True, times=9)]) as server:
        with pytest.raises(openai.RateLimitError) as refused:
            _ask(_openai(server))
    assert refused.value.body["code"] == "insufficient_quota"
    assert len(server.log.rejected_429) == 1 and server.log.limited == 0


@pytest.mark.parametrize(("seconds", "text"), [(0.35, "350ms"), (1, "1s"), (1.5, "1.5s"), (360, "6m0s"),
                                               (61.25, "1m1.25s"), (0, "0ms")])
def test_go_durations(seconds, text):
    assert go_duration(seconds) == text
