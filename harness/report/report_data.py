"""Gathers what a report shows: the run (and its baseline) from the run stores and snapshots, the
verdict from the gate record. Every format renders from the result; nothing is re-parsed from
console text and no statistic is computed twice.

Which comparison a report shows: with `--baseline`, the gate's decision against it, computed
now by the gate's own code (`judge`) and not recorded; without, the run's recorded gate.json
when there is one; else the run alone.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from harness import __version__
from harness.compare.baseline import read_baseline_header
from harness.compare.gate_decision import judge
from harness.compare.snapshot import RunSnapshot, label_metrics, metric_item_means, snapshot_run
from harness.compare.sources import ComparisonInputs, SourceOptions, load_inputs
from harness.config.loader import load_suite
from harness.engine.metrics import run_metrics
from harness.engine.store import RunStore
from harness.errors import UserError
from harness.report.report_json import (
    TOP_ITEMS,
    BaselineSummary,
    ChangeKind,
    FailureClass,
    ItemChange,
    ItemCounts,
    ReportDocument,
    RunSummary,
    ScoreRow,
)
from harness.report.summary import mean_with_ci
from harness.runs.gate_record import GateRecord, read_gate_record
from harness.runs.locate import find_run, search_dirs
from harness.runs.manifest import Manifest, now_iso, read_manifest
from harness.runs.results import light_run_lines

HISTORY_RUNS = 10
"""Baseline settings whose runs the history trend reads at most (the latest)."""
UNCHANGED_SAMPLE = 200
"""Unchanged items the HTML shows at most (a seeded sample): changed items are what a reviewer reads."""
LISTED_CHANGES = 10_000
"""Changed items the HTML lists at most (regressed first; the rest are counted): more than anyone
pages through, and at about 320 bytes each a comparison where nearly all of 100,000 items moved
stays a few MB that a browser opens at once."""
_INPUT_CHARS = 600


@dataclass(frozen=True)
class ReportOptions:
    baseline: str | None = None
    reports_dir: Path | None = None
    target: str | None = None
    suite_path: Path | None = None


@dataclass
class ItemView:
    """An item on one metric as the HTML shows it: the change, both outputs and the input."""

    change: ItemChange
    input: list[tuple[str, str]] = field(default_factory=list)
    """The item's fields (name, value as text, cut at 600 characters)."""


@dataclass
class ReportData:
    document: ReportDocument
    folder: Path
    candidate: RunSnapshot
    baseline: RunSnapshot | None = None
    items: list[ItemView] = field(default_factory=list)
    """Every changed item, and a sample of at most UNCHANGED_SAMPLE unchanged ones per metric."""
    history: list[HistoryPoint] = field(default_factory=list)
    """The first primary metric over the baseline's history, then the candidate's value."""
    confusion: Confusion | None = None
    unlisted_changes: int = 0
    """Changed items beyond LISTED_CHANGES, counted but not listed."""


@dataclass(frozen=True)
class Confusion:
    """Expected label (rows) against predicted label (columns), first epoch of each paired item,
    for the first label-predicting scorer; the expected labels are the candidate's item fields
    (paired items are the same items: the dataset fingerprints matched)."""

    metric: str
    expected: list[str]
    predicted: list[str]
    baseline: list[list[int]]
    candidate: list[list[int]]


@dataclass(frozen=True)
class HistoryPoint:
    when: str
    run_id: str
    value: float


def gather(run: str, options: ReportOptions) -> ReportData:
    folder = find_run(run, search_dirs(options.reports_dir))
    if options.baseline is not None:
        inputs, _, record = judge(run, SourceOptions(options.baseline, options.reports_dir, options.target,
                                                     options.suite_path))
        return _comparison(inputs, record, "computed", options, [])
    recorded = read_gate_record(folder)
    if recorded is not None:
        name = recorded.baseline.name or recorded.baseline.run_id
        inputs = load_inputs(run, SourceOptions(name, options.reports_dir, recorded.target, options.suite_path))
        notes = []
        if inputs.baseline_ref.sha256 != recorded.baseline.sha256:
            notes.append(f"the baseline {name} changed since the gate was decided ({recorded.decided_at}): the items "
                         "below are compared with it as it is now; the verdict and metrics are the gate's")
        return _comparison(inputs, recorded, "recorded", options, notes)
    return _run_alone(folder, options)


def _run_alone(folder: Path, options: ReportOptions) -> ReportData:
    manifest = read_manifest(folder)
    snapshot = snapshot_run(folder, options.target, _failed_as_zero(options.suite_path or Path(manifest.suite_file)))
    document = ReportDocument(kind="run", generated_at=now_iso(), harness_version=__version__, gate_source=None,
                              run=run_summary(folder, manifest, snapshot.fingerprints.target, score_rows(
                                  {metric: metric_item_means(snapshot, metric) for metric in snapshot.metrics})),
                              baseline=None, gate=None)
    return ReportData(document, folder, snapshot)


def _failed_as_zero(suite_path: Path) -> bool:
    """The suite's rule for failed requests; the default (score 0) when the suite file is gone."""
    try:
        return load_suite(suite_path).spec.scoring.failed_as_zero
    except (UserError, OSError):
        return True


def _comparison(inputs: ComparisonInputs, record: GateRecord, source: Literal["recorded", "computed"],
                options: ReportOptions,
                notes: list[str]) -> ReportData:
    folder = inputs.candidate_folder
    candidate, baseline = inputs.candidate, inputs.baseline
    higher = {g.metric: g.higher_is_better for g in inputs.gate.primary}
    # Item means are computed once per run and metric: a 100,000-item report reads them thrice.
    base_means = {metric: metric_item_means(baseline, metric) for metric in baseline.metrics}
    cand_means = {metric: metric_item_means(candidate, metric) for metric in candidate.metrics}
    # Changes are kept as (metric, item, kind, |delta|) until chosen for showing: a comparison
    # where most of 100,000 items moved must not build a record for each.
    moved: list[_Moved] = []
    sampled: list[ItemChange] = []
    counts = []
    for metric in [m for m in candidate.metrics if m in baseline.metrics]:
        means = (base_means[metric], cand_means[metric])
        changed, unchanged = item_changes(means, higher.get(metric, True))
        moved += [(metric, *change) for change in changed]
        sampled += [_change(baseline, candidate, metric, item_id, "unchanged", means)
                    for item_id in _sample_unchanged(unchanged)]
        counts.append(ItemCounts(metric=metric, regressed=sum(1 for c in changed if c[1] == "regressed"),
                                 improved=sum(1 for c in changed if c[1] == "improved"), unchanged=len(unchanged)))

    def made(chosen: list[_Moved]) -> list[ItemChange]:
        return [_change(baseline, candidate, metric, item_id, kind, (base_means[metric], cand_means[metric]))
                for metric, item_id, kind, _ in chosen]

    document = ReportDocument(
        kind="comparison", generated_at=now_iso(), harness_version=__version__,
        gate_source=source,
        run=run_summary(folder, read_manifest(folder), candidate.fingerprints.target, score_rows(cand_means)),
        baseline=_baseline_summary(inputs, options, score_rows(base_means)), gate=record, item_counts=counts,
        top_regressed=made(_top(moved, "regressed")), top_improved=made(_top(moved, "improved")), notes=notes)
    listed = sorted(moved, key=lambda c: c[2] != "regressed")[:LISTED_CHANGES]  # stable: by ID within
    return ReportData(document, folder, candidate, baseline, _with_inputs(folder, made(listed) + sampled),
                      _history(document, inputs, options), _confusion(folder, baseline, candidate),
                      unlisted_changes=len(moved) - len(listed))


_Moved = tuple[str, str, ChangeKind, float]
"""(metric, item ID, regressed or improved, |delta|)."""


_CONFUSION_LABELS = 12


def _confusion(folder: Path, baseline: RunSnapshot, candidate: RunSnapshot) -> Confusion | None:
    manifest = read_manifest(folder)
    labelled = label_metrics(manifest.scorers)
    scorer = next((s for s in manifest.scorers if (s.get("name") or s["type"]) in labelled), None)
    field_name = scorer.get("target") if scorer else None
    if scorer is None or not isinstance(field_name, str):
        return None
    expected = _field_values(folder, field_name)
    ids = [i for i in candidate.items if i in baseline.items and i in expected]
    if not ids:
        return None

    def first(snapshot: RunSnapshot, item_id: str) -> str:
        labels = snapshot.items[item_id].labels
        return (labels[0] if labels else None) or "(none)"

    pairs = [(expected[i], first(baseline, i), first(candidate, i)) for i in ids]
    rows = [label for label, _ in Counter(p[0] for p in pairs).most_common(_CONFUSION_LABELS)]
    predicted = [label for label, _ in Counter(x for p in pairs for x in p[1:]).most_common(_CONFUSION_LABELS)]
    columns = rows + [label for label in predicted if label not in rows]  # the diagonal first

    def matrix(side: int) -> list[list[int]]:
        counts = Counter((p[0], p[side]) for p in pairs)
        return [[counts[(row, column)] for column in columns] for row in rows]

    return Confusion(scorer.get("name") or scorer["type"], rows, columns, matrix(1), matrix(2))


def _field_values(folder: Path, name: str) -> dict[str, str]:
    """One item field of every stored item, taken out of its JSON by SQLite (a dotted name is a path)."""
    store_path = folder / RunStore.FILENAME
    if not store_path.is_file() or '"' in name:
        return {}
    path = "$" + "".join(f'."{part}"' for part in name.split("."))
    store = RunStore.read_only(store_path)
    try:
        if not store.has_table("items"):
            return {}
        with store.reading():
            return {item_id: str(value) for item_id, value in
                    store.db.execute("SELECT item_id, json_extract(fields, ?) FROM items", (path,))
                    if value is not None}
    finally:
        store.close()


def _history(document: ReportDocument, inputs: ComparisonInputs, options: ReportOptions) -> list[HistoryPoint]:
    """The gate's first metric for each baseline setting whose run folder is still found (the
    latest HISTORY_RUNS), then the candidate's: a trend of what was accepted."""
    base = document.baseline
    if document.gate is None or not document.gate.metrics or base is None:
        return []
    metric = document.gate.metrics[0].metric
    current = {row.metric: row.mean for row in base.scores}.get(metric)
    points = []
    for event in base.history[-HISTORY_RUNS:]:
        value = current if event.from_run == base.run_id else _run_mean(event.from_run, metric, inputs, options)
        if value is not None:
            points.append(HistoryPoint(event.set_at, event.from_run, value))
    candidate = {row.metric: row.mean for row in document.run.scores}.get(metric)
    if candidate is not None:
        points.append(HistoryPoint(document.run.started_at, document.run.run_id, candidate))
    return points


def _run_mean(run_id: str, metric: str, inputs: ComparisonInputs, options: ReportOptions) -> float | None:
    try:
        folder = find_run(run_id, search_dirs(options.reports_dir, inputs.suite), inputs.suite.spec.name)
        by_item: dict[str, list[float]] = {}
        for line in light_run_lines(folder):
            value = (line.scores.get(metric) or {}).get("value")
            if value is not None and line.target == inputs.candidate.fingerprints.target:
                by_item.setdefault(line.item_id, []).append(value)
    except (UserError, OSError):
        return None  # a baseline outlives its run folder
    means = [sum(values) / len(values) for values in by_item.values()]
    return sum(means) / len(means) if means else None


def _top(changes: list[_Moved], kind: str) -> list[_Moved]:
    chosen = [c for c in changes if c[2] == kind]
    chosen.sort(key=lambda c: (-c[3], c[1]))
    return chosen[:TOP_ITEMS]


def _sample_unchanged(unchanged: list[str]) -> list[str]:
    """At most UNCHANGED_SAMPLE unchanged items, a seeded sample: the same report twice shows the same."""
    chosen = unchanged if len(unchanged) <= UNCHANGED_SAMPLE else random.Random(0).sample(unchanged, UNCHANGED_SAMPLE)
    return sorted(chosen)


def item_changes(means: tuple[dict[str, float], dict[str, float]],
                 higher_is_better: bool = True) -> tuple[list[tuple[str, ChangeKind, float]], list[str]]:
    """From a metric's item means of the baseline and the candidate (metric_item_means), the
    paired items that regressed or improved, as (item ID, kind, |delta|), and the IDs of those
    that stayed; by item ID."""
    base, cand = means
    changed: list[tuple[str, ChangeKind, float]] = []
    unchanged = []
    for item_id in sorted(base.keys() & cand.keys()):
        delta = cand[item_id] - base[item_id]
        if not higher_is_better:
            delta = -delta
        if abs(delta) < 1e-12:
            unchanged.append(item_id)
        else:
            changed.append((item_id, "improved" if delta > 0 else "regressed", abs(delta)))
    return changed, unchanged


def _change(baseline: RunSnapshot, candidate: RunSnapshot, metric: str, item_id: str, kind: ChangeKind,
            means: tuple[dict[str, float], dict[str, float]]) -> ItemChange:
    b_item, c_item = baseline.items[item_id], candidate.items[item_id]
    # Built unvalidated: thousands of items of values made here (ItemChange validates what it reads).
    return ItemChange.model_construct(item_id=item_id, metric=metric, change=kind, baseline_score=means[0][item_id],
                                      candidate_score=means[1][item_id], baseline_output=_first(b_item.outputs),
                                      candidate_output=_first(c_item.outputs), slices=list(c_item.slices))


def _first(outputs: Iterable[str | None]) -> str | None:
    return next((o for o in outputs if o is not None), None)


def _with_inputs(folder: Path, changes: list[ItemChange]) -> list[ItemView]:
    """The shown items' fields, read from the candidate's store for those items only."""
    fields: dict[str, dict] = {}
    store_path = folder / RunStore.FILENAME
    if store_path.is_file():
        store = RunStore.read_only(store_path)
        try:
            if store.has_table("items"):
                with store.reading():
                    fields = {i: s.fields for i, s in store.items_of(c.item_id for c in changes).items()}
        finally:
            store.close()
    return [ItemView(c, [(str(k), _text(v)) for k, v in fields.get(c.item_id, {}).items()]) for c in changes]


def _text(value: object) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= _INPUT_CHARS else text[:_INPUT_CHARS] + "…"


def score_rows(means: dict[str, dict[str, float]]) -> list[ScoreRow]:
    """Per metric, from its item means (metric_item_means), the mean with a 95% t interval."""
    rows = []
    for metric, item_means in means.items():
        values = list(item_means.values())
        mean, low, high = mean_with_ci(values)
        rows.append(ScoreRow(metric=metric, n=len(values), mean=mean if values else None, ci_low=low, ci_high=high))
    return rows


def run_summary(folder: Path, manifest: Manifest, target_label: str, scores: list[ScoreRow]) -> RunSummary:
    target = next(t for t in manifest.targets if t.label == target_label)
    metrics, failures = manifest.metrics, []
    store_path = folder / RunStore.FILENAME
    if store_path.is_file():
        store = RunStore.read_only(store_path)
        try:
            metrics = run_metrics(store)  # the store's current state; the manifest's is as of the last session
            if store.has_table("requests"):
                with store.reading():
                    failures = _failure_classes(f.status for f in store.terminal_failures())
        finally:
            store.close()
    return RunSummary(
        run_id=manifest.run_id, suite=manifest.suite, status=manifest.status, target=target.label,
        provider=target.provider, model=target.model, params=target.params, prompt=manifest.prompt.name,
        prompt_version=manifest.prompt.version, prompt_fingerprint=manifest.prompt.fingerprint,
        dataset=manifest.dataset.fingerprint, slice_fingerprint=manifest.dataset.slice_fingerprint,
        evaluated=manifest.dataset.evaluated, items=manifest.dataset.item_count, epochs=manifest.epochs,
        started_at=manifest.started_at, ended_at=manifest.ended_at, wall_time_s=manifest.wall_time_s,
        harness_version=manifest.harness_version, git_commit=manifest.git_commit, metrics=metrics,
        failures=failures, scores=scores)


def _failure_classes(statuses: Iterable[int | None]) -> list[FailureClass]:
    counts: dict[str, int] = {}
    for status in statuses:
        if status is None:
            kind = "no reply (timeout, connection)"
        elif status in (429, 529):
            kind = f"http {status}"
        else:
            kind = f"http {status // 100}xx"
        counts[kind] = counts.get(kind, 0) + 1
    return [FailureClass(kind=kind, count=count) for kind, count in sorted(counts.items())]


def _baseline_summary(inputs: ComparisonInputs, options: ReportOptions, scores: list[ScoreRow]) -> BaselineSummary:
    ref, snapshot = inputs.baseline_ref, inputs.baseline
    prints = snapshot.fingerprints
    summary = BaselineSummary(name=ref.name, kind=ref.kind, run_id=ref.run_id, prompt=prints.prompt,
                              prompt_fingerprint=prints.prompt_fingerprint, model=prints.model, params=prints.params,
                              harness_version=prints.harness_version, dataset=prints.dataset,
                              slice_fingerprint=prints.slice_fingerprint, evaluated=list(prints.evaluated),
                              scores=scores)
    if ref.kind == "baseline":
        header = read_baseline_header(Path(ref.file))
        summary = summary.model_copy(update={"set_at": header.set_at, "set_by": header.set_by,
                                             "history": header.history})
    try:  # the baseline run's own folder, for its operations; a baseline outlives its run folder
        base_folder = find_run(ref.run_id, search_dirs(options.reports_dir, inputs.suite), inputs.suite.spec.name)
        summary = summary.model_copy(update={"run": run_summary(base_folder, read_manifest(base_folder),
                                                                prints.target, scores)})
    except (UserError, OSError, StopIteration):
        pass
    return summary
