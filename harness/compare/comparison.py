"""Baseline vs candidate: pair items by ID, compare every metric, slice, category and drift
signal, list flaky items, and decide the gate. Plain functions over snapshots."""

from __future__ import annotations

import dataclasses
import enum
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from harness.compare.drift import DriftInput, DriftReport, SignalKind, check_drift
from harness.compare.paired import PairedComparison, PairedScores, compare_paired
from harness.compare.power import final_bound
from harness.compare.snapshot import RunSnapshot, is_refusal
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
    metrics = [m for m in candidate.metrics if m in baseline.metrics]
    results = [MetricResult(m, _compare(baseline, candidate, ids, m)) for m in metrics]
    by_metric = {r.metric: r.comparison for r in results}
    primaries = _primaries(gate, metrics)
    where = "+".join(candidate.fingerprints.evaluated)
    critical_z = _critical_z(candidate, gate)
    verdicts = [decide(by_metric[g.metric], MetricPolicy(f"{g.metric} (slice {where})", g.margin, g.higher_is_better,
                                                         gate.alpha, critical_z=critical_z)) for g in primaries]
    signals = _Signals(baseline, candidate, ids)
    guarded = [_guardrail(signals, spec, gate.alpha) for spec in gate.guardrails]
    guardrails = [check for _, check in guarded]
    subsets = _subsets(baseline, candidate, ids, gate, [g.metric for g in primaries])
    slice_checks = [guardrail_check(s.comparison, MetricPolicy(f"{s.subset} {s.metric}", alpha=gate.alpha,
                                                               higher_is_better=_higher(gate, s.metric)))
                    for s in subsets]
    report = ComparisonReport(
        baseline_label=baseline_label, candidate_run=candidate.run_id, pairing=pairing, metrics=results,
        subsets=subsets, flaky=_flaky(candidate, ids), epochs=_epoch_stats(candidate, ids),
        drift=_drift(signals), gate=combine(verdicts, guardrails, slice_checks),
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
    report.notes.extend(_failed_notes(baseline, candidate, ids))
    if pairing.only_baseline or pairing.only_candidate:
        report.notes.append(f"{len(pairing.only_baseline)} item(s) only in the baseline and "
                            f"{len(pairing.only_candidate)} only in the candidate were left out of the pairing")
    return report


def _failed_notes(baseline: RunSnapshot, candidate: RunSnapshot, ids: list[str]) -> list[str]:
    """How the paired items whose requests failed were counted on each side."""
    notes = []
    for side, snapshot in (("baseline", baseline), ("candidate", candidate)):
        failed = sum(snapshot.items[i].failed > 0 for i in ids)
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


def _scores(snapshot: RunSnapshot, ids: list[str], metric: str) -> np.ndarray:
    return _matrix([snapshot.items[i].scores.get(metric, [None]) for i in ids])


def _matrix(rows: Sequence[Sequence[float | None]]) -> np.ndarray:
    """Items x epochs, NaN where an epoch has no value (or the item fewer epochs): the paired
    statistics take a matrix as it is, where a list of lists is converted item by item."""
    width = max((len(row) for row in rows), default=1)
    if all(len(row) == width for row in rows):
        return np.array(rows, dtype=float).reshape(len(rows), width)  # None becomes NaN
    matrix = np.full((len(rows), width), np.nan)
    for index, row in enumerate(rows):
        matrix[index, :len(row)] = np.array(row, dtype=float)
    return matrix


def _clusters(snapshot: RunSnapshot, ids: list[str]) -> list[str] | None:
    clusters = [snapshot.items[i].cluster for i in ids]
    return None if all(c is None for c in clusters) else [c if c is not None else f"item:{i}"
                                                            for c, i in zip(clusters, ids, strict=True)]


def _compare(baseline: RunSnapshot, candidate: RunSnapshot, ids: list[str], metric: str) -> PairedComparison:
    return compare_paired(PairedScores(_scores(baseline, ids, metric), _scores(candidate, ids, metric),
                                       _clusters(baseline, ids)))


class _Signals:
    """The drift signals of both sides on the paired items, each computed once per comparison
    (guardrails and drift checks share them)."""

    def __init__(self, baseline: RunSnapshot, candidate: RunSnapshot, ids: list[str]) -> None:
        self.baseline, self.candidate, self.ids = baseline, candidate, ids
        self.memo: dict[tuple[str, str], np.ndarray] = {}

    def matrix(self, side: str, signal: str) -> np.ndarray:
        """Items x epochs of `signal` for side "baseline" or "candidate"."""
        if (side, signal) not in self.memo:
            snapshot = self.baseline if side == "baseline" else self.candidate
            self.memo[(side, signal)] = _signal_matrix(snapshot, self.ids, signal)
        return self.memo[(side, signal)]


def _signal_matrix(snapshot: RunSnapshot, ids: list[str], signal: str) -> np.ndarray:
    """Items x epochs of one drift signal. Outputs repeat (labels, short answers): each distinct
    output is judged once."""
    if signal == "output_length":
        return _matrix([snapshot.items[i].output_lengths for i in ids])
    judge = _is_empty if signal == "empty_output" else is_refusal
    judged: dict[str | None, float] = {None: math.nan}

    def value(output: str | None) -> float:
        found = judged.get(output)
        if found is None:
            found = judged[output] = float(judge(output))
        return found

    return _matrix([[value(output) for output in snapshot.items[i].outputs] for i in ids])


def _is_empty(output: str | None) -> bool:
    return output is not None and not output.strip()


def _guardrail(signals: _Signals, spec: GuardrailSpec, alpha: float) -> tuple[PairedComparison, GuardrailCheck]:
    baseline, candidate, ids = signals.baseline, signals.candidate, signals.ids
    if spec.metric in DRIFT_SIGNALS:
        base = signals.matrix("baseline", spec.metric)
        cand = signals.matrix("candidate", spec.metric)
        comparison = compare_paired(PairedScores(base, cand, _clusters(baseline, ids)))
        # More empty outputs or refusals is worse; for length the suite says which way is bad.
        higher = spec.higher_is_better if spec.metric == "output_length" else False
    else:
        comparison, higher = _compare(baseline, candidate, ids, spec.metric), spec.higher_is_better
    policy = MetricPolicy(spec.metric, higher_is_better=higher, alpha=alpha)
    return comparison, guardrail_check(comparison, policy, spec.blocking)


def _subsets(baseline: RunSnapshot, candidate: RunSnapshot, ids: list[str], gate: GateSpec,
             metrics: list[str]) -> list[SubsetResult]:
    groups: dict[str, list[str]] = {}
    for name in gate.slices:
        groups[f"slice={name}"] = [i for i in ids if name in candidate.items[i].slices]
    if gate.category_field:
        values = sorted({baseline.items[i].fields.get(gate.category_field, "") for i in ids})
        for value in values:
            groups[f"{gate.category_field}={value}"] = [
                i for i in ids if baseline.items[i].fields.get(gate.category_field, "") == value]
    return [SubsetResult(name, metric, _compare(baseline, candidate, members, metric))
            for name, members in groups.items() if len(members) >= 2 for metric in metrics]


def _flaky(candidate: RunSnapshot, ids: list[str]) -> list[FlakyItem]:
    flaky = []
    for metric in candidate.binary_metrics:
        for item_id in ids:
            values = [v for v in candidate.items[item_id].scores.get(metric, []) if v is not None]
            if len(values) > 1 and len(set(values)) > 1:
                agreement = max(Counter(values).values()) / len(values)
                flaky.append(FlakyItem(item_id, metric, values, agreement))
    return sorted(flaky, key=lambda f: (f.agreement, f.item_id))


def _epoch_stats(candidate: RunSnapshot, ids: list[str]) -> list[EpochStats]:
    stats = []
    for metric in candidate.binary_metrics:
        per_item = [[v for v in candidate.items[i].scores.get(metric, []) if v is not None] for i in ids]
        per_item = [values for values in per_item if values]
        k = max((len(values) for values in per_item), default=0)
        if k > 1:
            stats.append(EpochStats(metric, k, float(np.mean([np.mean(v) for v in per_item])),
                                    float(np.mean([all(x == 1.0 for x in v) for v in per_item]))))
    return stats


def _drift(signals: _Signals) -> DriftReport | None:
    """Signals that need no ground truth, on the first sample of each paired item."""
    baseline, candidate, ids = signals.baseline, signals.candidate, signals.ids
    inputs = []
    base_items, cand_items = [baseline.items[i] for i in ids], [candidate.items[i] for i in ids]
    if all(item.labels and item.labels[0] is not None for item in base_items + cand_items):
        inputs.append(DriftInput("label distribution", SignalKind.LABELS,
                                 [b.labels[0] for b in base_items], [c.labels[0] for c in cand_items], paired=True))
    for signal in DRIFT_SIGNALS:
        kind = SignalKind.CONTINUOUS if signal == "output_length" else SignalKind.RATE
        first_base = signals.matrix("baseline", signal)[:, 0]
        first_cand = signals.matrix("candidate", signal)[:, 0]
        keep = ~(np.isnan(first_base) | np.isnan(first_cand))
        base, cand = first_base[keep].tolist(), first_cand[keep].tolist()
        if len(base) >= 2:
            inputs.append(DriftInput(signal.replace("_", " "), kind, base, cand, paired=True))
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
