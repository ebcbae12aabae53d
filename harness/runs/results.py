"""results.jsonl: one line per request with its output, scores, usage and state."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from harness.config.datasets import Item
from harness.engine.store import RunStore
from harness.runs.files import write_atomically

RESULTS_VERSION = 1


class ResultLine(BaseModel):
    version: Literal[1] = RESULTS_VERSION
    request_id: str
    item_id: str
    target: str
    sample_index: int
    slices: list[str]
    cluster: str | None
    fields: dict[str, str] = {}
    state: str
    attempts: int
    output: str | None
    scores: dict[str, dict[str, Any]]
    input_tokens: int | None
    output_tokens: int | None
    latency_ms: float | None
    error: str | None


def result_lines(store: RunStore, items: dict[str, Item]) -> list[ResultLine]:
    scores = store.scores_by_request()
    lines = []
    for request in store.requests():
        item = items.get(request.item_id)
        lines.append(ResultLine(
            request_id=request.request_id, item_id=request.item_id, target=request.target,
            sample_index=request.sample_index, slices=list(item.slices) if item else [],
            cluster=item.cluster if item else None, fields=short_fields(item) if item else {},
            state=request.state, attempts=request.attempts,
            output=request.output, scores=scores.get(request.request_id, {}),
            input_tokens=request.input_tokens, output_tokens=request.output_tokens,
            latency_ms=request.latency_ms, error=request.error))
    return lines


def write_results(folder: Path, lines: list[ResultLine]) -> Path:
    path = folder / "results.jsonl"
    write_atomically(path, "".join(line.model_dump_json() + "\n" for line in lines))
    return path


def short_fields(item: Item) -> dict[str, str]:
    """The item's short scalar fields (labels, languages, categories) for per-category views."""
    return {key: str(value) for key, value in item.fields.items()
            if isinstance(value, (str, int, float, bool)) and len(str(value)) <= 64}
