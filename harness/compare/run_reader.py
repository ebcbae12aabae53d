"""Reads a run's requests for a snapshot, one at a time and only the columns a comparison needs.

The run store is read (read-only, one read transaction) in batches with plain SQL: building
whole result lines (every item field, the rendered prompt) for 100,000 requests would cost
seconds and hundreds of megabytes that a comparison never looks at. Runs whose store predates
the items table are read from results.jsonl, line by line.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.engine.states import RequestState
from harness.engine.store import RunStore
from harness.errors import UserError
from harness.runs.results import RESULTS_FILE, read_results_file, scalar_fields

_BATCH = 2000


@dataclass(frozen=True, slots=True)
class RunRow:
    """One request of a run as a snapshot sees it."""

    item_id: str
    sample_index: int
    state: RequestState
    output: str | None
    input_tokens: int | None
    output_tokens: int | None
    latency_ms: float | None
    slices: tuple[str, ...]
    cluster: str | None
    fields: dict[str, str]
    """The item's short scalar fields as text (as results.jsonl's `fields`)."""
    scores: dict[str, tuple[float | None, str | None]]
    """Per scorer, its value and the label it predicted (label-predicting scorers only)."""


def run_rows(folder: Path, target: str, label_scorers: frozenset[str]) -> Iterator[RunRow]:
    """The target's requests in the order they were planned."""
    store_path = folder / RunStore.FILENAME
    results = folder / RESULTS_FILE
    if store_path.is_file():
        try:
            store = RunStore.read_only(store_path)
        except UserError:
            if not results.is_file():
                raise
            store = None  # e.g. a copied folder SQLite cannot open read-only: the file still tells
        if store is not None:
            try:
                if store.has_table("items"):
                    yield from _store_rows(store, target, label_scorers)
                    return
            finally:
                store.close()
    if not results.is_file():
        missing = "has no run.sqlite" if not store_path.is_file() else "has a run store too old to hold its items"
        raise UserError(f"the run {missing} and no {RESULTS_FILE}", file=str(folder),
                        hint="resume the run with `evalbatch run SUITE --resume RUN_ID`: it upgrades the store "
                             f"and writes {RESULTS_FILE} without re-sending what finished")
    for line in read_results_file(results):
        if line.target == target:
            yield RunRow(line.item_id, line.sample_index, line.state, line.output, line.input_tokens,
                         line.output_tokens, line.latency_ms, tuple(line.slices), line.cluster, line.fields,
                         {name: (score.get("value"), _label(score.get("detail"))) for name, score in line.scores.items()})


def _store_rows(store: RunStore, target: str, label_scorers: frozenset[str]) -> Iterator[RunRow]:
    items: dict[str, tuple[tuple[str, ...], str | None, dict[str, str]]] = {}
    with store.reading():
        cursor = store.db.execute(
            "SELECT r.request_id, r.item_id, r.sample_index, r.state, r.output, r.input_tokens, r.output_tokens,"
            " r.latency_ms, i.slices, i.cluster, i.fields FROM requests r LEFT JOIN items i ON i.item_id = r.item_id"
            " WHERE r.target = ? ORDER BY r.rowid", (target,))
        while rows := cursor.fetchmany(_BATCH):
            scores = _scores(store, [row[0] for row in rows], label_scorers)
            for row in rows:
                item = items.get(row[1])
                if item is None:
                    item = _item(row[8], row[9], row[10])
                    if len(items) < _BATCH:  # epochs of one item are planned together: a small cache
                        items[row[1]] = item
                slices, cluster, fields = item
                yield RunRow(row[1], row[2], RequestState(row[3]), row[4], row[5], row[6], row[7], slices, cluster,
                             fields, scores.get(row[0], {}))
            items.clear()


def _item(slices: str | None, cluster: str | None, fields: str | None) -> tuple[tuple[str, ...], str | None,
                                                                                   dict[str, str]]:
    if fields is None:  # a request whose item was never stored
        return (), None, {}
    record: dict[str, Any] = json.loads(fields)
    return tuple(json.loads(slices or "[]")), cluster, scalar_fields(record)


def _scores(store: RunStore, request_ids: list[str],
            label_scorers: frozenset[str]) -> dict[str, dict[str, tuple[float | None, str | None]]]:
    found: dict[str, dict[str, tuple[float | None, str | None]]] = {}
    for start in range(0, len(request_ids), 500):
        chunk = request_ids[start:start + 500]
        for request_id, scorer, value, detail in store.db.execute(
                "SELECT request_id, scorer, value, detail FROM scores"
                f" WHERE request_id IN ({','.join('?' * len(chunk))})", chunk):
            # The detail is parsed only where a label is read from it.
            label = _label(json.loads(detail or "{}")) if scorer in label_scorers else None
            found.setdefault(request_id, {})[scorer] = (value, label)
    return found


def _label(detail: dict[str, Any] | None) -> str | None:
    """The label a label-predicting scorer read ("(none)": it named none)."""
    return (detail or {}).get("label") or "(none)"

