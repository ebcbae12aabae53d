"""A run reduced to what comparisons need: per item, per metric, the score of every epoch,
plus the outputs' hashes, compact copies, predicted labels and the run's fingerprints.

Baselines are snapshots saved to git; a candidate run is snapshotted on the fly.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections import defaultdict
from pathlib import Path
from typing import Final, Literal

from pydantic import BaseModel, Field

from harness.engine.states import RequestState
from harness.errors import UserError
from harness.runs.manifest import Manifest, read_manifest, scorers_fingerprint, slices_fingerprint
from harness.runs.results import ResultLine, read_run_lines
from harness.scoring.registry import scorer_kinds

SNAPSHOT_VERSION: Final = 1
_COMPACT_CHARS = 300
# Phrases of a refusal, for the drift guardrail; deliberately simple and English-only.
_REFUSAL = re.compile(r"\b(I can(?:no|')t|I am unable|I'm unable|I'm sorry|I apologi[sz]e|as an AI)\b", re.I)


class ItemRecord(BaseModel):
    slices: list[str]
    cluster: str | None = None
    fields: dict[str, str] = Field(default_factory=dict, description="Scalar item fields, for per-category views.")
    scores: dict[str, list[float | None]] = Field(description="Per metric, one score per epoch (None: no score, "
                                                  "e.g. unfinished; a failed request scores 0.0 unless the "
                                                  "snapshot was taken with failed_as_zero=False).")
    output_sha256: list[str | None]
    outputs: list[str | None] = Field(description=f"The first {_COMPACT_CHARS} characters of each output.")
    output_lengths: list[int | None]
    labels: list[str | None] = Field(default_factory=list, description="Predicted labels (label_in_set).")
    failed: int = 0


class Fingerprints(BaseModel):
    suite: str
    prompt: str
    prompt_fingerprint: str
    target: str
    model: str
    params: dict
    dataset: str
    slice_fingerprint: str
    evaluated: list[str]
    harness_version: str
    scorers: str | None = Field(default=None, description="sha256 of the scorer definitions (None: older "
                                "snapshots, which did not record it).")
    slice_definitions: str | None = Field(default=None, description="sha256 of the evaluated slices' "
                                          "definitions (None: older snapshots).")


class UsagePerRequest(BaseModel):
    """Averages over succeeded requests, for cost and time estimates."""

    input_tokens: float = 0.0
    output_tokens: float = 0.0
    latency_ms: float = 0.0
    epochs: int = 1


class RunSnapshot(BaseModel):
    version: Literal[1] = SNAPSHOT_VERSION
    run_id: str
    fingerprints: Fingerprints
    usage: UsagePerRequest = UsagePerRequest()
    metrics: list[str]
    binary_metrics: list[str]
    items: dict[str, ItemRecord]
    unfinished_items: int = Field(default=0, description="Items none of whose requests finished (e.g. a "
                                  "sequential sample that stopped early); they are not in `items`.")
    sequential_looks: int | None = Field(default=None, description="Looks of the group-sequential design "
                                         "the run was a sample of; None for a fixed-size run.")
    failed_as_zero: bool | None = Field(default=None, description="Whether failed requests score 0.0 (True) or "
                                        "None (False); None: a snapshot from before failed requests were scored.")


def snapshot_run(folder: Path, target: str | None = None, failed_as_zero: bool = True) -> RunSnapshot:
    """failed_as_zero: a failed_terminal request scores 0.0 for every metric (a loss in a paired
    comparison, as the suite's default `scoring.failed_requests: zero`); False leaves it None,
    so the pair is dropped (`exclude`). Unfinished requests are None either way."""
    manifest = read_manifest(folder)
    chosen = _choose_target(manifest, target)
    # The run store, not results.jsonl: a run killed before it wrote its results still compares
    # on the items it finished, and one still running is read without being disturbed.
    lines = [line for line in read_run_lines(folder) if line.target == chosen.label]
    metrics = [scorer.get("name") or scorer["type"] for scorer in manifest.scorers]
    finished = {line.item_id for line in lines if line.state.is_final}
    items = _items([line for line in lines if line.item_id in finished], metrics, label_metrics(manifest.scorers),
                   failed_as_zero)
    return RunSnapshot(
        run_id=manifest.run_id,
        fingerprints=Fingerprints(
            suite=manifest.suite, prompt=f"{manifest.prompt.name}@{manifest.prompt.version}",
            prompt_fingerprint=manifest.prompt.fingerprint, target=chosen.label, model=chosen.model,
            params=chosen.params, dataset=manifest.dataset.fingerprint,
            slice_fingerprint=manifest.dataset.slice_fingerprint, evaluated=manifest.dataset.evaluated,
            harness_version=manifest.harness_version, scorers=scorers_fingerprint(manifest),
            slice_definitions=slices_fingerprint(manifest)),
        usage=_usage(lines, manifest.epochs), metrics=metrics, binary_metrics=_binary_metrics(items, metrics),
        items=items, unfinished_items=len({line.item_id for line in lines} - finished),
        sequential_looks=int(manifest.looks[0]["of"]) if manifest.looks else None, failed_as_zero=failed_as_zero)


def _usage(lines: list[ResultLine], epochs: int) -> UsagePerRequest:
    done = [line for line in lines if line.state == RequestState.SUCCEEDED]
    if not done:
        return UsagePerRequest(epochs=epochs)
    return UsagePerRequest(input_tokens=sum(line.input_tokens or 0 for line in done) / len(done),
                           output_tokens=sum(line.output_tokens or 0 for line in done) / len(done),
                           latency_ms=sum(line.latency_ms or 0 for line in done) / len(done), epochs=epochs)


def _choose_target(manifest: Manifest, target: str | None):
    labels = [t.label for t in manifest.targets]
    if target is None and len(labels) == 1:
        return manifest.targets[0]
    if target is None:
        raise UserError(f"run {manifest.run_id} has several targets {labels}; choose one with --target")
    for candidate in manifest.targets:
        if candidate.label == target:
            return candidate
    raise UserError(f"run {manifest.run_id} has no target {target!r}; it has {labels}")


def _items(lines: list[ResultLine], metrics: list[str], labelled: list[str],
           failed_as_zero: bool) -> dict[str, ItemRecord]:
    by_item: dict[str, list[ResultLine]] = defaultdict(list)
    for line in lines:
        by_item[line.item_id].append(line)
    items = {}
    for item_id, samples in by_item.items():
        samples.sort(key=lambda line: line.sample_index)
        outputs = [line.output if line.state == RequestState.SUCCEEDED else None for line in samples]
        items[item_id] = ItemRecord(
            slices=samples[0].slices, cluster=samples[0].cluster, fields=samples[0].fields,
            scores={m: [_score(line, m, failed_as_zero) for line in samples] for m in metrics},
            output_sha256=[hashlib.sha256(o.encode()).hexdigest() if o is not None else None for o in outputs],
            outputs=[o[:_COMPACT_CHARS] if o is not None else None for o in outputs],
            output_lengths=[len(o) if o is not None else None for o in outputs],
            labels=[_predicted_label(line, labelled) for line in samples],
            failed=sum(line.state == RequestState.FAILED_TERMINAL for line in samples))
    return items


def _score(line: ResultLine, metric: str, failed_as_zero: bool) -> float | None:
    if line.state == RequestState.FAILED_TERMINAL:
        return 0.0 if failed_as_zero else None
    return (line.scores.get(metric) or {}).get("value")


def _predicted_label(line: ResultLine, label_metrics: list[str]) -> str | None:
    """The label the first label-predicting scorer read from the output ("(none)": it named none)."""
    for metric in label_metrics:
        score = line.scores.get(metric)
        if score is not None:
            return (score.get("detail") or {}).get("label") or "(none)"
    return None


def label_metrics(scorers: list[dict]) -> list[str]:
    """The run's scorers whose kind predicts a label (as declared where the kind is registered)."""
    kinds = scorer_kinds()
    return [s.get("name") or s["type"] for s in scorers if s["type"] in kinds and kinds[s["type"]].predicts_label]


def _binary_metrics(items: dict[str, ItemRecord], metrics: list[str]) -> list[str]:
    binary = []
    for metric in metrics:
        values = [v for item in items.values() for v in item.scores.get(metric, []) if v is not None]
        if values and all(v in (0.0, 1.0) for v in values):
            binary.append(metric)
    return binary


def metric_item_means(snapshot: RunSnapshot, metric: str) -> dict[str, float]:
    """Per item, the mean of its scored epochs (items with none are left out)."""
    means = {}
    for item_id, item in snapshot.items.items():
        values = [v for v in item.scores.get(metric, []) if v is not None and not math.isnan(v)]
        if values:
            means[item_id] = sum(values) / len(values)
    return means


def is_refusal(text: str | None) -> bool:
    return text is not None and _REFUSAL.search(text) is not None


def snapshot_json(snapshot: BaseModel) -> str:
    return json.dumps(snapshot.model_dump(mode="json"), indent=1, ensure_ascii=False) + "\n"
