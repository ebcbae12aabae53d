"""results.jsonl written from the run store's rows.

Every run ends by writing it, so it is built straight from one joined query (requests with
their items) into JSON text, without a
`ResultLine` model per request: validating and dumping a model per line cost more than the
rest of the end of a run. `ResultLine` stays the format's definition; a line JSON cannot hold
as built (a NaN score, say) is written through it, as every line used to be, and the tests hold
both ways of writing to the same lines.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from harness.engine.store import RunStore
from harness.runs.results import RESULTS_VERSION, ResultLine, scalar_fields, write_text_lines

_BATCH = 2000

_QUERY = (
    "SELECT r.request_id, r.item_id, r.target, r.sample_index, i.slices, i.cluster, i.fields,"
    " r.payload, r.state, r.attempts,"
    " r.output, r.input_tokens, r.output_tokens, r.latency_ms, r.error, r.cost_usd, r.origin"
    " FROM requests r LEFT JOIN items i ON i.item_id = r.item_id ORDER BY r.rowid")


def write_store_results(folder: Path, store: RunStore) -> Path:
    """results.jsonl streamed from the run store (a current one: the run's own, migrated on opening)."""
    return write_text_lines(folder, store_result_texts(store))


def store_result_texts(store: RunStore) -> Iterator[str]:
    """The run's result lines as JSON text, in request order, `_BATCH` requests at a time from one
    read transaction (one state of the store)."""
    slices_seen: dict[str, list[str]] = {}
    with store.reading():
        cursor = store.db.execute(_QUERY)
        while rows := cursor.fetchmany(_BATCH):
            scores = store.scores_of(row[0] for row in rows)
            for row in rows:
                yield _text(_line(row, scores.get(row[0], {}), slices_seen))


def _line(row: Any, scores: dict[str, dict[str, Any]], slices_seen: dict[str, list[str]]) -> dict[str, Any]:
    """The fields of `ResultLine`, in its order."""
    # SQLite's json_extract would be quicker for the prompt, but it cuts a text at a NUL character.
    slices_text, fields_text, payload = row[4], row[6], json.loads(row[7])
    item = json.loads(fields_text) if fields_text is not None else {}
    slices = slices_seen.get(slices_text) if slices_text is not None else []
    if slices is None:
        slices = slices_seen.setdefault(slices_text, json.loads(slices_text))
    return {
        "version": RESULTS_VERSION, "request_id": row[0], "item_id": row[1], "target": row[2],
        "sample_index": row[3], "slices": slices, "cluster": row[5], "fields": scalar_fields(item), "item": item,
        "prompt": payload.get("prompt"), "messages": payload.get("messages"),
        "state": row[8], "attempts": row[9], "output": row[10], "scores": scores, "input_tokens": row[11],
        "output_tokens": row[12], "latency_ms": row[13], "error": row[14], "cost_usd": row[15], "origin": row[16],
    }


def _text(line: dict[str, Any]) -> str:
    try:
        return json.dumps(line, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except ValueError:  # NaN or infinity: the model writes them as null
        return ResultLine.model_validate(line).model_dump_json()
