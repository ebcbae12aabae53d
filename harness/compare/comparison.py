"""Baseline vs candidate: pair items by ID, compare every metric, slice, category and drift
signal, list flaky items, and decide the gate. Plain functions over snapshots."""

from __future__ import annotations

import dataclasses
import enum
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from harness.compare.columns import SideColumns
from harness.compare.drift import DriftInput, DriftReport, SignalKind, check_drift
from harness.compare.paired import PairedComparison, PairedScores, compare_paired
from harness.compare.power import final_bound
from harness.compare.snapshot import RunSnapshot
from harness.compare.verdict import GateVerdict, GuardrailCheck, MetricPolicy, combine, decide, guardrail_check
from harness.config.suite import DRIFT_SIGNALS, GateMetric, GateSpec, GuardrailSpec
from harness.errors import UserError


@dataclass(frozen=True)
class Pairing:
    common: list[str]
    only_baseline: list[str]
    only_candidate: list[str]


@dataclass(frozen=True)
class MetricResult:
    metric: str
    comparison: PairedComparison


@dataclass(frozen=True)
class SubsetResult:
    """A metric compared on one slice or one category value."""

    subset: str
    metric: str
    comparison: PairedComparison


@dataclass(frozen=True)
class FlakyItem:
    item_id: str
    metric: str
    scores: list[float]
    agreement: float


@dataclass(frozen=True)
class EpochStats:
    metric: str
    k: int
    mean: float
    pass_all_k: float


@dataclass
class ComparisonReport:
    baseline_label: str
    candidate_run: str
    pairing: Pairing
    metrics: list[MetricResult]
    subsets: list[SubsetResult]
    flaky: list[FlakyItem]
    epochs: list[EpochStats]
    drift: DriftReport | None
    gate: GateVerdict
    notes: list[str] = field(default_factory=list)
    primary_metrics: list[str] = field(default_factory=list)
    """The gated metrics, in the order of `gate.metrics`."""
    slice_label: str = ""
    """The evaluated slices the primary metrics were gated on, joined with '+'."""
    guardrail_results: list[MetricResult] = field(default_factory=list)
    """The guardrails' comparisons, in the order of `gate.guardrails`."""


def check_comparable(baseline: RunSnapshot, candidate: RunSnapshot) -> None:
    """Different suites, data or slices cannot be paired: that is bad input, not a regression."""
    base, cand = baseline.fingerprints, candidate.fingerprints
    if base.suite != cand.suite:
        raise UserError(f"the baseline is of suite {base.suite!r}, the candidate of {cand.suite!r}",
                        hint="compare runs of the same suite")
    if base.dataset != cand.dataset:
        raise UserError("the baseline's dataset fingerprint does not match the candidate's "
                        f"({base.dataset[:12]} vs {cand.dataset[:12]}): the data changed",
                        hint="re-run the baseline on the current data and set it again")
    if set(base.evaluated) != set(cand.evaluated):
        raise UserError(f"the baseline evaluated slices {base.evaluated}, the candidate {cand.evaluated}",
                        hint="run the candidate on the baseline's slices (--slice)")
    # Older snapshots did not record these; where both did, the same names must mean the same.
    if base.slice_definitions and cand.slice_definitions and base.slice_definitions != cand.slice_definitions:
        raise UserError(f"the slices {cand.evaluated} were defined differently for the baseline and the candidate "
                        "(their where/first_n/sample settings changed): they select other items",
                        hint="run both on the same slice definitions, or set the baseline again")
    if base.scorers and cand.scorers and base.scorers != cand.scorers:
        raise UserError("the baseline and the candidate were scored by different scorer definitions (type, "
                        "parameters, target or extraction changed): their scores do not measure the same thing",
                        hint="run both with the same scorers, or set the baseline again from a run scored so")


def pair_items(baseline: RunSnapshot, candidate: RunSnapshot) -> Pairing:
    base, cand = set(baseline.items), set(candidate.items)
    return Pairing(sorted(base & cand), sorted(base - cand), sorted(cand - base))


def compare(baseline: RunSnapshot, candidate: RunSnapshot, gate: GateSpec, baseline_label: str) -> ComparisonReport:
    check_comparable(baseline, candidate)
    pairing = pair_items(baseline, candidate)
    if not pairing.common:
        raise UserError("the baseline and the candidate share no items")
    ids = pairing.common
    sides = _Sides(baseline, candidate, ids)
    metrics = [m for m in candidate.metrics if m in baseline.metrics]
    results = [MetricResult(m, sides.compare(m)) for m in metrics]
    by_metric = {r.metric: r.comparison for r in results}
    primaries = _primaries(gate, metrics)
    where = "+".join(candidate.fingerprints.evaluated)
    critical_z = _critical_z(candidate, gate)
    verdicts = [decide(by_metric[g.metric], MetricPolicy(f"{g.metric} (slice {where})", g.margin, g.higher_is_better,
                                                         gate.alpha, critical_z=critical_z)) for g in primaries]
    guarded = [_guardrail(sides, spec, gate.alpha) for spec in gate.guardrails]
    guardrails = [check for _, check in guarded]
    subsets = _subsets(sides, gate, [g.metric for g in primaries])
    slice_checks = [guardrail_check(s.comparison, MetricPolicy(f"{s.subset} {s.metric}", alpha=gate.alpha,
                                                               higher_is_better=_higher(gate, s.metric)))
                    for s in subsets]
    report = ComparisonReport(
        baseline_label=baseline_label, candidate_run=candidate.run_id, pairing=pairing, metrics=results,
        subsets=subsets, flaky=_flaky(sides.candidate, candidate.binary_metrics),
        epochs=_epoch_stats(sides.candidate, candidate.binary_metrics),
        drift=_drift(sides), gate=combine(verdicts, guardrails, slice_checks),
        primary_metrics=[g.metric for g in primaries], slice_label=where,
        guardrail_results=[MetricResult(spec.metric, comparison)
                           for spec, (comparison, _) in zip(gate.guardrails, guarded, strict=True)])
    if critical_z is not None:
        report.notes.append(f"a sample of a {candidate.sequential_looks}-look sequential design: judged at the "
                            f"design's final O'Brien-Fleming bound z = {critical_z:.3f}, not the fixed-sample "
                            f"{MetricPolicy('', alpha=gate.alpha).z:.3f}")
    if candidate.unfinished_items:
        report.notes.append(f"{candidate.unfinished_items} item(s) of the candidate were never finished "
                            "(stopped early or interrupted) and are not compared")
    report.notes.extend(_failed_notes(baseline, candidate, sides))
    if pairing.only_baseline or pairing.only_candidate:
        report.notes.append(f"{len(pairing.only_baseline)} item(s) only in the baseline and "
                            f"{len(pairing.only_candidate)} only in the candidate were left out of the pairing")
    return report


def _failed_notes(baseline: RunSnapshot, candidate: RunSnapshot, sides: _Sides) -> list[str]:
    """How the paired items whose requests failed were counted on each side."""
    notes = []
    for side, snapshot, columns in (("baseline", baseline, sides.baseline), ("candidate", candidate, sides.candidate)):
        failed = columns.failed()
        if not failed:
            continue
        if snapshot.failed_as_zero:
            how = "score 0 for every metric (a loss, not a dropped pair)"
        elif snapshot.failed_as_zero is False:
            how = "are left out (scoring.failed_requests: exclude)"
        else:
            how = "are left out (a snapshot taken before failed requests were scored 0; set it again to count them)"
        notes.append(f"{failed} item(s) of the {side} have failed requests: those requests {how}")
    return notes


def _critical_z(candidate: RunSnapshot, gate: GateSpec) -> float | None:
    """A sequential sample has looked at its data before: its last look is judged at the design's
    final bound (1.993 for three looks), or the looks together would spend more than alpha."""
    if not candidate.sequential_looks:
        return None
    return final_bound(candidate.sequential_looks, gate.alpha)


def _primaries(gate: GateSpec, metrics: list[str]) -> list[GateMetric]:
    chosen = gate.primary_metrics(metrics)
    missing = [g.metric for g in chosen if g.metric not in metrics]
    if missing:
        raise UserError(f"gate metric(s) {missing} are not scored in both runs (scored: {metrics})")
    return chosen


def _higher(gate: GateSpec, metric: str) -> bool:
    return next((g.higher_is_better for g in gate.primary if g.metric == metric), True)


class _Sides:
    """Both sides of the paired items as columns; clusters are the baseline's."""

    def __init__(self, baseline: RunSnapshot, candidate: RunSnapshot, ids: list[str]) -> None:
        self.baseline, self.candidate = SideColumns(baseline, ids), SideColumns(candidate, ids)
        self.ids = ids

    def compare(self, metric: str, rows: np.ndarray | None = None, signal: bool = False) -> PairedComparison:
        """A scorer's metric (or with `signal`, a drift signal) on all paired items, or on `rows` of them."""
        if signal:
            base, cand = self.baseline.signal(metric), self.candidate.signal(metric)
        else:
            base, cand = self.baseline.scores(metric), self.candidate.scores(metric)
        clusters = self.baseline.clusters()
        if rows is not None:
            base, cand = base[rows], cand[rows]
            clusters = None if clusters is None else clusters[rows]
        return compare_paired(PairedScores(base, cand, clusters))


def _guardrail(sides: _Sides, spec: GuardrailSpec, alpha: float) -> tuple[PairedComparison, GuardrailCheck]:
    comparison = sides.compare(spec.metric, signal=spec.metric in DRIFT_SIGNALS)
    # More empty outputs or refusals is worse; for length the suite says which way is bad.
    higher = False if spec.metric in DRIFT_SIGNALS and spec.metric != "output_length" else spec.higher_is_better
    policy = MetricPolicy(spec.metric, higher_is_better=higher, alpha=alpha)
    return comparison, guardrail_check(comparison, policy, spec.blocking)


def _subsets(sides: _Sides, gate: GateSpec, metrics: list[str]) -> list[SubsetResult]:
    groups: dict[str, np.ndarray] = {}
    for name in gate.slices:
        groups[f"slice={name}"] = np.flatnonzero(sides.candidate.in_slice(name))
    if gate.category_field:
        values = np.array(sides.baseline.field(gate.category_field), dtype=object)
        for value in sorted(set(values)):
            groups[f"{gate.category_field}={value}"] = np.flatnonzero(values == value)
    return [SubsetResult(name, metric, sides.compare(metric, members))
            for name, members in groups.items() if len(members) >= 2 for metric in metrics]


def _epochs_of(candidate: SideColumns, metric: str) -> np.ndarray:
    """The candidate's scored epochs of `metric` per item, as a mask over its matrix."""
    return ~np.isnan(candidate.scores(metric))


def _flaky(candidate: SideColumns, binary_metrics: list[str]) -> list[FlakyItem]:
    flaky = []
    for metric in binary_metrics:
        scores = candidate.scores(metric)
        if scores.shape[1] < 2:
            continue  # one epoch per item: nothing can disagree
        for row in np.flatnonzero(np.nanmax(scores, axis=1, initial=-np.inf) != np.nanmin(scores, axis=1,
                                                                                       initial=np.inf)):
            values = [float(v) for v in scores[row] if not np.isnan(v)]
            if len(values) > 1:
                agreement = max(Counter(values).values()) / len(values)
                flaky.append(FlakyItem(candidate.ids[row], metric, values, agreement))
    return sorted(flaky, key=lambda f: (f.agreement, f.item_id))


def _epoch_stats(candidate: SideColumns, binary_metrics: list[str]) -> list[EpochStats]:
    stats = []
    for metric in binary_metrics:
        scores = candidate.scores(metric)
        counts = (~np.isnan(scores)).sum(axis=1)
        scored = counts > 0
        k = int(counts.max(initial=0))
        if k > 1:
            means = np.nansum(scores[scored], axis=1) / counts[scored]
            all_pass = np.all(np.isnan(scores[scored]) | (scores[scored] == 1.0), axis=1)
            stats.append(EpochStats(metric, k, float(np.mean(means)), float(np.mean(all_pass))))
    return stats


def _drift(sides: _Sides) -> DriftReport | None:
    """Signals that need no ground truth, on the first sample of each paired item."""
    inputs = []
    base_labels = [item.labels[0] if item.labels else None for item in sides.baseline.items]
    cand_labels = [item.labels[0] if item.labels else None for item in sides.candidate.items]
    if None not in base_labels and None not in cand_labels:
        inputs.append(DriftInput("label distribution", SignalKind.LABELS, base_labels, cand_labels, paired=True))
    for signal in DRIFT_SIGNALS:
        kind = SignalKind.CONTINUOUS if signal == "output_length" else SignalKind.RATE
        first_base = sides.baseline.signal(signal)[:, 0]
        first_cand = sides.candidate.signal(signal)[:, 0]
        keep = ~(np.isnan(first_base) | np.isnan(first_cand))
        if int(keep.sum()) >= 2:
            inputs.append(DriftInput(signal.replace("_", " "), kind, first_base[keep], first_cand[keep], paired=True))
    return check_drift(inputs) if inputs else None


def report_json(report: ComparisonReport) -> dict[str, Any]:
    """The whole comparison as plain JSON (`compare --json`, and the gate record's evidence)."""
    return _plain(dataclasses.asdict(report))


def _plain(value: Any) -> Any:
    """dataclasses.asdict output made JSON-safe (enums, numpy numbers, NaN)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, enum.Enum):
        return value.value
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    return value
