"""Grades every succeeded request of a run and stores the scores (plain functions, no event loop)."""

from __future__ import annotations

from harness.config.datasets import Item
from harness.engine.store import SUCCEEDED, RunStore
from harness.scoring.registry import BoundScorer


def score_run(store: RunStore, scorers: list[BoundScorer], items: dict[str, Item]) -> int:
    """Scores are recomputed from the stored outputs each time, so a changed scorer needs no re-run."""
    rows = []
    for request in store.requests(SUCCEEDED):
        item = items.get(request.item_id)
        if item is None:
            continue
        for scorer in scorers:
            score = scorer.score(request.output or "", item.fields)
            rows.append((request.request_id, scorer.name, score.value, score.passed, score.detail))
    store.save_scores(rows)
    return len(rows)
