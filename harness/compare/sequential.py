"""Group-sequential pre-rollout samples: evaluate in stages, look after each, stop early at the
Lan-DeMets O'Brien-Fleming bounds (stopping for a clear failure saves the rest of the budget)."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from harness.compare.comparison import check_comparable, pair_items
from harness.compare.paired import PairedScores, compare_paired
from harness.compare.power import SequentialAction, non_inferiority_z, plan_group_sequential, sequential_action
from harness.compare.snapshot import RunSnapshot, snapshot_run
from harness.config.suite import GateSpec, SuiteSpec
from harness.engine.requests import WorkRequest
from harness.engine.stages import LookDecision


@dataclass(frozen=True)
class SequentialMonitor:
    baseline: RunSnapshot
    suite: SuiteSpec

    @property
    def gate(self) -> GateSpec:
        return self.suite.gate

    def stages(self, requests: list[WorkRequest]) -> list[list[WorkRequest]]:
        """Items shuffled with the sample's seed, then cut into equal stages (all epochs of an
        item in one stage), so an early look sees a random part of the sample, not its head."""
        items = sorted({r.item.id for r in requests})
        random.Random(self.gate.sample.seed).shuffle(items)
        looks = self.gate.sample.looks
        stage_of = {item: min(looks - 1, index * looks // len(items)) for index, item in enumerate(items)}
        stages: list[list[WorkRequest]] = [[] for _ in range(looks)]
        for request in requests:
            stages[stage_of[request.item.id]].append(request)
        return stages

    def decide(self, look: int, folder: Path) -> LookDecision:
        candidate = snapshot_run(folder)
        check_comparable(self.baseline, candidate)
        ids = [i for i in pair_items(self.baseline, candidate).common
               if any(v is not None for v in candidate.items[i].scores.get(self.suite.gate_metrics[0].metric, []))]
        looks = self.gate.sample.looks
        plan = plan_group_sequential(tuple((k + 1) / looks for k in range(looks)), self.gate.alpha)
        metrics, actions = [], []
        for gate_metric in self.suite.gate_metrics:
            base = [self.baseline.items[i].scores[gate_metric.metric] for i in ids]
            cand = [candidate.items[i].scores[gate_metric.metric] for i in ids]
            comparison = compare_paired(PairedScores(_nan(base), _nan(cand)))
            if comparison.mean_delta is None or not comparison.se:
                action = SequentialAction.CONTINUE if look < looks - 1 else SequentialAction.INCONCLUSIVE
                z = None
            else:
                delta = comparison.mean_delta if gate_metric.higher_is_better else -comparison.mean_delta
                z = non_inferiority_z(delta, comparison.se, gate_metric.margin)
                action = sequential_action(plan, look, z)
            actions.append(action)
            metrics.append({"metric": gate_metric.metric, "n": comparison.n, "mean_delta": comparison.mean_delta,
                            "z": z, "boundary": plan.boundaries[look], "action": action.value})
        stop = look < looks - 1 and (SequentialAction.FAILURE in actions
                                     or all(a == SequentialAction.SUCCESS for a in actions))
        decision = "FAILURE" if SequentialAction.FAILURE in actions else "SUCCESS" if stop else "CONTINUE"
        return LookDecision(stop, {"look": look + 1, "of": looks, "items": len(ids), "stop": stop,
                                   "decision": decision if look < looks - 1 else "FINAL", "metrics": metrics})


def _nan(rows: list[list[float | None]]) -> list[list[float]]:
    return [[float("nan") if v is None else v for v in row] for row in rows]
