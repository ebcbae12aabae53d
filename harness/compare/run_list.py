"""`evalbatch runs`: a suite's runs, newest first, with what each became (promoted, a baseline,
a promotion's full run), its primary metric and how many of its requests were actually sent."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import cast

from harness.compare.baseline import read_baseline_header
from harness.compare.promotion import current_promotion, promotion_folder
from harness.config.loader import LoadedSuite
from harness.errors import UserError
from harness.runs.locate import scan_runs, suite_runs_dir
from harness.runs.manifest import Manifest
from harness.runs.results import ResultLine, light_run_lines


@dataclass(frozen=True)
class ListedRun:
    run_id: str
    status: str
    prompt: str
    started_at: str
    planned: int
    """Requests the run was planned with."""
    sent: int | None
    """Requests sent at least once (fewer than planned for a sample stopped early); None: store unreadable."""
    marks: list[str]
    """'promoted', 'baseline <name>', 'full run'."""
    metric: str | None
    """The suite's first gate metric."""
    metric_means: dict[str, float | None] = field(default_factory=dict)
    """Per target, the mean over items of that metric (epochs averaged within an item)."""
    folder: str = ""


@dataclass(frozen=True)
class RunList:
    suite: str
    folder: str
    runs: list[ListedRun]
    damaged: list[dict[str, str]]

    def as_json(self) -> dict:
        return asdict(self)


def list_runs(suite: LoadedSuite) -> RunList:
    folder = suite_runs_dir(suite)
    found, damaged = scan_runs(folder)
    marks = _run_marks(suite)
    metrics = suite.spec.gate_metrics
    metric = metrics[0].metric if metrics else None
    listed = [_listed(run_folder, manifest, marks.get(manifest.run_id, []), metric) for run_folder, manifest in found]
    return RunList(suite.spec.name, str(folder), listed,
                   [{"folder": str(d.folder), "problem": d.problem} for d in damaged])


def _listed(folder: Path, manifest: Manifest, marks: list[str], metric: str | None) -> ListedRun:
    try:
        # Attempts and score values only: SummaryLine has them.
        lines: list[ResultLine] | None = cast(list[ResultLine], light_run_lines(folder))
    except UserError:
        lines = None  # a damaged store must not hide the other runs
    marks = marks + (["full run"] if manifest.options.full_promotion else [])
    return ListedRun(
        run_id=manifest.run_id, status=manifest.status, prompt=f"{manifest.prompt.name}@{manifest.prompt.version}",
        started_at=manifest.started_at, planned=manifest.request_count,
        sent=sum(line.attempts > 0 for line in lines) if lines is not None else None, marks=marks,
        metric=metric, metric_means=_means(lines or [], metric) if metric else {}, folder=str(folder))


def _means(lines: list[ResultLine], metric: str) -> dict[str, float | None]:
    """Per target: epochs averaged within an item, then the mean over items that have a score."""
    by_item: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    targets: dict[str, None] = {}
    for line in lines:
        targets[line.target] = None
        value = (line.scores.get(metric) or {}).get("value")
        if value is not None:
            by_item[line.target][line.item_id].append(value)
    means: dict[str, float | None] = {}
    for target in targets:
        item_means = [sum(values) / len(values) for values in by_item[target].values()]
        means[target] = sum(item_means) / len(item_means) if item_means else None
    return means


def _run_marks(suite: LoadedSuite) -> dict[str, list[str]]:
    """Run ID -> what it is: the promoted run (promoted.json) and each baseline's run
    (baselines/<suite>/<name>.json). An unreadable file marks nothing rather than hiding the list."""
    marks: dict[str, list[str]] = defaultdict(list)
    try:
        promotion = current_promotion(suite)
    except UserError:
        promotion = None
    if promotion is not None:
        marks[promotion.run_id].append("promoted")
    folder = promotion_folder(suite)
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        if path.name == "promoted.json":
            continue
        try:
            baseline = read_baseline_header(path)  # a large baseline's items are not read
        except UserError:
            continue
        marks[baseline.snapshot.run_id].append(f"baseline {baseline.name}")
    return marks


def run_line(run: ListedRun) -> str:
    """One run as `runs` prints it."""
    if run.sent is None:
        requests = f"{run.planned} planned, store unreadable"
    elif run.sent != run.planned:
        requests = f"{run.planned} planned, {run.sent} sent"
    else:
        requests = f"{run.planned} requests"
    metric = ""
    if run.metric:
        values = [f"{value:.3f}" if value is not None else "n/a" for value in run.metric_means.values()] or ["n/a"]
        shown = (", ".join(f"{target} {value}" for target, value in zip(run.metric_means, values, strict=True))
                 if len(run.metric_means) > 1 else values[0])
        metric = f"  {run.metric} {shown}"
    marks = f"  [{', '.join(run.marks)}]" if run.marks else ""
    return (f"{run.run_id}  {run.status:<13}  {run.prompt}  {requests}{metric}  started {run.started_at}{marks}")
