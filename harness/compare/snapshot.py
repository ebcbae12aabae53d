"""A run reduced to what comparisons need: per item, per metric, the score of every epoch,
plus the outputs' hashes, compact copies, predicted labels and the run's fingerprints.

Baselines are snapshots saved to git; a candidate run is snapshotted on the fly.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import sys
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from pathlib import Path
from typing import Final, Literal

from pydantic import BaseModel, Field

from harness.compare.run_reader import RunRow, run_rows
from harness.engine.states import RequestState
from harness.errors import UserError
from harness.runs.manifest import Manifest, read_manifest, scorers_fingerprint, slices_fingerprint
from harness.scoring.registry import scorer_kinds

SNAPSHOT_VERSION: Final = 1
_COMPACT_CHARS = 300
# Phrases of a refusal, for the drift guardrail; deliberately simple and English-only.
_REFUSAL = re.compile(r"\b(I can(?:no|')t|I am unable|I'm unable|I'm sorry|I apologi[sz]e|as an AI)\b", re.I)


@dataclass(slots=True)
class ItemRecord:
    """One item of a snapshot. A slotted dataclass, not a pydantic model (it is still validated and
    written as part of RunSnapshot): a snapshot holds one per item, and a model instance costs
    about 2 KB, 200 MB for 100,000 items."""

    slices: Sequence[str]
    scores: Mapping[str, Sequence[float | None]]
    """Per metric, one score per epoch (None: no score, e.g. unfinished; a failed request scores 0.0
    unless the snapshot was taken with failed_as_zero=False)."""
    output_sha256: Sequence[str | None]
    """Empty in a snapshot taken for a comparison only (`keep_fields` given)."""
    outputs: Sequence[str | None]
    """The first 300 characters (_COMPACT_CHARS) of each output."""
    output_lengths: Sequence[int | None]
    cluster: str | None = None
    fields: dict[str, str] = dataclass_field(default_factory=dict)
    """Scalar item fields, for per-category views."""
    labels: Sequence[str | None] = ()
    """Predicted labels (label_in_set)."""
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


def snapshot_run(folder: Path, target: str | None = None, failed_as_zero: bool = True,
                 keep_fields: Collection[str] | None = None) -> RunSnapshot:
    """failed_as_zero: a failed_terminal request scores 0.0 for every metric (a loss in a paired
    comparison, as the suite's default `scoring.failed_requests: zero`); False leaves it None,
    so the pair is dropped (`exclude`). Unfinished requests are None either way.
    keep_fields: for a comparison only, the item fields it needs (e.g. the gate's category
    field); the others and the output hashes are left out to keep large snapshots small.
    None keeps every short field and the hashes (a baseline)."""
    manifest = read_manifest(folder)
    chosen = _choose_target(manifest, target)
    metrics = [scorer.get("name") or scorer["type"] for scorer in manifest.scorers]
    labelled = label_metrics(manifest.scorers)
    builder = _ItemsBuilder(metrics, labelled, failed_as_zero, keep_fields)
    # The run store, not results.jsonl: a run killed before it wrote its results still compares
    # on the items it finished, and one still running is read without being disturbed.
    for row in run_rows(folder, chosen.label, frozenset(labelled), keep_fields):
        builder.add(row)
    items, unfinished = builder.finish()
    return RunSnapshot.model_construct(
        run_id=manifest.run_id,
        fingerprints=Fingerprints(
            suite=manifest.suite, prompt=f"{manifest.prompt.name}@{manifest.prompt.version}",
            prompt_fingerprint=manifest.prompt.fingerprint, target=chosen.label, model=chosen.model,
            params=chosen.params, dataset=manifest.dataset.fingerprint,
            slice_fingerprint=manifest.dataset.slice_fingerprint, evaluated=manifest.dataset.evaluated,
            harness_version=manifest.harness_version, scorers=scorers_fingerprint(manifest),
            slice_definitions=slices_fingerprint(manifest)),
        usage=builder.usage(manifest.epochs), metrics=metrics, binary_metrics=_binary_metrics(items, metrics),
        items=items, unfinished_items=unfinished,
        sequential_looks=int(manifest.looks[0]["of"]) if manifest.looks else None, failed_as_zero=failed_as_zero)


class _ItemsBuilder:
    """Item records built request by request, holding only what the records keep: per epoch
    lists while reading, tuples in the records, one shared dict per distinct kept fields."""

    def __init__(self, metrics: list[str], labelled: list[str], failed_as_zero: bool,
                 keep_fields: Collection[str] | None) -> None:
        self.metrics, self.labelled, self.failed_as_zero = metrics, labelled, failed_as_zero
        self.metric_names = tuple(metrics)
        self.keep_fields = None if keep_fields is None else frozenset(keep_fields)
        self.drafts: dict[str, _Draft] = {}
        self.slices: dict[tuple[str, ...], tuple[str, ...]] = {}
        self.shared_fields: dict[tuple[tuple[str, str], ...], dict[str, str]] = {}
        self.done = 0
        self.usage_sums = [0.0, 0.0, 0.0]

    def add(self, row: RunRow) -> None:
        draft = self.drafts.get(row.item_id)
        if draft is None:
            draft = self.drafts[row.item_id] = _Draft(
                self.slices.setdefault(row.slices, row.slices), _intern(row.cluster), self._fields(row.fields),
                [[] for _ in self.metrics])
        if draft.indexes is not None or row.sample_index != len(draft.outputs):
            draft.add_index(row.sample_index)
        state = row.state
        failed = state is RequestState.FAILED_TERMINAL
        scores = row.scores
        for position, metric in enumerate(self.metrics):
            if failed:
                value = 0.0 if self.failed_as_zero else None
            else:
                found = scores.get(metric)
                value = None if found is None else found[0]
            draft.scores[position].append(value)
        output = row.output if state is RequestState.SUCCEEDED else None
        if self.keep_fields is None:
            draft.hashes.append(hashlib.sha256(output.encode()).hexdigest() if output is not None else None)
        if output is None:
            draft.outputs.append(None)
            draft.lengths.append(None)
        else:
            # Short outputs (labels, numbers) repeat across items: one copy each.
            compact = output[:_COMPACT_CHARS]
            draft.outputs.append(sys.intern(compact) if len(compact) <= 64 else compact)
            draft.lengths.append(len(output))
        label = None
        for metric in self.labelled:
            if metric in scores:
                label = _intern(scores[metric][1])
                break
        draft.labels.append(label)
        draft.failed += failed
        draft.finished = draft.finished or state.is_final
        if state is RequestState.SUCCEEDED:
            self.done += 1
            sums = self.usage_sums
            sums[0] += row.input_tokens or 0
            sums[1] += row.output_tokens or 0
            sums[2] += row.latency_ms or 0

    def _fields(self, fields: dict[str, str]) -> dict[str, str]:
        if self.keep_fields is None:
            return {key: sys.intern(value) for key, value in fields.items()}
        kept = tuple(fields.items())
        if not self.keep_fields.issuperset(fields):
            kept = tuple((key, value) for key, value in kept if key in self.keep_fields)
        found = self.shared_fields.get(kept)
        if found is None:  # never changed once built
            found = self.shared_fields[kept] = {key: sys.intern(value) for key, value in kept}
        return found

    def finish(self) -> tuple[dict[str, ItemRecord], int]:
        """The finished items (epochs in sample order) and how many items none of whose requests finished."""
        items: dict[str, ItemRecord] = {}
        unfinished = 0
        for item_id in list(self.drafts):
            draft = self.drafts.pop(item_id)  # released as its record is made
            if draft.finished:
                items[item_id] = draft.record(self.metric_names, lean=self.keep_fields is not None)
            else:
                unfinished += 1
        return items, unfinished

    def usage(self, epochs: int) -> UsagePerRequest:
        if not self.done:
            return UsagePerRequest(epochs=epochs)
        tokens_in, tokens_out, latency = (total / self.done for total in self.usage_sums)
        return UsagePerRequest(input_tokens=tokens_in, output_tokens=tokens_out, latency_ms=latency, epochs=epochs)


@dataclass(slots=True)
class _Draft:
    """An item's epochs as they are read."""

    slices: tuple[str, ...]
    cluster: str | None
    fields: dict[str, str]
    scores: list[list[float | None]]
    hashes: list[str | None] = dataclass_field(default_factory=list)
    outputs: list[str | None] = dataclass_field(default_factory=list)
    lengths: list[int | None] = dataclass_field(default_factory=list)
    labels: list[str | None] = dataclass_field(default_factory=list)
    failed: int = 0
    finished: bool = False
    indexes: list[int] | None = None
    """Sample indexes, kept only once one arrived out of order (stores insert epochs in order)."""

    def add_index(self, index: int) -> None:
        if self.indexes is None and index != len(self.outputs):
            self.indexes = list(range(len(self.outputs)))
        if self.indexes is not None:
            self.indexes.append(index)

    def record(self, metrics: tuple[str, ...], lean: bool) -> ItemRecord:
        order = None if self.indexes is None else sorted(range(len(self.indexes)), key=self.indexes.__getitem__)

        def arranged(values: list) -> tuple:
            return tuple(values) if order is None or not values else tuple(values[i] for i in order)

        return ItemRecord(slices=self.slices, cluster=self.cluster, fields=self.fields,
                          scores=SharedKeyScores(metrics, tuple(arranged(values) for values in self.scores)) if lean
                          else {metric: arranged(values) for metric, values in zip(metrics, self.scores, strict=True)},
                          output_sha256=arranged(self.hashes), outputs=arranged(self.outputs),
                          output_lengths=arranged(self.lengths), labels=arranged(self.labels), failed=self.failed)


class SharedKeyScores(Mapping[str, Sequence[float | None]]):
    """A lean snapshot's per-metric scores of one item: the metric names are one tuple shared by
    every item, the item holds only its values (a dict per item was ~180 B of ~750)."""

    __slots__ = ("_names", "_values")

    def __init__(self, names: tuple[str, ...], values: tuple[Sequence[float | None], ...]) -> None:
        self._names, self._values = names, values

    def __getitem__(self, metric: str) -> Sequence[float | None]:
        try:
            return self._values[self._names.index(metric)]
        except ValueError:
            raise KeyError(metric) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def __repr__(self) -> str:
        return repr(dict(self))


@dataclass
class Shared:
    """What records read from one file share: field dicts, metric names and slice lists."""

    fields: dict[tuple[tuple[str, str], ...], dict[str, str]] = dataclass_field(default_factory=dict)
    names: dict[tuple[str, ...], tuple[str, ...]] = dataclass_field(default_factory=dict)
    slices: dict[tuple[str, ...], tuple[str, ...]] = dataclass_field(default_factory=dict)


def compact_record(record: ItemRecord, keep_fields: Collection[str], shared: Shared) -> None:
    """Makes a record read from a file as small as a comparison's (see _ItemsBuilder): only the
    kept fields (one shared dict per distinct value), no hashes, tuples, short outputs shared."""
    kept = tuple((key, sys.intern(value)) for key, value in record.fields.items() if key in keep_fields)
    record.fields = shared.fields.setdefault(kept, dict(kept))
    record.output_sha256 = ()
    names = tuple(record.scores)
    record.scores = SharedKeyScores(shared.names.setdefault(names, names),
                                    tuple(tuple(values) for values in record.scores.values()))
    record.outputs = tuple(sys.intern(o) if o is not None and len(o) <= 64 else o for o in record.outputs)
    record.output_lengths = tuple(record.output_lengths)
    record.labels = tuple(_intern(label) for label in record.labels)
    slices = tuple(record.slices)
    record.slices = shared.slices.setdefault(slices, slices)


def _intern(text: str | None) -> str | None:
    return None if text is None else sys.intern(text)


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
