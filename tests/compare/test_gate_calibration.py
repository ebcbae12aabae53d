"""Simulated error rates of the gate: type I error, power, and the pitfalls it avoids.

Each scenario draws SIMULATIONS whole evaluations at once (arrays of shape
(simulations, items[, epochs])) and runs them through the gate's own
arithmetic (`delta_statistics` -> `clt_interval` -> `classify`, or, for 0/1
scores with one sample per item and no clusters, the discordant counts ->
`score_verdicts`).
A few draws also go through `compare_paired` + `decide` to show that the
vectorised path and the per-run path agree.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest

from harness.compare.paired import PairedScores, compare_paired, delta_statistics
from harness.compare.paired_binary import score_verdicts
from harness.compare.power import (
    ErrorRates,
    items_for_continuous,
    items_for_non_inferiority,
    items_for_paired_binary,
    items_for_paired_binary_non_inferiority,
    minimum_detectable_effect,
)
from harness.compare.verdict import MetricPolicy, Verdict, classify, clt_interval, decide

SIMULATIONS = 2000
MARGIN = 0.02
POLICY = MetricPolicy("score", margin=MARGIN)
ALPHA = POLICY.alpha  # one-sided 0.025
TOLERANCE = 0.01


@dataclass(frozen=True)
class Draw:
    """Simulated runs: scores of shape (simulations, items) or (simulations, items, epochs)."""

    baseline: np.ndarray
    candidate: np.ndarray
    cluster_ids: np.ndarray | None = None
    binary: bool = False
    """0/1 scores, one sample per item: the gate uses the score method."""

    def deltas(self) -> np.ndarray:
        base, cand = self.baseline, self.candidate
        if base.ndim == 3:  # average epochs within the item first
            base, cand = base.mean(axis=-1), cand.mean(axis=-1)
        return cand - base


def paired_binary(rng: np.random.Generator, true_delta: float, n: int = 500, flip_rate: float = 0.2) -> Draw:
    """Items flip 0->1 with prob (psi+delta)/2 and 1->0 with prob (psi-delta)/2."""
    u = rng.random((SIMULATIONS, n))
    concordant = (rng.random((SIMULATIONS, n)) < 0.7).astype(float)
    down, up = (flip_rate - true_delta) / 2, (flip_rate + true_delta) / 2
    baseline = np.where(u < down, 1.0, np.where(u < down + up, 0.0, concordant))
    candidate = np.where(u < down, 0.0, np.where(u < down + up, 1.0, concordant))
    return Draw(baseline, candidate, binary=True)


def continuous(rng: np.random.Generator, true_delta: float, n: int = 300) -> Draw:
    """Scores in [0, 1]: item difficulty plus bounded noise, no clipping needed."""
    difficulty = rng.uniform(0.2, 0.8, (SIMULATIONS, n))
    baseline = difficulty + rng.uniform(-0.15, 0.15, (SIMULATIONS, n))
    candidate = difficulty + true_delta + rng.uniform(-0.15, 0.15, (SIMULATIONS, n))
    return Draw(baseline, candidate)


def clustered_binary(rng: np.random.Generator, true_delta: float, clusters: int = 50, size: int = 10) -> Draw:
    """Whole documents tilt the same way: the flip direction depends on the cluster."""
    flip_rate, n = 0.3, clusters * size
    tilt = np.repeat(rng.uniform(-0.25, 0.25, (SIMULATIONS, clusters)), size, axis=1)
    u = rng.random((SIMULATIONS, n))
    concordant = (rng.random((SIMULATIONS, n)) < 0.7).astype(float)
    down, up = (flip_rate - true_delta - tilt) / 2, (flip_rate + true_delta + tilt) / 2
    baseline = np.where(u < down, 1.0, np.where(u < down + up, 0.0, concordant))
    candidate = np.where(u < down, 0.0, np.where(u < down + up, 1.0, concordant))
    return Draw(baseline, candidate, np.repeat(np.arange(clusters), size))


def binary_epochs(rng: np.random.Generator, true_delta: float, n: int = 400, epochs: int = 3) -> Draw:
    """K samples per item; near-deterministic items, and 20% of items change for the candidate."""
    p = rng.beta(0.3, 0.3, (SIMULATIONS, n))
    changed = rng.random((SIMULATIONS, n)) < 0.2
    q = np.where(changed, rng.beta(0.3, 0.3, (SIMULATIONS, n)), p)
    q = q * (1.0 + 2.0 * true_delta)  # E[q] = 0.5 + true_delta, still inside [0, 1]
    baseline = (rng.random((SIMULATIONS, n, epochs)) < p[..., None]).astype(float)
    candidate = (rng.random((SIMULATIONS, n, epochs)) < q[..., None]).astype(float)
    return Draw(baseline, candidate)


SCENARIOS: dict[str, Callable[[np.random.Generator, float], Draw]] = {
    "paired binary": paired_binary,
    "continuous": continuous,
    "clustered": clustered_binary,
    "epochs K=3": binary_epochs,
}


def gate_verdicts(
    deltas: np.ndarray, cluster_ids: np.ndarray | None = None, policy: MetricPolicy = POLICY, binary: bool = False
) -> np.ndarray:
    if binary and cluster_ids is None:
        worse, better = (deltas < 0).sum(axis=-1), (deltas > 0).sum(axis=-1)
        return score_verdicts(worse, better, deltas.shape[-1], policy.margin, policy.z)
    summary = delta_statistics(deltas, cluster_ids)
    lower, upper = clt_interval(summary.mean, summary.se, summary.df, policy)
    return classify(lower, upper, policy.margin)


def rate(verdicts: np.ndarray, *wanted: Verdict) -> float:
    return float(np.isin(verdicts, [v.value for v in wanted]).mean())


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_no_difference_rarely_fails_or_warns(scenario: str) -> None:
    draw = SCENARIOS[scenario](np.random.default_rng(11), 0.0)
    verdicts = gate_verdicts(draw.deltas(), draw.cluster_ids, binary=draw.binary)
    # FAIL and WARN both need "significantly worse" (upper < 0): that tail must stay near alpha.
    assert rate(verdicts, Verdict.FAIL, Verdict.WARN) <= ALPHA + TOLERANCE


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_candidate_at_the_margin_rarely_passes(scenario: str) -> None:
    """Non-inferiority type I error: true mean(d) = -M must PASS at most alpha of the time."""
    draw = SCENARIOS[scenario](np.random.default_rng(12), -MARGIN)
    pass_rate = rate(gate_verdicts(draw.deltas(), draw.cluster_ids, binary=draw.binary), Verdict.PASS)
    assert pass_rate <= ALPHA + TOLERANCE
    assert pass_rate >= ALPHA - TOLERANCE * 1.5, "far below alpha: the interval is needlessly wide"


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_per_run_path_matches_the_vectorised_one(scenario: str) -> None:
    draw = SCENARIOS[scenario](np.random.default_rng(13), -MARGIN / 2)
    batch = gate_verdicts(draw.deltas(), draw.cluster_ids, binary=draw.binary)
    for run in range(12):
        clusters = None if draw.cluster_ids is None else list(draw.cluster_ids)
        comparison = compare_paired(PairedScores(draw.baseline[run], draw.candidate[run], clusters))
        assert comparison.mean_delta == pytest.approx(draw.deltas()[run].mean())
        assert decide(comparison, POLICY).verdict == batch[run]


def test_ignoring_clusters_inflates_false_passes() -> None:
    draw = clustered_binary(np.random.default_rng(12), -MARGIN)
    naive = rate(gate_verdicts(draw.deltas(), None), Verdict.PASS)
    clustered = rate(gate_verdicts(draw.deltas(), draw.cluster_ids), Verdict.PASS)
    assert naive > 0.05
    assert clustered <= ALPHA + TOLERANCE


def test_epochs_as_items_inflate_false_positives() -> None:
    draw = binary_epochs(np.random.default_rng(14), 0.0)
    simulations, n, epochs = draw.baseline.shape
    per_epoch = (draw.candidate - draw.baseline).reshape(simulations, n * epochs)

    def two_sided_rejections(deltas: np.ndarray) -> float:
        lower, upper = delta_statistics(deltas).interval(0.95)
        return float(np.mean((lower > 0) | (upper < 0)))

    assert two_sided_rejections(per_epoch) > 0.08
    assert two_sided_rejections(draw.deltas()) <= 0.05 + TOLERANCE


# --- power at the planned n -------------------------------------------------------


def test_connor_sample_size_reaches_planned_power() -> None:
    flip_rate, effect = 0.10, 0.05
    n = items_for_paired_binary(flip_rate, effect)
    assert n == 312
    draw = paired_binary(np.random.default_rng(21), effect, n=n, flip_rate=flip_rate)
    lower, _ = delta_statistics(draw.deltas()).interval(0.95)
    assert np.mean(lower > 0) >= 0.78


def test_non_inferiority_sample_size_reaches_planned_power() -> None:
    """Binary scores are judged by the score test, so they are planned with its formula (Nam 1997)."""
    flip_rate = 0.10
    n = items_for_paired_binary_non_inferiority(flip_rate, MARGIN)
    assert n == 2030  # the Wald shortcut 7.84 * psi / M^2 gives 1963; 2005 without the continuity correction
    draw = paired_binary(np.random.default_rng(22), 0.0, n=n, flip_rate=flip_rate)
    assert rate(gate_verdicts(draw.deltas(), binary=True), Verdict.PASS) >= 0.78

    continuous_n = items_for_non_inferiority(0.25**2, MARGIN)
    deltas = np.random.default_rng(24).normal(0.0, 0.25, (SIMULATIONS, continuous_n))
    assert rate(gate_verdicts(deltas), Verdict.PASS) >= 0.78


def test_continuous_sample_size_and_mde_reach_planned_power() -> None:
    rng = np.random.default_rng(23)
    sd, effect = 0.2, 0.03
    n = items_for_continuous(sd**2, effect)
    deltas = rng.normal(effect, sd, (SIMULATIONS, n))
    lower, _ = delta_statistics(deltas).interval(0.95)
    assert np.mean(lower > 0) >= 0.78

    # The MDE at a given n is the effect that this n detects with 80% power.
    n_run = 400
    mde = minimum_detectable_effect(sd**2, n_run, ErrorRates())
    lower, _ = delta_statistics(rng.normal(mde, sd, (SIMULATIONS, n_run))).interval(0.95)
    assert 0.78 <= np.mean(lower > 0) <= 0.83
