"""Group-sequential pre-rollout samples: evaluate in stages, look after each, stop early at the
Lan-DeMets O'Brien-Fleming bounds (stopping for a clear failure saves the rest of the budget).

A look uses the statistic the final gate would use: the score statistic Z(-M) for 0/1 scores
with one sample per item and no clusters (`paired_binary`), else (mean(d) + M) / SE with the
clustered SE whenever the items carry cluster IDs.  The final look only records the statistic;
the gate then judges the whole sample with `MetricPolicy(critical_z=power.final_bound(looks,
alpha))`, since the earlier looks spent part of alpha.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.compare.baseline import baseline_path, load_baseline
from harness.compare.comparison import check_comparable, pair_items
from harness.compare.paired import PairedComparison, PairedScores, compare_paired
from harness.compare.paired_binary import score_statistic
from harness.compare.power import (
    GroupSequentialPlan,
    SequentialAction,
    equal_looks,
    non_inferiority_z,
    sequential_action,
)
from harness.compare.snapshot import RunSnapshot, snapshot_run
from harness.config.suite import GateSpec, SuiteSpec
from harness.engine.requests import WorkRequest
from harness.engine.stages import LookDecision, LookSchedule
from harness.errors import UserError
from harness.plan import RunPlan

__all__ = ["LookStatistic", "SequentialMonitor", "cluster_ids", "look_statistic"]


def cluster_ids(snapshot: RunSnapshot, ids: list[str]) -> list[str] | None:
    """Cluster ID per item as the final gate groups them: None if no item has one, and an item
    without one forms its own cluster."""
    clusters = [snapshot.items[i].cluster for i in ids]
    if all(c is None for c in clusters):
        return None
    return [c if c is not None else f"item:{i}" for c, i in zip(clusters, ids, strict=True)]


@dataclass(frozen=True)
class LookStatistic:
    """Z for H0: delta <= -M at one look, oriented so that larger favours the candidate."""

    z: float | None
    """None when nothing can be said yet (no items, or no SE outside the score method)."""
    method: str
    """"score" (paired binary, Nam/Tango), "clustered CLT", "CLT" or "none"."""


def look_statistic(comparison: PairedComparison, margin: float, higher_is_better: bool) -> LookStatistic:
    """The statistic the final gate's decision would rest on, for comparison with b_k."""
    if comparison.n == 0 or comparison.mean_delta is None:
        return LookStatistic(None, "none")
    counts = comparison.discordant
    if counts is not None and comparison.n_clusters is None:
        worse, better = (counts.b, counts.c) if higher_is_better else (counts.c, counts.b)
        return LookStatistic(float(score_statistic(worse, better, counts.n, -margin)), "score")
    if not comparison.se:
        return LookStatistic(None, "none")
    delta = comparison.mean_delta if higher_is_better else -comparison.mean_delta
    method = "CLT" if comparison.n_clusters is None else "clustered CLT"
    return LookStatistic(non_inferiority_z(delta, comparison.se, margin), method)


@dataclass(frozen=True)
class SequentialMonitor:
    baseline: RunSnapshot
    suite: SuiteSpec

    @property
    def gate(self) -> GateSpec:
        return self.suite.gate

    def stages(self, requests: list[WorkRequest]) -> list[list[WorkRequest]]:
        """The requests cut into the schedule's stages (all epochs of an item in one stage)."""
        stage_of = self.schedule([request.item.id for request in requests]).stage_of()
        stages: list[list[WorkRequest]] = [[] for _ in range(self.gate.sample.looks)]
        for request in requests:
            stages[stage_of[request.item.id]].append(request)
        return stages

    def schedule(self, item_ids: Iterable[str]) -> LookSchedule:
        """Items shuffled with the sample's seed, then cut into equal stages, so an early look sees
        a random part of the sample, not its head; with each look's Lan-DeMets O'Brien-Fleming bound."""
        items = sorted(set(item_ids))
        random.Random(self.gate.sample.seed).shuffle(items)
        looks = self.gate.sample.looks
        stages: list[list[str]] = [[] for _ in range(looks)]
        for index, item in enumerate(items):
            stages[min(looks - 1, index * looks // len(items))].append(item)
        planned = [sum(len(stage) for stage in stages[:k + 1]) for k in range(looks)]
        bounds = list(equal_looks(looks, self.gate.alpha).boundaries)
        return LookSchedule(looks=looks, alpha=self.gate.alpha, bounds=bounds, stages=stages, planned_items=planned)

    def decide(self, look: int, folder: Path, schedule: LookSchedule) -> LookDecision:
        return self.decide_look(snapshot_run(folder, failed_as_zero=self.suite.scoring.failed_as_zero), look, schedule)

    def decide_look(self, candidate: RunSnapshot, look: int, schedule: LookSchedule | None = None) -> LookDecision:
        """Look `look` (0-based) at the candidate's items so far; with a schedule, only at the items
        it planned up to this look, against its bounds (a resumed run may hold later items too).

        Each metric's record carries the bounds that applied: "success_bound" (b_k) and
        "failure_bound" (-b_k); "boundary" (= b_k) is kept for older readers.
        """
        check_comparable(self.baseline, candidate)
        planned = schedule.items_through(look) if schedule is not None else None
        ids = [i for i in pair_items(self.baseline, candidate).common
               if (planned is None or i in planned)
               and any(v is not None for v in candidate.items[i].scores.get(self.suite.gate_metrics[0].metric, []))]
        plan = _plan(schedule) if schedule is not None else equal_looks(self.gate.sample.looks, self.gate.alpha)
        looks = len(plan.boundaries)
        bound = plan.boundaries[look]
        clusters = cluster_ids(self.baseline, ids)
        metrics, actions = [], []
        for gate_metric in self.suite.gate_metrics:
            base = [self.baseline.items[i].scores[gate_metric.metric] for i in ids]
            cand = [candidate.items[i].scores[gate_metric.metric] for i in ids]
            comparison = compare_paired(PairedScores(_nan(base), _nan(cand), clusters))
            statistic = look_statistic(comparison, gate_metric.margin, gate_metric.higher_is_better)
            if statistic.z is None:
                action = SequentialAction.CONTINUE if look < looks - 1 else SequentialAction.INCONCLUSIVE
            else:
                action = sequential_action(plan, look, statistic.z)
            actions.append(action)
            metrics.append({"metric": gate_metric.metric, "n": comparison.n, "mean_delta": comparison.mean_delta,
                            "se": comparison.se, "z": statistic.z, "statistic": statistic.method,
                            "boundary": bound, "success_bound": bound, "failure_bound": -bound,
                            "action": action.value})
        stop = look < looks - 1 and (SequentialAction.FAILURE in actions
                                     or all(a == SequentialAction.SUCCESS for a in actions))
        decision = "FAILURE" if SequentialAction.FAILURE in actions else "SUCCESS" if stop else "CONTINUE"
        record: dict = {"look": look + 1, "of": looks, "items": len(ids), "stop": stop,
                        "decision": decision if look < looks - 1 else "FINAL", "metrics": metrics}
        if schedule is not None:
            record["planned_items"] = schedule.planned_items[look]
        return LookDecision(stop, record)


def _plan(schedule: LookSchedule) -> GroupSequentialPlan:
    """The stored schedule as a plan: its bounds, not those of the suite's policy as it is now."""
    total = schedule.planned_items[-1] or 1
    fractions = tuple(planned / total for planned in schedule.planned_items)
    return GroupSequentialPlan(fractions, schedule.alpha, tuple(schedule.bounds))


def _nan(rows: list[Sequence[float | None]]) -> list[list[float]]:
    return [[float("nan") if v is None else v for v in row] for row in rows]


def sequential_monitor(plan: RunPlan) -> SequentialMonitor | None:
    """With gate.sample.sequential, a --sample run is watched against the suite's baseline."""
    spec = plan.suite.spec
    if not spec.gate.sample.sequential:
        return None
    baseline = load_baseline(baseline_path(plan.suite.project_dir, spec.name, spec.gate.baseline)).snapshot
    # Checked before anything is sent: a look that cannot be compared would waste the stage.
    if baseline.fingerprints.dataset != plan.dataset.fingerprint or set(baseline.fingerprints.evaluated) != set(plan.evaluated):
        raise UserError(f"the baseline (slices {baseline.fingerprints.evaluated}, data "
                        f"{baseline.fingerprints.dataset[:12]}) does not match this run (slices {plan.evaluated}, "
                        f"data {plan.dataset.fingerprint[:12]}); a sequential sample needs a comparable baseline",
                        file=str(plan.suite.path), hint="set the baseline from a run of the same slices and data")
    return SequentialMonitor(baseline, spec)
