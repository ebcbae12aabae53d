"""results.jsonl: one line per request with its output, scores, usage and state.

The run store holds everything a line needs (requests, items, scores), so the lines of a run
can always be rebuilt from `run.sqlite`, even for a run killed before it wrote results.jsonl.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal, cast

from pydantic import BaseModel, Field

from harness.engine.states import RequestState
from harness.engine.store import RunStore, StoredItem, StoredRequest
from harness.errors import UserError

RESULTS_VERSION: Final = 1
RESULTS_FILE = "results.jsonl"
Origin = Literal["sent", "cache", "duplicate", "import"]


class ChatMessageLine(BaseModel):
    role: str
    content: str


class ResultLine(BaseModel):
    """One request and its outcome. Lines written before `item`, `prompt` and `messages` existed
    read with them empty (the format only grew, so its version is unchanged)."""

    version: Literal[1] = RESULTS_VERSION
    request_id: str
    item_id: str
    target: str
    sample_index: int
    slices: list[str]
    cluster: str | None
    fields: dict[str, str] = Field(default={}, description="The item's short scalar fields as text (labels, "
                                   "languages, categories), for per-category views; `item` has every field whole.")
    item: dict[str, Any] = Field(default={}, description="The whole record, every field as its JSON value.")
    prompt: str | None = Field(default=None, description="The rendered completion prompt that was sent.")
    messages: list[ChatMessageLine] | None = Field(default=None, description="The rendered chat messages that were sent.")
    state: RequestState
    attempts: int
    output: str | None
    scores: dict[str, dict[str, Any]]
    input_tokens: int | None
    output_tokens: int | None
    latency_ms: float | None
    error: str | None
    cost_usd: float | None = Field(default=None, description="What the request cost in USD (0 when answered from "
                                   "the cache or a duplicate); None when no price was known or it did not succeed.")
    origin: Origin = Field(
        default="sent", description="Where the output came from: sent to the provider, the shared response cache, "
        "or an identical request of the run (same provider, endpoint and body) whose answer it shares, or "
        "`evalbatch import` (an output file produced elsewhere).")


def result_lines(store: RunStore) -> list[ResultLine]:
    """The lines of one state of the store: scores, items and requests are read in one read
    transaction, so a run another process is writing never shows a success without its scores."""
    return list(iter_result_lines(store))


def iter_result_lines(store: RunStore, target: str | None = None, batch: int = 2000) -> Iterator[ResultLine]:
    """result_lines (of one target, or all), built `batch` requests at a time: memory stays bounded
    however large the run. The whole iteration is one read transaction (one state of the store)."""
    with store.reading():
        for requests in store.request_batches(batch, target=target):
            items = store.items_of(request.item_id for request in requests)
            scores = store.scores_of(request.request_id for request in requests)
            for request in requests:
                yield _line(request, items.get(request.item_id), scores.get(request.request_id, {}))


def _line(request: StoredRequest, item: StoredItem | None, scores: dict[str, dict[str, Any]]) -> ResultLine:
    return ResultLine(
        request_id=request.request_id, item_id=request.item_id, target=request.target,
        sample_index=request.sample_index, slices=list(item.slices) if item else [],
        cluster=item.cluster if item else None, fields=short_fields(item) if item else {},
        item=item.fields if item else {}, prompt=request.payload.get("prompt"),
        messages=request.payload.get("messages"),
        state=request.state, attempts=request.attempts,
        output=request.output, scores=scores,
        input_tokens=request.input_tokens, output_tokens=request.output_tokens,
        latency_ms=request.latency_ms, error=request.error, cost_usd=request.cost_usd,
        origin=cast(Origin, request.origin))


def light_run_lines(folder: Path) -> list[ResultLine] | list[SummaryLine]:
    """summary_lines from the run store, or (a store too old, missing or unreadable) whole lines
    as read_run_lines finds them."""
    try:
        store = RunStore.read_only(folder / RunStore.FILENAME)
    except UserError:
        return read_run_lines(folder)
    try:
        current = store.has_table("items")
    finally:
        store.close()
    return summary_lines(folder) if current else read_run_lines(folder)


@dataclass(frozen=True, slots=True)
class SummaryLine:
    """A result line as the end-of-run summary and `evalbatch runs` read it: the same attribute
    names as ResultLine, without the item, its fields, the prompt, the output and score details
    (only each score's value and passed). Slotted, with score dicts shared between lines that
    scored alike: about a fifth of a ResultLine's memory, which matters at 200,000 requests.
    Passed where a list of ResultLine is read for those attributes only."""

    request_id: str
    item_id: str
    target: str
    sample_index: int
    slices: list[str]
    cluster: str | None
    state: RequestState
    attempts: int
    scores: dict[str, dict[str, Any]]
    """Shared between lines: never change it."""
    input_tokens: int | None
    output_tokens: int | None
    latency_ms: float | None
    error: str | None
    cost_usd: float | None
    origin: str


def summary_lines(folder: Path) -> list[SummaryLine]:
    """The run's SummaryLines, read-only from its run store, in batches."""
    return list(iter_summary_lines(folder))


_SHARED_SCORES = 10_000


def iter_summary_lines(folder: Path, by_item: bool = False) -> Iterator[SummaryLine]:
    """The run's SummaryLines as they are read (the store stays open until the last one), in
    request order; `by_item`: every line of a (target, item) together, targets in request order
    (for sums over items that must not hold a run's lines)."""
    store = RunStore.read_only(folder / RunStore.FILENAME)
    shared_slices: dict[str, list[str]] = {}
    shared_scores: dict[tuple, dict[str, dict[str, Any]]] = {}
    try:
        with store.reading():
            # Stores from before cost and origin were recorded (read-only: not migrated) lack them.
            columns = {row[1] for row in store.db.execute("PRAGMA table_info(requests)")}
            cost = "r.cost_usd" if "cost_usd" in columns else "NULL"
            origin = "r.origin" if "origin" in columns else "'sent'"
            order = ("JOIN (SELECT target, MIN(rowid) AS first FROM requests GROUP BY target) t"
                     " ON t.target = r.target ORDER BY t.first, r.item_id, r.rowid") if by_item else "ORDER BY r.rowid"
            cursor = store.db.execute(
                "SELECT r.request_id, r.item_id, r.target, r.sample_index, r.state, r.attempts, r.input_tokens,"
                f" r.output_tokens, r.latency_ms, r.error, {cost}, {origin}, i.slices, i.cluster"
                f" FROM requests r LEFT JOIN items i ON i.item_id = r.item_id {order}")
            while rows := cursor.fetchmany(2000):
                scores = _score_values(store, [row[0] for row in rows])
                for row in rows:
                    slices = shared_slices.get(row[12] or "[]")
                    if slices is None:
                        slices = shared_slices[row[12] or "[]"] = json.loads(row[12] or "[]")
                    key = scores.get(row[0], ())
                    line_scores = shared_scores.get(key)
                    if line_scores is None:
                        if len(shared_scores) >= _SHARED_SCORES:  # continuous scores share little: bound it
                            shared_scores.clear()
                        line_scores = shared_scores[key] = {
                            name: {"value": value, "passed": None if passed is None else bool(passed)}
                            for name, value, passed in key}
                    yield SummaryLine(row[0], row[1], row[2], row[3], slices, row[13], RequestState(row[4]),
                                      row[5], line_scores, row[6], row[7], row[8], row[9], row[10], row[11])
    finally:
        store.close()


def _score_values(store: RunStore, request_ids: list[str]) -> dict[str, tuple]:
    """Per request, its (scorer, value, passed) in scorer order: equal tuples share one dict."""
    found: dict[str, list] = {}
    for start in range(0, len(request_ids), 500):
        chunk = request_ids[start:start + 500]
        for request_id, scorer, value, passed in store.db.execute(
                "SELECT request_id, scorer, value, passed FROM scores"
                f" WHERE request_id IN ({','.join('?' * len(chunk))})", chunk):
            found.setdefault(request_id, []).append((scorer, value, passed))
    return {request_id: tuple(sorted(values)) for request_id, values in found.items()}


def write_results(folder: Path, lines: Iterable[ResultLine]) -> Path:
    """results.jsonl of these lines (see `write_text_lines`)."""
    return write_text_lines(folder, (line.model_dump_json() for line in lines))


def write_text_lines(folder: Path, texts: Iterable[str]) -> Path:
    """results.jsonl line by line into a temporary file renamed into place: readers never see half
    of it, and the lines need not all be in memory."""
    path = folder / RESULTS_FILE
    temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    with temporary.open("w", encoding="utf-8") as handle:
        for text in texts:
            handle.write(text + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    return path


def read_results_file(path: Path) -> Iterator[ResultLine]:
    """The lines of a results.jsonl, one at a time."""
    with path.open(encoding="utf-8") as handle:
        for text in handle:
            if text.strip():
                yield ResultLine.model_validate_json(text)


def read_run_lines(folder: Path) -> list[ResultLine]:
    """A run's lines as its store holds them now (opened read-only: the run may be running in
    another process). Stores older than the items table fall back to results.jsonl."""
    with run_source(folder) as source:
        return result_lines(source) if isinstance(source, RunStore) else list(read_results_file(source))


@contextmanager
def run_source(folder: Path) -> Iterator[RunStore | Path]:
    """Where a run's lines are read from: its store, read-only and closed afterwards, when it holds
    the items; else its results.jsonl. Neither is a UserError saying how to get one."""
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
                    yield store
                    return
            finally:
                store.close()
    if not results.is_file():
        missing = "has no run.sqlite" if not store_path.is_file() else "has a run store too old to hold its items"
        raise UserError(f"the run {missing} and no {RESULTS_FILE}", file=str(folder),
                        hint="resume the run with `evalbatch run SUITE --resume RUN_ID`: it upgrades the store "
                             f"and writes {RESULTS_FILE} without re-sending what finished")
    yield results


def short_fields(item: StoredItem) -> dict[str, str]:
    """The item's short scalar fields (labels, languages, categories) for per-category views."""
    return scalar_fields(item.fields)


def scalar_fields(record: dict[str, Any]) -> dict[str, str]:
    """A record's short scalar fields as text (what `short_fields` keeps)."""
    return {key: str(value) for key, value in record.items()
            if isinstance(value, (str, int, float, bool)) and len(str(value)) <= 64}
