"""Grades every succeeded request of a run and stores the scores (plain functions, no event loop)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from harness.engine.store import SUCCEEDED, RunStore, ScoreRow
from harness.scoring.registry import BoundScorer

BATCH = 2000


class ScoredItem(Protocol):
    @property
    def fields(self) -> dict[str, Any]: ...


def score_run(store: RunStore, scorers: list[BoundScorer], items: Mapping[str, ScoredItem] | None = None,
              batch: int = BATCH, only_unscored: bool = False) -> int:
    """Scores are recomputed from the stored outputs each time, so a changed scorer needs no re-run
    (`only_unscored`: only requests without any score, for a caller that knows the others were
    scored by these same scorers). Requests are read and their scores saved `batch` at a time
    (each batch one transaction), so a large run is scored in bounded memory; without `items`,
    each batch's items are read from the store too."""
    saved = 0
    # Scores are written between reads of the requests: the cursor reads only the requests table.
    pending: list[ScoreRow] = []
    for requests in store.request_batches(batch, state=SUCCEEDED, unscored=only_unscored):
        found = items if items is not None else store.items_of(request.item_id for request in requests)
        for request in requests:
            item = found.get(request.item_id)
            if item is None:
                continue
            for scorer in scorers:
                score = scorer.score(request.output or "", item.fields)
                pending.append((request.request_id, scorer.name, score.value, score.passed, score.detail))
        if len(pending) >= batch:
            saved += _save(store, pending)
    return saved + _save(store, pending)


def _save(store: RunStore, rows: list[ScoreRow]) -> int:
    count = len(rows)
    store.save_scores(rows)
    rows.clear()
    return count
