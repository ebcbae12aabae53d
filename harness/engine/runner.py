"""The batch engine: bounded concurrency, timeouts, retries; every transition committed first."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from harness.config.suite import EngineSpec
from harness.engine.providers.base import Completion, Provider, ProviderError, ProviderRequest
from harness.engine.requests import WorkRequest
from harness.engine.retry import RetryPolicy
from harness.engine.store import RunStore, ScoreRow

Scorer = Callable[[WorkRequest, str], list[ScoreRow]]


class ProgressSink(Protocol):
    """What the engine reports, always after the store has committed it."""

    def succeeded(self, completion: Completion) -> None: ...

    def failed(self, final: bool) -> None: ...

    def retry_started(self) -> None: ...


@dataclass(frozen=True)
class TargetLane:
    """A target's provider and the most requests it may have in flight."""

    provider: Provider
    limit: asyncio.Semaphore


class Engine:
    def __init__(self, store: RunStore, lanes: dict[str, TargetLane], spec: EngineSpec,
                 progress: ProgressSink, scorer: Scorer | None = None) -> None:
        self.store = store
        self.scorer = scorer
        self.lanes = lanes
        self.spec = spec
        self.retry = RetryPolicy.from_spec(spec)
        self.progress = progress
        self._rng = random.Random()

    async def run(self, todo: list[WorkRequest]) -> None:
        queue: asyncio.Queue[WorkRequest] = asyncio.Queue()
        for request in todo:
            queue.put_nowait(request)
        workers = [asyncio.create_task(self._worker(queue)) for _ in range(min(self.spec.concurrency, len(todo)))]
        try:
            await asyncio.gather(*workers)
        finally:
            for worker in workers:
                worker.cancel()
            await asyncio.gather(*workers, return_exceptions=True)

    async def _worker(self, queue: asyncio.Queue[WorkRequest]) -> None:
        while True:
            try:
                request = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            await self._process(request)

    async def _process(self, request: WorkRequest) -> None:
        lane = self.lanes[request.target.label]
        provider_request = ProviderRequest(
            request_id=request.request_id, prompt=request.prompt.text, messages=request.prompt.messages,
            timeout_s=self.spec.timeout_s)
        while True:
            async with lane.limit:
                attempt = self.store.start_attempt(request.request_id)
                if attempt is None:  # finished or in flight elsewhere: sending it would pay twice
                    return
                started = time.perf_counter()
                try:
                    completion = await self._call(lane.provider, provider_request)
                except ProviderError as error:
                    completion = None
                    failure = error
            if completion is not None:
                latency_ms = (time.perf_counter() - started) * 1000
                if self.store.succeed(request.request_id, attempt.number, completion, latency_ms,
                                      self._scores(request, completion.text)):
                    self.progress.succeeded(completion)
                return
            retry = self.retry.should_retry(failure, attempt.in_round)
            if not self.store.fail(request.request_id, attempt.number, final=not retry, error=failure.describe(),
                                   status=failure.status):
                return
            self.progress.failed(final=not retry)
            if not retry:
                return
            await asyncio.sleep(self.retry.delay_s(failure, attempt.in_round, self._rng))
            self.progress.retry_started()

    def _scores(self, request: WorkRequest, output: str) -> list[ScoreRow]:
        """Scored as it arrives so the store alone can be compared; a scorer that fails here
        only delays the scores to the end-of-run pass."""
        if self.scorer is None:
            return []
        try:
            return self.scorer(request, output)
        except Exception:  # noqa: BLE001 - the end-of-run scoring reports it
            return []

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
