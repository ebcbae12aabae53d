"""Where the engine's workers take their next request from: the run store, a batch at a time per
target, so a run never holds more than a batch of requests per target in memory."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Protocol

from harness.config.datasets import Item
from harness.config.suite import TargetSpec
from harness.engine.requests import WorkRequest, prompt_of_payload
from harness.engine.states import RequestState
from harness.engine.store import RunStore

FEED_BATCH = 500
"""Requests read from the store at a time, per target."""


class RequestFeed(Protocol):
    def targets(self) -> list[str]:
        """The labels of the targets that may have work."""
        ...

    def pending(self, target: str) -> int:
        """At most how many requests of `target` are still to come (how many workers are worth starting)."""
        ...

    def next_batch(self, target: str) -> list[WorkRequest]:
        """The next requests of `target`, in order; empty when there are no more."""
        ...


class StoreFeed:
    """The store's unfinished requests (optionally only those whose item `wanted` accepts), read
    in rowid order, `batch` at a time per target. Each batch is a new query after the last rowid
    read, so states written meanwhile are seen and no row is read twice."""

    def __init__(self, store: RunStore, targets: list[TargetSpec], wanted: Callable[[str], bool] | None = None,
                 batch: int | None = None) -> None:
        self.store, self.wanted, self.batch = store, wanted, batch or FEED_BATCH
        self._targets = {target.label: target for target in targets}
        self._after: dict[str, int] = dict.fromkeys(self._targets, 0)
        # Unfinished and not in a provider batch: processing ones too (in flight elsewhere, the
        # store refuses to start them twice).
        self._states = tuple(str(state) for state in
                             (RequestState.QUEUED, RequestState.PROCESSING, RequestState.FAILED_RETRYABLE))

    def targets(self) -> list[str]:
        return list(self._targets)

    def pending(self, target: str) -> int:
        return self.store.db.execute(
            "SELECT COUNT(*) FROM requests WHERE target = ? AND rowid > ? AND state IN (?, ?, ?)",
            (target, self._after[target], *self._states)).fetchone()[0]

    def next_batch(self, target: str) -> list[WorkRequest]:
        spec = self._targets[target]
        while True:
            rows = self.store.db.execute(
                "SELECT rowid, request_id, item_id, sample_index, payload FROM requests"
                " WHERE target = ? AND rowid > ? AND state IN (?, ?, ?) ORDER BY rowid LIMIT ?",
                (target, self._after[target], *self._states, self.batch)).fetchall()
            if not rows:
                return []
            self._after[target] = rows[-1][0]
            if self.wanted is not None:
                rows = [row for row in rows if self.wanted(row[2])]
            if rows:
                return self._requests(spec, rows)

    def _requests(self, target: TargetSpec, rows: list) -> list[WorkRequest]:
        stored = self.store.items_of(row[2] for row in rows)
        requests = []
        for _, request_id, item_id, sample_index, payload in rows:
            found = stored.get(item_id)
            item = (Item(item_id, {}, "?") if found is None else
                    Item(found.item_id, found.fields, found.location, found.slices, found.cluster))
            requests.append(WorkRequest(request_id, item, target, sample_index, prompt_of_payload(json.loads(payload))))
        return requests
