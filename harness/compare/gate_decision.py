"""The gate's decision on a comparison, as the versioned record written to the run folder."""

from __future__ import annotations

import json
import math
from typing import Any

from harness.collector import collector_paused
from harness.compare.baseline import current_user
from harness.compare.comparison import ComparisonReport, compare, report_json
from harness.compare.sources import ComparisonInputs, SourceOptions, load_inputs
from harness.compare.verdict import Verdict, metric_reason
from harness.errors import UserError
from harness.runs.gate_record import (
    ConfigFingerprints,
    DriftAlarm,
    GateRecord,
    GuardrailReason,
    MetricReason,
    render_reasons,
)
from harness.runs.manifest import Manifest, now_iso, read_manifest

NO_RECORDED_POLICY = ("the run did not record its policy (it was started before runs recorded their gate policy), "
                      "so it could not be checked against the one in force when the run started")


def judge(candidate_run: str, options: SourceOptions) -> tuple[ComparisonInputs, ComparisonReport, GateRecord]:
    """Compare the run with its baseline and decide the gate, as `evalbatch gate` does; nothing is written."""
    # Reading two large runs allocates millions of objects that all live until the comparison is
    # made (they form no cycles): collections would walk them again and again.
    with collector_paused():
        inputs = load_inputs(candidate_run, options)
        report = compare(inputs.baseline, inputs.candidate, inputs.gate, inputs.baseline_label)
    return inputs, report, decide_gate(inputs, report)


def decide_gate(inputs: ComparisonInputs, report: ComparisonReport) -> GateRecord:
    """The record of `report`'s verdict with what it was decided against; nothing is written."""
    manifest = read_manifest(inputs.candidate_folder)
    metrics = _metric_reasons(report, _items_available(inputs, manifest))
    record = GateRecord(
        suite=manifest.suite, run_id=manifest.run_id, target=inputs.candidate.fingerprints.target,
        decided_at=now_iso(), decided_by=current_user(), baseline=inputs.baseline_ref,
        policy_fingerprint=inputs.gate.fingerprint, candidate=ConfigFingerprints.of_manifest(manifest),
        verdict=report.gate.verdict, metrics=metrics, guardrails=_guardrail_reasons(report),
        slice_warnings=_slice_warnings(report), drift_alarms=_drift_alarms(report),
        notes=[*report.notes, *_look_notes(manifest)], comparison=report_json(report))
    record = record.model_copy(update={"reasons": render_reasons(record)})
    return _hold_to_finished_items(inputs, manifest, record)


def _hold_to_finished_items(inputs: ComparisonInputs, manifest: Manifest, record: GateRecord) -> GateRecord:
    """A gate cannot pass on part of a run: items that never finished could be exactly the ones that
    got worse. Only a sequential design's own stop may leave items unsent."""
    unfinished = inputs.candidate.unfinished_items
    if not unfinished or manifest.status == "stopped_early" or record.verdict not in (Verdict.PASS, Verdict.WARN):
        return record
    reason = (f"{Verdict.INCONCLUSIVE}: {unfinished} item(s) of the run never finished (status {manifest.status}); "
              f"a gate cannot pass on part of a run: finish it (evalbatch run SUITE --resume {manifest.run_id}) "
              "and gate it again")
    return record.model_copy(update={"verdict": Verdict.INCONCLUSIVE, "reasons": [reason, *record.reasons],
                                     "notes": [reason, *record.notes]})


def hold_to_run_policy(inputs: ComparisonInputs, record: GateRecord, policy_changed: str | None) -> GateRecord:
    """`record`, checked against the gate policy the run recorded when it started: the policy is
    fixed before the data is seen, so a gate under another policy (a margin loosened after an
    INCONCLUSIVE) is refused unless `policy_changed` says why, which the record then keeps."""
    if policy_changed is not None and not policy_changed.strip():
        raise UserError("--policy-changed needs a reason", hint="--policy-changed \"the margin was agreed with ...\"")
    recorded = read_manifest(inputs.candidate_folder).gate_policy
    if recorded is None:
        return record.model_copy(update={"notes": [*record.notes, NO_RECORDED_POLICY]})
    update: dict[str, Any] = {"run_policy_fingerprint": recorded.fingerprint}
    if recorded.fingerprint == inputs.gate.fingerprint:
        if policy_changed is not None:
            update["notes"] = [*record.notes, "--policy-changed was given, but the gate policy is the one the run "
                               "started with: nothing changed, nothing recorded"]
        return record.model_copy(update=update)
    differences = policy_differences(recorded.policy, inputs.gate.model_dump(mode="json")) or [
        f"gate (fingerprint): {recorded.fingerprint[:12]} when the run started, {inputs.gate.fingerprint[:12]} now"]
    if policy_changed is None:
        raise UserError(f"the suite's gate policy changed since run {record.run_id} started: " + "; ".join(differences),
                        file=str(inputs.suite.path), location="gate",
                        hint="the policy is fixed before the data is seen: restore it, or decide under the new one "
                             "with --policy-changed \"why\" (the reason is kept in the gate record)")
    update["policy_changed"] = policy_changed
    update["notes"] = [*record.notes, "decided under a gate policy changed since the run started ("
                       + "; ".join(differences) + f"): {policy_changed}"]
    return record.model_copy(update=update)


def policy_differences(started: Any, now: Any, where: str = "gate") -> list[str]:
    """One line per changed setting, e.g. `gate.primary.0.margin: 0.02 when the run started, 0.05 now`."""
    if isinstance(started, dict) and isinstance(now, dict):
        return [line for key in sorted(started.keys() | now.keys())
                for line in policy_differences(started.get(key, _ABSENT), now.get(key, _ABSENT), f"{where}.{key}")]
    if isinstance(started, list) and isinstance(now, list) and len(started) == len(now):
        return [line for index, (old, new) in enumerate(zip(started, now, strict=True))
                for line in policy_differences(old, new, f"{where}.{index}")]
    if started == now:
        return []
    return [f"{where}: {_setting(started)} when the run started, {_setting(now)} now"]


_ABSENT = object()


def _setting(value: Any) -> str:
    return "not set" if value is _ABSENT else json.dumps(value)


def _number(value: float | None) -> float | None:
    """NaN has no JSON form; it means the same as no value here."""
    return None if value is None or math.isnan(value) else float(value)


def _metric_reasons(report: ComparisonReport, items_available: int) -> list[MetricReason]:
    return [metric_reason(verdict, metric, report.slice_label, items_available)
            for metric, verdict in zip(report.primary_metrics, report.gate.metrics, strict=True)]


def _items_available(inputs: ComparisonInputs, manifest: Manifest) -> int:
    """Items the evaluated slices hold: the population a --sample was drawn from, as the run
    recorded it. Runs that did not record it (a --limit, older runs) counted only the items they
    evaluated; the baseline is usually a full run of the same slices, so the larger of the two
    stands in for it."""
    if manifest.dataset.population is not None:
        return manifest.dataset.population
    return max(manifest.dataset.item_count, len(inputs.baseline.items))


def _guardrail_reasons(report: ComparisonReport) -> list[GuardrailReason]:
    return [GuardrailReason(name=result.metric, metric=result.metric, mean_delta=_number(result.comparison.mean_delta),
                            test=result.comparison.test_name, p=_number(result.comparison.p_value),
                            adjusted_p=outcome.adjusted_p, worsened=outcome.check.worsened,
                            alarmed=outcome.alarmed, blocking=outcome.check.blocking)
            for result, outcome in zip(report.guardrail_results, report.gate.guardrails, strict=True)]


def _slice_warnings(report: ComparisonReport) -> list[GuardrailReason]:
    return [GuardrailReason(name=subset.subset, metric=subset.metric, mean_delta=_number(subset.comparison.mean_delta),
                            test=subset.comparison.test_name, p=_number(subset.comparison.p_value),
                            adjusted_p=outcome.adjusted_p, worsened=outcome.check.worsened, alarmed=True)
            for subset, outcome in zip(report.subsets, report.gate.slices, strict=True) if outcome.alarmed]


def _drift_alarms(report: ComparisonReport) -> list[DriftAlarm]:
    if report.drift is None:
        return []
    return [DriftAlarm(signal=signal.name, test=signal.test_name, adjusted_p=_number(signal.adjusted_p),
                       effect_name=signal.effect_name, effect=signal.effect, threshold=signal.effect_threshold)
            for signal in report.drift.alarms]


def _look_notes(manifest: Manifest) -> list[str]:
    return [f"sequential sample stopped early at look {look['look']}/{look['of']} ({look['items']} items): "
            f"{look['decision']}" for look in manifest.looks if look["stop"]]
