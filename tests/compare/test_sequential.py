"""Sequential samples: the looks use the final gate's statistic (clusters included), the look
record carries the bounds that applied, and the last look is judged at the final O'Brien-Fleming
bound, not at the fixed-sample z."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from harness.compare.paired import delta_statistics
from harness.compare.paired_binary import score_statistic, score_verdicts
from harness.compare.power import equal_looks, final_bound, plan_group_sequential
from harness.compare.sequential import SequentialMonitor, cluster_ids
from harness.compare.snapshot import Fingerprints, ItemRecord, RunSnapshot
from harness.compare.verdict import MetricPolicy, classify, clt_interval
from harness.config.suite import SuiteSpec
from tests.conftest import base_suite

MARGIN = 0.02


def test_final_bound_is_the_last_obrien_fleming_boundary() -> None:
    assert final_bound(3, 0.025) == pytest.approx(1.993, abs=5e-4)
    assert final_bound(3, 0.025) == plan_group_sequential((1 / 3, 2 / 3, 1.0), 0.025).boundaries[-1]
    assert final_bound(1, 0.025) == pytest.approx(stats.norm.isf(0.025))
    assert equal_looks(2, 0.025).boundaries == pytest.approx((2.963, 1.969), abs=5e-4)


# --- type I error of the whole design ---------------------------------------------------------


def _looks_then_final(policy: MetricPolicy, simulations: int = 400_000, per_stage: int = 300,
                      sd: float = 0.25, seed: int = 41) -> float:
    """P(success) over three looks when the true mean(d) is exactly -M.

    Normal d, simulated through its sufficient statistics per stage (stage mean, and
    sum of squares ~ sd^2 chi2(m-1)), which give exactly the mean and SE that
    `delta_statistics` computes on the raw items.  Looks 1 and 2 stop at Z >= b_k
    (success) or Z <= -b_k (failure); the last look goes through the gate's
    `clt_interval` + `classify` with `policy`, PASS or WARN counting as success.
    """
    rng = np.random.default_rng(seed)
    bounds = equal_looks(3, policy.alpha).boundaries
    stage_means = rng.normal(-MARGIN, sd / np.sqrt(per_stage), (simulations, 3))
    stage_ss = sd**2 * rng.chisquare(per_stage - 1, (simulations, 3))
    undecided = np.ones(simulations, dtype=bool)
    successes = np.zeros(simulations, dtype=bool)
    for look in range(3):
        n = per_stage * (look + 1)
        means = stage_means[:, : look + 1]
        mean = means.mean(axis=1)
        ss = stage_ss[:, : look + 1].sum(axis=1) + per_stage * ((means - mean[:, None]) ** 2).sum(axis=1)
        se = np.sqrt(ss / (n - 1) / n)
        if look < 2:
            z = (mean + MARGIN) / se
            successes |= undecided & (z >= bounds[look])
            undecided &= (z < bounds[look]) & (z > -bounds[look])
        else:
            verdicts = classify(*clt_interval(mean, se, n - 1, policy), policy.margin)
            successes |= undecided & np.isin(verdicts, ["PASS", "WARN"])
    return float(successes.mean())


def test_judging_the_last_look_at_the_final_bound_keeps_alpha() -> None:
    fixed = _looks_then_final(MetricPolicy("score", margin=MARGIN))
    sequential = _looks_then_final(MetricPolicy("score", margin=MARGIN, critical_z=final_bound(3, 0.025)))
    # Exact values (Armitage-McPherson-Rowe recursion, no futility stops): 0.0250 at the
    # final bound, 0.0268 at the fixed-sample z.  400,000 runs: simulation SE 0.00025; the
    # two share their draws, so their difference (runs ending between the two critical
    # values) is known far better, to ~0.00007.
    assert sequential <= 0.025 + 0.001
    assert fixed > 0.026, "the fixed-sample z at the last look should overspend alpha"
    assert fixed - sequential > 0.0012


def test_binary_looks_and_final_score_test_keep_alpha() -> None:
    """The same design on 0/1 scores, with the score statistic at every look (as the monitor does)."""
    rng = np.random.default_rng(42)
    simulations, per_stage, flip_rate = 200_000, 700, 0.10
    probabilities = [(flip_rate + MARGIN) / 2, (flip_rate - MARGIN) / 2, 1 - flip_rate]
    counts = rng.multinomial(per_stage, probabilities, (simulations, 3)).cumsum(axis=1)
    bounds = equal_looks(3, 0.025).boundaries

    def total_alpha(last: float) -> float:
        undecided = np.ones(simulations, dtype=bool)
        successes = np.zeros(simulations, dtype=bool)
        for look in range(2):
            z = score_statistic(counts[:, look, 0], counts[:, look, 1], per_stage * (look + 1), -MARGIN)
            successes |= undecided & (z >= bounds[look])
            undecided &= (z < bounds[look]) & (z > -bounds[look])
        final = score_verdicts(counts[:, 2, 0], counts[:, 2, 1], 3 * per_stage, MARGIN, last)
        return float((successes | (undecided & np.isin(final, ["PASS", "WARN"]))).mean())

    assert total_alpha(final_bound(3, 0.025)) <= 0.025 + 0.0015
    assert total_alpha(final_bound(3, 0.025)) < total_alpha(float(stats.norm.isf(0.025)))


# --- the monitor's looks ---------------------------------------------------------------------

FINGERPRINTS = Fingerprints(suite="demo", prompt="route@v1", prompt_fingerprint="p", target="fake",
                            model="fake-model", params={}, dataset="data", slice_fingerprint="s",
                            evaluated=["all"], harness_version="0")


def snapshot(run_id: str, scores: np.ndarray, clusters: list[str | None] | None, binary: bool) -> RunSnapshot:
    items = {
        f"item-{i:04d}": ItemRecord(slices=["all"], cluster=None if clusters is None else clusters[i],
                                    scores={"accuracy": [float(s)]}, output_sha256=[None], outputs=[None],
                                    output_lengths=[None])
        for i, s in enumerate(scores)
    }
    return RunSnapshot(run_id=run_id, fingerprints=FINGERPRINTS, metrics=["accuracy"],
                       binary_metrics=["accuracy"] if binary else [], items=items)


def monitor(baseline: RunSnapshot, higher_is_better: bool = True) -> SequentialMonitor:
    suite = base_suite()
    suite["gate"] = {"primary": [{"metric": "accuracy", "margin": MARGIN, "higher_is_better": higher_is_better}],
                     "sample": {"sequential": True, "looks": 3}}
    return SequentialMonitor(baseline, SuiteSpec.model_validate(suite))


def test_a_look_uses_the_clustered_standard_error() -> None:
    rng = np.random.default_rng(7)
    n, size = 300, 10
    document_effect = np.repeat(rng.normal(0.0, 0.08, n // size), size)  # whole documents move together
    base_scores = rng.uniform(0.3, 0.7, n)
    cand_scores = np.clip(base_scores + document_effect + rng.normal(0.0, 0.05, n), 0, 1)
    clusters = [f"doc-{i // size}" for i in range(n)]
    baseline = snapshot("base", base_scores, clusters, binary=False)
    candidate = snapshot("cand", cand_scores, clusters, binary=False)

    record = monitor(baseline).decide_look(candidate, 0).record
    [metric] = record["metrics"]
    ids = sorted(baseline.items)
    assert cluster_ids(baseline, ids) == clusters
    d = cand_scores - base_scores
    clustered = delta_statistics(d, clusters)
    naive = delta_statistics(d)
    assert metric["se"] == pytest.approx(float(clustered.se))
    assert metric["se"] > 1.5 * float(naive.se)  # so ignoring the clusters would matter
    assert metric["z"] == pytest.approx((float(clustered.mean) + MARGIN) / float(clustered.se))
    assert metric["statistic"] == "clustered CLT"


def test_items_without_a_cluster_form_their_own() -> None:
    baseline = snapshot("base", np.zeros(4), ["a", None, "a", None], binary=True)
    assert cluster_ids(baseline, sorted(baseline.items)) == ["a", "item:item-0001", "a", "item:item-0003"]
    assert cluster_ids(snapshot("b", np.zeros(3), None, binary=True), ["item-0000"]) is None


def test_binary_looks_use_the_score_statistic_and_record_the_bounds() -> None:
    n = 600
    base_scores = np.tile([1.0, 0.0], n // 2)
    cand_scores = base_scores.copy()
    cand_scores[:60:2] = 0.0  # 30 regressions, no improvements: -5 pts
    baseline = snapshot("base", base_scores, None, binary=True)
    candidate = snapshot("cand", cand_scores, None, binary=True)

    decision = monitor(baseline).decide_look(candidate, 0)
    [metric] = decision.record["metrics"]
    b1 = equal_looks(3, 0.025).boundaries[0]
    assert metric["statistic"] == "score"
    assert metric["z"] == pytest.approx(float(score_statistic(30, 0, n, -MARGIN)))
    assert metric["z"] < -b1
    assert metric["action"] == "stop: upper bound below the margin"
    assert (metric["success_bound"], metric["failure_bound"], metric["boundary"]) == pytest.approx((b1, -b1, b1))
    assert decision.stop and decision.record["decision"] == "FAILURE"

    # For a lower-is-better metric the same drop is an improvement.
    [flipped] = monitor(baseline, higher_is_better=False).decide_look(candidate, 1).record["metrics"]
    assert flipped["z"] == pytest.approx(float(score_statistic(0, 30, n, -MARGIN)))
    b2 = equal_looks(3, 0.025).boundaries[1]
    assert (flipped["success_bound"], flipped["failure_bound"]) == pytest.approx((b2, -b2))
