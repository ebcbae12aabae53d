"""One process's work on a run's batch targets: submit (finishing what a stopped process left),
then watch and collect until every batch is collected (or, without waiting, what has ended).

Each phase runs in its own event loop with its own API clients, so the realtime engine can
run between them: a suite with both kinds of targets submits its batches first, sends its
realtime requests, then waits for the batches.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from harness.config.suite import EngineSpec, TargetSpec
from harness.cost.pricing import price_for
from harness.engine.batch.answers import BatchAnswers, Settled
from harness.engine.batch.base import BatchApi, BatchApiError
from harness.engine.batch.batch_store import UNRESOLVED, BatchStore
from harness.engine.batch.collect import Scoring, TargetCollector
from harness.engine.batch.lines import BodyBuilder
from harness.engine.batch.registry import create_batch_api
from harness.engine.batch.submit import Retries, TargetSubmitter
from harness.engine.interrupts import Stop, Terminated, signals_cancel
from harness.engine.providers.base import RequestBodies
from harness.engine.store import RunStore
from harness.errors import UserError

_STOPPING = frozenset({"cancelling", "canceling", "cancelled", "canceled"})


@dataclass(frozen=True)
class BatchTarget:
    target: TargetSpec
    bodies: RequestBodies
    """The target's realtime provider: it builds the request bodies (never sends here)."""
    new_work: bool = True
    """Batch its waiting requests (False: only finish and collect the batches it has)."""


@dataclass(frozen=True)
class BatchSession:
    store: RunStore
    targets: list[BatchTarget]
    spec: EngineSpec
    score: Scoring
    say: Callable[[str], None]

    @property
    def labels(self) -> set[str]:
        return {t.target.label for t in self.targets}

    def submit(self) -> None:
        """Finishes chunks a stopped process left, and batches the waiting requests of the
        targets with new work."""
        asyncio.run(self._submit())

    def collect(self, *, wait: bool = True) -> None:
        asyncio.run(self._collect(wait))

    def cancel(self) -> list[str]:
        """Asks the provider to cancel every live batch; returns what was done."""
        return asyncio.run(self._cancel())

    # -- phases -----------------------------------------------------------------------------
    async def _submit(self) -> None:
        apis = self._open_apis()
        try:
            for batch_target in self.targets:
                submitter = self._submitter(batch_target, apis)
                label = batch_target.target.label
                try:
                    for done in await submitter.finish_open():
                        self.say(f"target {label}: {done}")
                    if batch_target.new_work:
                        settled = self._answers().settle(label)
                        self._say_settled(label, settled)
                        for done in await submitter.submit_waiting(self.store.cancel_requested, settled.held):
                            self.say(f"target {label}: {done}")
                except BatchApiError as error:  # transient, retries spent: the next session goes on
                    self.say(f"target {label}: {error}; the batch is left to the next `run --resume` or "
                             f"`evalbatch collect`")
        finally:
            await _close(apis)

    async def _collect(self, wait: bool) -> None:
        await self._watch(wait)
        answers = self._answers()
        for batch_target in self.targets:
            label = batch_target.target.label
            if batch_target.bodies is not None:
                self._say_settled(label, answers.settle(label))  # copies of what the batches answered
                added = answers.remember(label)
                if added:
                    self.say(f"target {label}: {added:,} batch answer(s) added to the response cache")

    def _answers(self) -> BatchAnswers:
        return BatchAnswers(self.store, {t.target.label: t.bodies for t in self.targets},
                            {t.target.label: t.target for t in self.targets}, self.spec, self.score)

    def _say_settled(self, label: str, settled: Settled) -> None:
        said = settled.said()
        if said:
            self.say(f"target {label}: {said}")

    async def _watch(self, wait: bool) -> None:
        with signals_cancel(asyncio.current_task()) as stop:
            try:
                await self._poll(wait, stop)
            except asyncio.CancelledError:
                if stop.received:
                    raise Terminated(stop.previous) from None
                raise

    async def _poll(self, wait: bool, stop: Stop) -> None:
        apis = self._open_apis()
        try:
            collectors = [self._collector(t, apis) for t in self.targets]
            cancel_sent = False
            reported: dict[str, tuple] = {}
            stuck: set[int] = set()  # chunks that cannot be read: left open, not looked at again now
            while True:
                if stop.received:  # the signal's cancellation was lost in a library call: stop anyway
                    raise Terminated(stop.previous)
                waiting = await self._resolve(apis) if wait else False
                live = [(collector, chunk) for collector in collectors for chunk in collector.live()
                        if chunk.chunk not in stuck]
                if not live and not waiting:
                    return
                if not cancel_sent and self.store.cancel_requested():
                    cancel_sent = True
                    for collector, chunk in live:
                        if chunk.status not in _STOPPING:
                            await self._quietly(collector.cancel(chunk), f"cancel batch {chunk.batch_id}")
                for collector, chunk in live:
                    if not await self._look(collector, chunk, reported):
                        stuck.add(chunk.chunk)
                if not wait:
                    return
                if waiting or any(chunk.chunk not in stuck for collector in collectors for chunk in collector.live()):
                    await asyncio.sleep(self.spec.batch.poll_s)
        finally:
            await _close(apis)

    async def _resolve(self, apis: dict[str, BatchApi]) -> bool:
        """Looks again at the chunks waiting to be identified (a batch that may be theirs was
        still running): adopts the one proven theirs, or creates theirs once none can be. True
        while some still wait."""
        waiting = False
        if self.store.cancel_requested():
            return False  # a cancelled run creates nothing more; its chunks stay unresolved
        for batch_target in self.targets:
            label = batch_target.target.label
            if batch_target.bodies is None or not any(
                    chunk.target == label and chunk.status == UNRESOLVED
                    for chunk in BatchStore(self.store).chunks(open_only=True)):
                continue
            submitter = self._submitter(batch_target, apis)
            try:
                for done in await submitter.finish_open(unresolved_only=True, quiet=True):
                    self.say(f"target {label}: {done}")
            except BatchApiError as error:
                if error.final:  # looking again in this session cannot help: the next one may
                    self.say(f"target {label}: {error}; its unresolved batches are left to `evalbatch collect RUN`")
                    continue
                self.say(f"target {label}: {error}; looking again later")
            waiting = waiting or any(chunk.target == label and chunk.status == UNRESOLVED
                                     for chunk in BatchStore(self.store).chunks(open_only=True))
        return waiting

    async def _look(self, collector: TargetCollector, chunk, reported: dict[str, tuple]) -> bool:
        """One look at a live batch; False when it cannot be read now and looking again in this
        session cannot help (a 401/403/404, a results file gone)."""
        try:
            info, collected = await collector.look(chunk)
        except BatchApiError as error:
            if not error.final:
                self.say(f"target {collector.label}: {error}; looking again later")
                return True
            # A failed read never settles a chunk: the batch may still be running (and billed) at
            # the provider, e.g. when this key was rotated or belongs to another project. Its
            # requests stay in it until the provider says how it ended.
            self.say(f"target {collector.label}: batch {chunk.batch_id} at {collector.api.base_url} cannot be "
                     f"read: {error}. It is left open and its requests stay in it; fix the key or endpoint "
                     "and run `evalbatch collect RUN` again")
            return False
        if collected is not None:
            self.say(f"target {collector.label}: {collected}")
            return True
        news = (info.status, info.completed, info.failed)
        if reported.get(info.batch_id) != news:
            reported[info.batch_id] = news
            self.say(f"target {collector.label}: batch {info.batch_id} {info.status}, "
                     f"{info.completed:,}/{info.total:,} done, {info.failed:,} failed")
        return True

    async def _cancel(self) -> list[str]:
        apis = self._open_apis()
        done = []
        try:
            for batch_target in self.targets:
                collector = self._collector(batch_target, apis)
                for chunk in collector.live():
                    if chunk.status in _STOPPING:
                        continue
                    info = await self._quietly(collector.cancel(chunk), f"cancel batch {chunk.batch_id}")
                    if info is not None:
                        done.append(f"batch {info.batch_id}: {info.status}")
        finally:
            await _close(apis)
        return done

    async def _quietly(self, call, what: str):
        try:
            return await call
        except BatchApiError as error:
            self.say(f"could not {what}: {error}")
            return None

    # -- parts ------------------------------------------------------------------------------
    def _open_apis(self) -> dict[str, BatchApi]:
        apis: dict[str, BatchApi] = {}
        for batch_target in self.targets:
            try:
                apis[batch_target.target.label] = create_batch_api(batch_target.target)
            except (BatchApiError, ValueError) as error:
                raise UserError(str(error), location=f"target {batch_target.target.label!r}") from None
        return apis

    def _submitter(self, batch_target: BatchTarget, apis: dict[str, BatchApi]) -> TargetSubmitter:
        api = apis[batch_target.target.label]
        return TargetSubmitter(BatchStore(self.store), api, batch_target.target.label,
                               BodyBuilder(batch_target.bodies), self._limits(api), self._retries())

    def _collector(self, batch_target: BatchTarget, apis: dict[str, BatchApi]) -> TargetCollector:
        label = batch_target.target.label
        return TargetCollector(BatchStore(self.store), apis[label], label, price_for(batch_target.target),
                               self.score, self._retries())

    def _limits(self, api: BatchApi):
        return api.limits.lowered(self.spec.batch.max_requests, self.spec.batch.max_bytes)

    def _retries(self) -> Retries:
        return Retries(self.spec.max_retries, self.spec.backoff_base_s, self.spec.backoff_max_s)


async def _close(apis: dict[str, BatchApi]) -> None:
    await asyncio.gather(*(api.close() for api in apis.values()), return_exceptions=True)
