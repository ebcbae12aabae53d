"""The batch engine: bounded, adaptive concurrency; pacing under rate limits; retries; a circuit
breaker per target; every transition committed to the store before anyone is told."""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from harness.config.suite import EngineSpec, TargetSpec
from harness.cost.pricing import ModelPrice
from harness.cost.tokens import prompt_side_tokens
from harness.engine.breaker import CircuitBreaker, is_rate_limited
from harness.engine.commits import GroupCommit
from harness.engine.concurrency import AdaptiveConcurrency
from harness.engine.feed import RequestFeed
from harness.engine.pacing import LanePacer, Ticket
from harness.engine.providers.base import Completion, Provider, ProviderError, ProviderRequest
from harness.engine.rate_headers import read_rate_limits
from harness.engine.requests import WorkRequest
from harness.engine.retry import RequestTries, RetryPolicy
from harness.engine.reuse import Reuse, score_as_it_arrives
from harness.engine.store import Attempt, RunStore, ScoreRow

Scorer = Callable[[WorkRequest, str], list[ScoreRow]]

_CANCEL_CHECK_S = 0.5
"""How often workers look for `evalbatch cancel` in the store (a read per request would cost throughput)."""


class ProgressSink(Protocol):
    """What the engine reports, always after the store has committed it."""

    def succeeded(self, completion: Completion) -> None: ...

    def failed(self, final: bool) -> None: ...

    def retry_started(self) -> None: ...

    def paused(self, until: float) -> None: ...


@dataclass
class TargetLane:
    """One target's way out: its provider, how many requests it may have in flight, its pacing
    under rate limits, its circuit breaker and its price."""

    provider: Provider
    target: TargetSpec
    concurrency: AdaptiveConcurrency
    pacer: LanePacer
    breaker: CircuitBreaker
    price: ModelPrice | None = None
    paused_recorded_s: float = field(default=0.0)

    @classmethod
    def open(cls, provider: Provider, target: TargetSpec, spec: EngineSpec, price: ModelPrice | None,
             max_concurrency: int) -> TargetLane:
        limits = target.limits.merged_over(spec.limits) if target.limits else spec.limits
        return cls(provider, target, AdaptiveConcurrency(max_concurrency), LanePacer(limits),
                   CircuitBreaker(spec.breaker_failures), price)

    def where(self) -> str:
        """The lane's endpoint for messages (never a secret: identity() holds none)."""
        identity = self.provider.identity()
        return str(identity.get("base_url") or identity.get("model_path") or identity.get("provider", "?"))


class _LaneQueue:
    """One target's requests waiting for a worker: a batch from the feed, refilled when it runs out
    (synchronously, between awaits: workers on the one event loop never refill it twice)."""

    def __init__(self, feed: RequestFeed, label: str) -> None:
        self.feed, self.label = feed, label
        self.waiting: deque[WorkRequest] = deque()
        self.exhausted = False

    def next(self) -> WorkRequest | None:
        if not self.waiting and not self.exhausted:
            self.waiting.extend(self.feed.next_batch(self.label))
            self.exhausted = not self.waiting
        return self.waiting.popleft() if self.waiting else None


class Engine:
    def __init__(self, store: RunStore, lanes: dict[str, TargetLane], spec: EngineSpec,
                 progress: ProgressSink, scorer: Scorer | None = None, *, shared_payloads: bool = True) -> None:
        """`shared_payloads` False: the plan found no two requests with the same body, so none
        can answer another (the run then skips keeping track of identical requests)."""
        self.store = store
        self.commits = GroupCommit(store)
        """Attempts started and successes, committed together per turn of the event loop."""
        self.scorer = scorer
        self.lanes = lanes
        self.spec = spec
        self.retry = RetryPolicy.from_spec(spec)
        self.progress = progress
        self._rng = random.Random()
        self._cancel_checked_at = float("-inf")
        self.cancelled = False
        self.reuse = Reuse(store, {label: lane.provider for label, lane in lanes.items()}, spec, scorer,
                           priced=[label for label, lane in lanes.items() if lane.price is not None],
                           shared_payloads=shared_payloads)
        """Answers without sending: identical requests of the run, and the response cache."""

    async def run(self, feed: RequestFeed) -> None:
        """Each target gets its own queue and workers: a target paced by its rate limits (or
        stopped by its breaker) never holds up another. Queues are refilled from `feed` a batch
        at a time, so the requests in memory are a batch per target, whatever the run's size."""
        queues = [_LaneQueue(feed, label) for label in feed.targets() if label in self.lanes]
        workers = [asyncio.create_task(self._worker(queue))
                   for queue in queues
                   for _ in range(min(self.lanes[queue.label].concurrency.ceiling, feed.pending(queue.label)))]
        try:
            await asyncio.gather(*workers)
        finally:
            self.commits.flush()  # answers already received are stored, not sent again
            for worker in workers:
                worker.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            self._record_lane_state()

    def close(self) -> None:
        self.reuse.close()

    def stopped_lanes(self) -> dict[str, str]:
        """Targets whose circuit breaker stopped them, and why (with the endpoint)."""
        return {label: f"{lane.breaker.reason} (endpoint {lane.where()})"
                for label, lane in self.lanes.items() if lane.breaker.reason}

    def _record_lane_state(self) -> None:
        """Time paused by rate limits and stopped lanes go into the store for status and metrics."""
        paused = sum(lane.pacer.paused_s - lane.paused_recorded_s for lane in self.lanes.values())
        for lane in self.lanes.values():
            lane.paused_recorded_s = lane.pacer.paused_s
        if paused:
            self.store.set_meta("rate_limit_paused_s", self.store.get_meta("rate_limit_paused_s", 0.0) + paused)
        if stopped := self.stopped_lanes():
            self.store.set_meta("lanes_stopped", stopped)

    async def _worker(self, queue: _LaneQueue) -> None:
        while not self._cancel_requested() and (request := queue.next()) is not None:
            await self._process(request)

    def _cancel_requested(self) -> bool:
        now = time.monotonic()
        if not self.cancelled and now - self._cancel_checked_at >= _CANCEL_CHECK_S:
            self._cancel_checked_at = now
            self.cancelled = self.store.cancel_requested()
        return self.cancelled

    def _may_send(self, lane: TargetLane) -> bool:
        return not lane.breaker.open and not self._cancel_requested()

    async def _process(self, request: WorkRequest) -> None:
        lane = self.lanes[request.target.label]
        provider_request = ProviderRequest(
            request_id=request.request_id, prompt=request.prompt.text, messages=request.prompt.messages,
            timeout_s=self.spec.timeout_s)
        if not self._may_send(lane):
            return
        reused = await self.reuse.answered(request)  # waits while an identical request is in flight
        if reused is not None:
            self.progress.succeeded(reused)
            return
        raw_prompt_tokens = prompt_side_tokens(lane.target, request.prompt, lane.pacer.declares_token_limits)
        tries = RequestTries()
        while self._may_send(lane):
            async with lane.concurrency:
                ticket = await lane.pacer.admit(raw_prompt_tokens, lane.target.params.max_tokens,
                                                stop=lambda: not self._may_send(lane))
                if ticket is None or not self._may_send(lane):  # stopped while it waited for its turn
                    return
                attempt = await self.commits.start_attempt(request.request_id)
                if attempt is None:  # finished or in flight elsewhere: sending it would pay twice
                    return
                tries.began()
                started = time.perf_counter()
                try:
                    completion = await self._call(lane.provider, provider_request)
                except ProviderError as error:
                    completion, failure = None, error
            if completion is not None:
                await self._succeeded(request, lane, ticket, attempt.number, completion,
                                      (time.perf_counter() - started) * 1000)
                return
            if not await self._failed(request, lane, ticket, attempt, failure, tries):
                return

    async def _succeeded(self, request: WorkRequest, lane: TargetLane, ticket: Ticket, attempt: int,
                         completion: Completion, latency_ms: float) -> None:
        lane.pacer.observe(ticket, read_rate_limits(completion.rate_limits), completion.input_tokens)
        lane.concurrency.succeeded()
        lane.breaker.succeeded()
        cost = None
        if lane.price is not None and completion.input_tokens is not None and completion.output_tokens is not None:
            cost = lane.price.cost(completion.input_tokens, completion.output_tokens,
                                   cached_input_tokens=completion.cached_input_tokens or 0)
        if await self.commits.succeed(request.request_id, attempt, completion, latency_ms,
                                      self._scores(request, completion.text), cost_usd=cost):
            self.reuse.record(request, completion)
            self.progress.succeeded(completion)

    async def _failed(self, request: WorkRequest, lane: TargetLane, ticket: Ticket, attempt: Attempt,
                      failure: ProviderError, tries: RequestTries) -> bool:
        """Records the failure; True when the request is to be sent again (after its wait)."""
        lane.pacer.observe(ticket, read_rate_limits(failure.rate_limits), None)
        if failure.no_reply:
            lane.pacer.refund(ticket)
        if failure.status in (429, 529) and failure.kind == "transient":
            lane.concurrency.overloaded()
        probe_after_s = lane.breaker.failed(failure)
        if probe_after_s:
            lane.pacer.pause(probe_after_s, rate_limited=False)
        if tries.rate_limited is None:  # 429s of this round in earlier processes spent no budget either
            tries.rate_limited = self.store.rate_limited_attempts(request.request_id)
        why_not = self.retry.why_not_retry(failure, tries, attempt.in_round, time.monotonic())
        error = failure.describe()
        if why_not is not None and failure.kind == "transient" and why_not != "no retry":
            error += f" (gave up: {why_not})"
        if not self.store.fail(request.request_id, attempt.number, final=why_not is not None, error=error,
                               status=failure.status):
            return False
        self.progress.failed(final=why_not is not None)
        if why_not is not None:
            self.reuse.failed(request)
            return False
        if is_rate_limited(failure):
            # The whole lane waits until the reset the server announced; this request then
            # queues for its turn like every other.
            lane.pacer.pause(self.retry.pause_s(failure, tries.rate_limited_in_row, self._rng))
            self.progress.paused(lane.pacer.paused_until)
        else:
            await self._wait_unless_stopped(lane, self.retry.delay_s(failure, tries.spent(attempt.in_round), self._rng))
        self.progress.retry_started()
        return True

    async def _wait_unless_stopped(self, lane: TargetLane, seconds: float) -> None:
        """A backoff (a Retry-After can be minutes) that a cancel or a stopped lane cuts short."""
        until = time.monotonic() + seconds
        while (left := until - time.monotonic()) > 0 and self._may_send(lane):
            await asyncio.sleep(min(left, _CANCEL_CHECK_S))

    def _scores(self, request: WorkRequest, output: str) -> list[ScoreRow]:
        return score_as_it_arrives(self.scorer, request, output)

    async def _call(self, provider: Provider, request: ProviderRequest) -> Completion:
        try:
            if getattr(provider, "enforces_timeout", False):
                return await provider.complete(request)
            # Bounds providers that have no timeout of their own.
            return await asyncio.wait_for(provider.complete(request), timeout=request.timeout_s)
        except ProviderError:
            raise
        except TimeoutError:
            raise ProviderError(f"timed out after {request.timeout_s:g} s", kind="transient") from None
        except Exception as exc:  # a provider bug must not take the run down: record it, stop retrying
            raise ProviderError(f"unexpected {type(exc).__name__}: {exc}", kind="terminal") from None
