"""Requests of batch targets answered without a batch line: from the response cache, or from an
identical request of the run (same provider, base URL and body), as the realtime engine answers
them (harness/engine/reuse.py).

Before a target's waiting requests are put into batches, a pass looks at them in run order: one
the cache holds, or whose identical request already succeeded, is stored as answered (origin
`cache` or `duplicate`, costing nothing); of identical deterministic requests only the first
goes into a batch, and the others are held back while it is waiting or in one. After batches
are collected the pass runs again: it answers the held-back requests from their batch's result,
and adds the batch results to the cache (with `engine.cache`). Who waits for whom is never
stored: each pass works it out from the store, so a killed process leaves nothing to repair,
and a request whose identical one failed for good goes into the next batch itself.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import cast

from harness.config.suite import EngineSpec, TargetSpec
from harness.cost.pricing import price_for
from harness.engine.batch.batch_store import BatchStore
from harness.engine.providers.base import Completion, Provider, RequestBodies
from harness.engine.reuse import CACHE, DUPLICATE, Reuse
from harness.engine.states import RequestState
from harness.engine.store import RunStore, ScoreRow, StoredRequest

Scoring = Callable[[str, str], list[ScoreRow]]
"""(request_id, output) -> the request's score rows."""


@dataclass
class Settled:
    """What one pass did for a target."""

    held: set[str] = field(default_factory=set)
    """Requests not to put into a batch now: an identical request is waiting or in a batch."""
    answered: Counter[str] = field(default_factory=Counter)
    """Requests stored as answered, by origin."""

    def said(self) -> str | None:
        parts = [f"{count:,} from the response cache" if origin == CACHE else f"{count:,} shared with an identical "
                 "request of the run" for origin, count in sorted(self.answered.items())]
        if self.held:
            parts.append(f"{len(self.held):,} wait for an identical request's batch")
        return ("answered without a batch line: " + ", ".join(parts)) if parts else None


@dataclass(frozen=True)
class BatchAnswers:
    store: RunStore
    bodies: dict[str, RequestBodies]
    """Each batch target's realtime provider (it builds the bodies), by label."""
    targets: dict[str, TargetSpec]
    spec: EngineSpec
    score: Scoring

    def settle(self, label: str) -> Settled:
        """Answers what can be answered of `label`'s waiting requests, and says which to hold back."""
        done = Settled()
        reuse = self._reuse()
        try:
            # Requests already in a batch lead their copies (read whole before anything is written).
            # Digests of 16 bytes: some 100 bytes a request in memory while the pass runs.
            leading = {key.digest for stored in self._in_batch()
                       if (key := reuse.key_of_stored(stored)) is not None and key.shared}
            cost = 0.0 if price_for(self.targets[label]) is not None else None
            for stored in self._waiting(label):
                key = reuse.key_of_stored(stored)
                if key is None:
                    continue
                answer, origin = (reuse.cache.get(key.value), CACHE) if key.cacheable and reuse.cache else (None, CACHE)
                if answer is None:
                    answer, origin = reuse.stored_answer(key), DUPLICATE
                if answer is not None:
                    if self._store_answer(stored, answer, origin, cost):
                        done.answered[origin] += 1
                        reuse.note_succeeded(key, stored.request_id)
                    continue
                if key.shared:
                    if key.digest in leading:
                        done.held.add(stored.request_id)
                    else:
                        leading.add(key.digest)  # this one goes into a batch; its copies wait for it
        finally:
            reuse.close()
        return done

    def remember(self, label: str) -> int:
        """With `engine.cache`: the target's answers from batches go into the response cache.
        Returns how many were added."""
        if not self.spec.cache:
            return 0
        reuse = self._reuse()
        added = 0
        try:
            assert reuse.cache is not None
            for batch in self.store.request_batches(state=RequestState.SUCCEEDED, target=label):
                for stored in batch:
                    key = reuse.key_of_stored(stored)
                    if stored.origin != "sent" or key is None or not key.cacheable or stored.output is None:
                        continue
                    if reuse.cache.get(key.value) is None:
                        reuse.cache.put(key.value, Completion(stored.output, stored.input_tokens,
                                                              stored.output_tokens, stored.finish_reason))
                        added += 1
        finally:
            reuse.close()
        return added

    def _reuse(self) -> Reuse:
        # The bodies are the targets' realtime providers (harness/engine/batch/in_run.py), which
        # is what Reuse keys requests with.
        return Reuse(self.store, {label: cast(Provider, bodies) for label, bodies in self.bodies.items()}, self.spec)

    def _store_answer(self, stored: StoredRequest, answer: Completion, origin: str, cost: float | None) -> bool:
        return self.store.reuse(stored.request_id, answer, origin, self.score(stored.request_id, answer.text), cost)

    def _waiting(self, label: str) -> Iterator[StoredRequest]:
        """The target's waiting requests in run order, a page at a time (no cursor stays open while
        answers are written)."""
        batches, after = BatchStore(self.store), 0
        while page := batches.sendable(label, after):
            for position, stored in page:
                after = position
                yield stored

    def _in_batch(self) -> Iterator[StoredRequest]:
        for batch in self.store.request_batches(state=RequestState.IN_BATCH):
            yield from batch
