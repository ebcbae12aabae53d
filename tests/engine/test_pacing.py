"""The lane pacer on a simulated clock: declared and learned limits, the window budget the server
states, lane-wide pauses, and the concurrency that halves on overload and grows back."""

from __future__ import annotations

import asyncio

import pytest

from harness.config.suite import RateLimits
from harness.engine.concurrency import AdaptiveConcurrency
from harness.engine.pacing import HEADROOM, LanePacer, TokenBucket
from harness.engine.rate_headers import read_rate_limits


class SimulatedTime:
    """asyncio.sleep advances this clock instead of waiting, so a minute of pacing takes no time."""

    def __init__(self, monkeypatch) -> None:
        self.now = 1000.0
        real_sleep = asyncio.sleep

        async def sleep(seconds: float) -> None:
            self.now += max(0.0, seconds)
            await real_sleep(0)

        monkeypatch.setattr(asyncio, "sleep", sleep)

    def __call__(self) -> float:
        return self.now


def _send(pacer: LanePacer, clock: SimulatedTime, count: int, prompt: int = 10, max_tokens: int = 0) -> list[float]:
    async def go() -> list[float]:
        times = []
        for _ in range(count):
            await pacer.admit(prompt, max_tokens)
            times.append(clock.now)
        return times

    return asyncio.run(go())


def _most_in_any_window(times: list[float], window_s: float) -> int:
    return max(sum(1 for t in times if start <= t < start + window_s) for start in times)


def test_declared_rpm_is_met_not_exceeded(monkeypatch):
    clock = SimulatedTime(monkeypatch)
    pacer = LanePacer(RateLimits(rpm=600), clock=clock)
    times = _send(pacer, clock, 1200)
    span = times[-1] - times[0]
    assert 600 * HEADROOM * 0.99 <= 1199 / span * 60 <= 600  # paced at the headroom under the limit
    assert _most_in_any_window(times, 60.0) <= 600


def test_declared_tpm_paces_by_estimated_tokens(monkeypatch):
    clock = SimulatedTime(monkeypatch)
    pacer = LanePacer(RateLimits(tpm=6000), clock=clock)  # 100 tokens a second
    times = _send(pacer, clock, 300, prompt=40, max_tokens=60)  # 100 tokens each: about 1 request a second
    assert 0.97 <= 299 / (times[-1] - times[0]) <= 1.0


def test_a_request_larger_than_the_bucket_still_goes(monkeypatch):
    clock = SimulatedTime(monkeypatch)
    pacer = LanePacer(RateLimits(tpm=600), clock=clock)  # 10 tokens a second, a 10-token bucket
    times = _send(pacer, clock, 3, prompt=50, max_tokens=50)
    assert times[-1] - times[0] == pytest.approx(2 * 100 / (600 * HEADROOM / 60), rel=0.05)


def test_limits_are_learned_from_headers_and_the_lower_one_holds(monkeypatch):
    clock = SimulatedTime(monkeypatch)
    pacer = LanePacer(RateLimits(), clock=clock)
    ticket = asyncio.run(pacer.admit(10, 0))
    assert not pacer.knows_limits
    pacer.observe(ticket, read_rate_limits({"x-ratelimit-limit-requests": "120", "x-ratelimit-limit-tokens": "90000"}),
                  input_tokens=None)
    assert pacer.requests is not None and pacer.requests.rate_per_s == pytest.approx(2 * HEADROOM)
    assert "120 rpm (from the server's headers)" in pacer.describe()
    declared = LanePacer(RateLimits(rpm=60), clock=clock)
    ticket = asyncio.run(declared.admit(10, 0))
    declared.observe(ticket, read_rate_limits({"x-ratelimit-limit-requests": "6000"}), input_tokens=None)
    assert declared.requests.rate_per_s == pytest.approx(1 * HEADROOM)  # declared 60 is lower than 6000


def test_an_exhausted_window_waits_for_its_reset(monkeypatch):
    clock = SimulatedTime(monkeypatch)
    pacer = LanePacer(RateLimits(), clock=clock)
    ticket = asyncio.run(pacer.admit(10, 0))
    pacer.observe(ticket, read_rate_limits({"x-ratelimit-remaining-requests": "2", "x-ratelimit-reset-requests": "30s"}),
                  input_tokens=None)
    times = _send(pacer, clock, 3)
    assert times[1] - times[0] < 1 and times[2] - times[0] >= 29.9  # two were left, the third waits


def test_server_token_counts_correct_the_estimate(monkeypatch):
    clock = SimulatedTime(monkeypatch)
    pacer = LanePacer(RateLimits(tpm=60000), clock=clock)
    for _ in range(30):
        ticket = asyncio.run(pacer.admit(100, 10))
        pacer.observe(ticket, read_rate_limits({}), input_tokens=150)  # the server counts 1.5x our estimate
    assert pacer.estimate(100, 10) == pytest.approx(160, abs=2)


def test_a_pause_holds_the_whole_lane_and_is_counted_once(monkeypatch):
    clock = SimulatedTime(monkeypatch)
    pacer = LanePacer(RateLimits(), clock=clock)
    pacer.pause(5.0)
    pacer.pause(3.0)  # a second worker told the same thing: no extra time
    times = _send(pacer, clock, 2)
    assert times[0] >= 1005.0 and pacer.paused_s == pytest.approx(5.0)


def test_token_bucket_gives_back_what_an_estimate_overcounted():
    bucket = TokenBucket(rate_per_s=1.0, capacity=10.0, level=0.0, now=0.0)
    bucket.take(5, now=0.0)
    bucket.give_back(3, now=0.0)
    assert bucket.level == pytest.approx(-2.0)
    assert bucket.wait_s(1, now=0.0) == pytest.approx(3.0)


def test_concurrency_halves_on_overload_and_grows_back():
    limit = AdaptiveConcurrency(16)
    limit.overloaded()
    limit.overloaded()
    assert limit.limit == 16  # one or two are not yet a share
    limit.overloaded()
    assert limit.limit == 8
    limit.overloaded()  # the same burst's replies: once per cooldown
    assert limit.limit == 8
    for _ in range(200):
        limit.succeeded()
    assert limit.limit == 16


def test_stray_overload_replies_do_not_collapse_concurrency(monkeypatch):
    """A few percent of 429/529 among successes is noise, not a provider at capacity."""
    limit = AdaptiveConcurrency(64)
    limit.DECREASE_COOLDOWN_S = 0.0
    for reply in range(2000):
        limit.overloaded() if reply % 20 == 0 else limit.succeeded()
    assert limit.limit == 64
    for _ in range(40):
        limit.overloaded()
    assert limit.limit < 2


def test_concurrency_never_lets_more_in_than_its_limit():
    limit = AdaptiveConcurrency(4)
    limit.DECREASE_COOLDOWN_S = 0.0
    most = 0

    async def worker() -> None:
        nonlocal most
        async with limit:
            most = max(most, limit.in_flight)
            await asyncio.sleep(0.001)

    async def go() -> None:
        for _ in range(3):
            limit.overloaded()  # 2 (the cooldown is off)
        await asyncio.gather(*(worker() for _ in range(20)))

    asyncio.run(go())
    assert most == 2 and limit.in_flight == 0


def test_a_waiting_admission_gives_up_when_told_to_stop(monkeypatch):
    """A cancel or a stopped lane ends a wait for the next slot (rpd 3: the fourth would wait hours)."""
    clock = SimulatedTime(monkeypatch)
    pacer = LanePacer(RateLimits(rpd=3), clock=clock)
    _send(pacer, clock, 3)
    began = clock.now

    async def stopped_after_a_while():
        return await pacer.admit(10, 0, stop=lambda: clock.now - began > 2)

    assert asyncio.run(stopped_after_a_while()) is None and clock.now - began < 3


def test_a_lower_limit_from_the_server_wins_over_a_declared_one(monkeypatch):
    clock = SimulatedTime(monkeypatch)
    pacer = LanePacer(RateLimits(rpm=2400), clock=clock)
    ticket = asyncio.run(pacer.admit(10, 0))
    pacer.observe(ticket, read_rate_limits({"x-ratelimit-limit-requests": "600"}), input_tokens=None)
    assert pacer.requests.rate_per_s == pytest.approx(10 * HEADROOM)
    assert "600 rpm (from the server's headers)" in pacer.describe()


def test_the_first_request_goes_at_once(monkeypatch):
    clock = SimulatedTime(monkeypatch)
    pacer = LanePacer(RateLimits(rpm=1), clock=clock)
    times = _send(pacer, clock, 2)
    assert times[0] == 1000.0 and times[1] - times[0] == pytest.approx(60 / HEADROOM, rel=0.01)
