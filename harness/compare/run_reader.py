"""Reads a run's requests for a snapshot, one at a time and only the columns a comparison needs.

The run store is read (read-only, one read transaction) in batches with plain SQL: building
whole result lines (every item field, the rendered prompt) for 100,000 requests would cost
seconds and hundreds of megabytes that a comparison never looks at. Runs whose store predates
the items table are read from results.jsonl, line by line.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.engine.states import RequestState
from harness.engine.store import RunStore
from harness.runs.results import read_results_file, run_source, scalar_fields

_BATCH = 2000
_STATES = {state.value: state for state in RequestState}


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


def run_rows(folder: Path, target: str, label_scorers: frozenset[str],
             keep_fields: Collection[str] | None = None) -> Iterator[RunRow]:
    """The target's requests in the order they were planned. keep_fields: only these of the
    item's short fields (None: all of them)."""
    with run_source(folder) as source:
        if isinstance(source, RunStore):
            yield from _StoreReader(source, label_scorers, keep_fields).rows(target)
            return
        for line in read_results_file(source):
            if line.target == target:
                fields = line.fields if keep_fields is None else {k: v for k, v in line.fields.items()
                                                                   if k in keep_fields}
                yield RunRow(line.item_id, line.sample_index, line.state, line.output, line.input_tokens,
                             line.output_tokens, line.latency_ms, tuple(line.slices), line.cluster, fields,
                             {name: (score.get("value"), _label(score.get("detail")))
                              for name, score in line.scores.items()})


# A field name SQLite's JSON path can hold as is, between double quotes.
_PLAIN_NAME = re.compile(r'^[^"\\]*$')


class _StoreReader:
    """Plain SQL over the store: the kept fields and the labels are taken out of their JSON by
    SQLite (json_extract), and each distinct slices list is parsed once."""

    def __init__(self, store: RunStore, label_scorers: frozenset[str], keep_fields: Collection[str] | None) -> None:
        self.store, self.label_scorers = store, label_scorers
        self.kept = None if keep_fields is None or not all(_PLAIN_NAME.match(f) for f in keep_fields) \
            else list(keep_fields)
        self.keep_fields = keep_fields
        self.slices: dict[str | None, tuple[str, ...]] = {}

    def rows(self, target: str) -> Iterator[RunRow]:
        extracted = "".join(", json_extract(i.fields, ?), json_type(i.fields, ?)" for _ in self.kept or [])
        paths = [path for name in self.kept or [] for path in (f'$."{name}"',) * 2]
        whole = ", i.fields" if self.kept is None else ""
        with self.store.reading():
            cursor = self.store.db.execute(
                "SELECT r.request_id, r.item_id, r.sample_index, r.state, r.output, r.input_tokens, r.output_tokens,"
                f" r.latency_ms, i.slices, i.cluster{extracted}{whole}"
                " FROM requests r LEFT JOIN items i ON i.item_id = r.item_id WHERE r.target = ? ORDER BY r.rowid",
                (*paths, target))
            while rows := cursor.fetchmany(_BATCH):
                scores = self._scores([row[0] for row in rows])
                for row in rows:
                    yield RunRow(row[1], row[2], _STATES.get(row[3]) or RequestState(row[3]), row[4], row[5], row[6], row[7],
                                 self._slices(row[8]), row[9], self._fields(row), scores.get(row[0], {}))

    def _slices(self, text: str | None) -> tuple[str, ...]:
        found = self.slices.get(text)
        if found is None:
            found = self.slices[text] = tuple(json.loads(text or "[]"))
        return found

    def _fields(self, row: tuple) -> dict[str, str]:
        if self.kept is None:
            if row[10] is None:  # a request whose item was never stored
                return {}
            fields = scalar_fields(json.loads(row[10]))
            return fields if self.keep_fields is None else {k: v for k, v in fields.items() if k in self.keep_fields}
        kept = {}
        for position, name in enumerate(self.kept):
            text = _scalar_text(row[10 + 2 * position], row[11 + 2 * position])
            if text is not None and len(text) <= 64:
                kept[name] = text
        return kept

    def _scores(self, request_ids: list[str]) -> dict[str, dict[str, tuple[float | None, str | None]]]:
        found: dict[str, dict[str, tuple[float | None, str | None]]] = {}
        for start in range(0, len(request_ids), 500):
            chunk = request_ids[start:start + 500]
            for request_id, scorer, value, label in self.store.db.execute(
                    "SELECT request_id, scorer, value, json_extract(detail, '$.label') FROM scores"
                    f" WHERE request_id IN ({','.join('?' * len(chunk))})", chunk):
                found.setdefault(request_id, {})[scorer] = (
                    value, (label if isinstance(label, str) and label else "(none)")
                    if scorer in self.label_scorers else None)
        return found


def _scalar_text(value: Any, kind: str | None) -> str | None:
    """A field's value as `scalar_fields` writes it, from SQLite's json_extract and json_type."""
    if kind in ("text", "integer", "real"):
        return str(value)
    if kind in ("true", "false"):
        return "True" if kind == "true" else "False"
    return None  # missing, null, an object or an array


def _label(detail: dict[str, Any] | None) -> str | None:
    """The label a label-predicting scorer read ("(none)": it named none)."""
    return (detail or {}).get("label") or "(none)"

