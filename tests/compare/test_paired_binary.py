"""Score method for paired binary scores (Nam 1997 / Tango 1998) and the exact size of the gate."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import optimize, stats

from harness.compare.paired import PairedScores, compare_paired
from harness.compare.paired_binary import CONTINUITY, restricted_mle, score_interval, score_statistic, score_verdicts
from harness.compare.verdict import MetricPolicy, Verdict, decide

Z_975 = float(stats.norm.isf(0.025))
ALPHA = 0.025


def counts_to_scores(b: int, c: int, n: int, ones: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Baseline/candidate 0/1 scores with b regressions (1 -> 0) and c improvements (0 -> 1)."""
    concordant = n - b - c
    ones = concordant // 2 if ones is None else ones
    baseline = np.array([1] * b + [0] * c + [1] * ones + [0] * (concordant - ones))
    candidate = np.array([0] * b + [1] * c + [1] * ones + [0] * (concordant - ones))
    return baseline, candidate


# --- independent check of the restricted MLE and the interval ---------------------------


def brute_force_mle(b: int, c: int, n: int, delta0: float) -> float:
    """argmax over q of b log q + c log(q + delta0) + (n-b-c) log(1 - 2q - delta0), numerically."""
    m = n - b - c
    low, high = max(0.0, -delta0), (1.0 - delta0) / 2.0

    def negative_log_likelihood(q: float) -> float:
        terms = [(b, q), (c, q + delta0), (m, 1.0 - 2.0 * q - delta0)]
        return -sum(k * math.log(max(p, 1e-300)) for k, p in terms if k)

    result = optimize.minimize_scalar(negative_log_likelihood, bounds=(low, high), method="bounded",
                                      options={"xatol": 1e-14})
    return float(result.x)


def brute_force_z(b: int, c: int, n: int, delta0: float) -> float:
    q = brute_force_mle(b, c, n, delta0)
    raw = c - b - n * delta0
    return math.copysign(max(abs(raw) - CONTINUITY, 0.0), raw) / math.sqrt(n * (2 * q + delta0 - delta0**2))


@pytest.mark.parametrize(("b", "c", "n"), [(25, 16, 400), (3, 0, 100), (0, 7, 60), (12, 30, 90), (40, 45, 100),
                                            (1, 1, 5)])
def test_restricted_mle_matches_a_numerical_maximisation(b: int, c: int, n: int) -> None:
    for delta0 in (-0.3, -0.1, -0.02, 0.01, 0.05, 0.2):
        assert restricted_mle(b, c, n, delta0) == pytest.approx(brute_force_mle(b, c, n, delta0), abs=1e-6)


@pytest.mark.parametrize(("b", "c", "n"), [(25, 16, 400), (3, 0, 100), (0, 7, 60), (12, 30, 90), (2, 3, 5)])
def test_tango_interval_matches_an_independent_inversion(b: int, c: int, n: int) -> None:
    """Bounds solve |Z| = z with Z built from the brute-force MLE, and Z is monotone."""
    lower, upper = score_interval(b, c, n, Z_975)
    estimate = (c - b) / n
    assert lower < estimate < upper
    lower_check = optimize.brentq(lambda d: brute_force_z(b, c, n, d) - Z_975, -0.999, estimate, xtol=1e-12)
    upper_check = optimize.brentq(lambda d: brute_force_z(b, c, n, d) + Z_975, estimate, 0.999, xtol=1e-12)
    assert (lower, upper) == pytest.approx((lower_check, upper_check), abs=1e-6)
    grid = np.linspace(-0.999, 0.999, 4001)
    assert np.all(np.diff(score_statistic(b, c, n, grid)) <= 0.0)


def no_flip_bound(n: int) -> float:
    """With b = c = 0 the restricted MLE is q = |delta0|, so |Z| = z solves
    (n x - 1/4)^2 = z^2 n x (1 - x) for x = |delta0|: the larger root of a quadratic."""
    a2, a1, a0 = n**2 + Z_975**2 * n, -(2 * CONTINUITY * n + Z_975**2 * n), CONTINUITY**2
    return (-a1 + math.sqrt(a1**2 - 4 * a2 * a0)) / (2 * a2)


def test_no_flips_gives_about_the_wilson_bound_and_needs_enough_items() -> None:
    for n in (1, 3, 50, 400):
        bound = no_flip_bound(n)
        assert score_interval(0, 0, n, Z_975) == pytest.approx((-bound, bound))
        assert bound >= Z_975**2 / (n + Z_975**2)  # the Wilson limit, widened by the correction
    # 213 unchanged items are needed at M = 2 pts (the uncorrected bound needed 189).
    needed = next(n for n in range(2, 400) if no_flip_bound(n) < 0.02)
    assert needed == 213
    assert score_verdicts(0, 0, needed - 1, 0.02, Z_975) == "INCONCLUSIVE"
    assert score_verdicts(0, 0, needed, 0.02, Z_975) == "PASS"


def test_all_items_flipped_and_a_single_item() -> None:
    assert score_interval(0, 5, 5, Z_975)[1] == 1.0
    assert score_interval(5, 0, 5, Z_975)[0] == -1.0
    assert score_verdicts(5, 0, 5, 0.02, Z_975) == "FAIL"
    for b, c in ((0, 0), (1, 0), (0, 1)):
        assert score_verdicts(b, c, 1, 0.02, Z_975) == "INCONCLUSIVE"
        low, high = score_interval(b, c, 1, Z_975)
        assert -1.0 <= low <= c - b <= high <= 1.0 and high - low > 1.0


# --- the gate on binary scores goes through the score method -----------------------------


def test_one_regression_in_200_items_no_longer_passes() -> None:
    """The Wald interval put the lower bound at -1.5 pts and passed; the score method does not."""
    comparison = compare_paired(PairedScores(*counts_to_scores(1, 0, 200)))
    verdict = decide(comparison, MetricPolicy("accuracy"))
    assert verdict.verdict is Verdict.INCONCLUSIVE
    assert verdict.ci_method == "Tango score"
    assert verdict.ci == pytest.approx(score_interval(1, 0, 200, Z_975))
    assert verdict.ci[0] < -0.02 < verdict.ci[1]


def test_three_unchanged_items_do_not_pass() -> None:
    same = np.array([1, 0, 1])
    verdict = decide(compare_paired(PairedScores(same, same.copy())), MetricPolicy("accuracy"))
    assert verdict.verdict is Verdict.INCONCLUSIVE
    assert verdict.items_needed == 213  # as test_no_flips_gives_about_the_wilson_bound_and_needs_enough_items
    assert "if further items do not change either" in verdict.reason


def test_lower_is_better_swaps_the_counts() -> None:
    """A refusal rate that rose on 12 items and fell on 2 is the accuracy case with b and c swapped."""
    baseline, candidate = counts_to_scores(2, 12, 300)
    policy = MetricPolicy("refusal rate", higher_is_better=False)
    verdict = decide(compare_paired(PairedScores(baseline, candidate)), policy)
    low, high = score_interval(12, 2, 300, Z_975)  # oriented: 12 items got worse
    assert verdict.ci == pytest.approx((-high, -low))
    assert verdict.verdict == score_verdicts(12, 2, 300, 0.02, Z_975)
    mirrored = decide(compare_paired(PairedScores(*counts_to_scores(12, 2, 300))), MetricPolicy("accuracy"))
    assert mirrored.verdict is verdict.verdict
    assert verdict.reason.startswith("INCONCLUSIVE: refusal rate +3.3 pts")


def test_clustered_binary_scores_keep_the_clt_interval() -> None:
    baseline, candidate = counts_to_scores(20, 10, 300)
    clusters = [i // 5 for i in range(300)]
    verdict = decide(compare_paired(PairedScores(baseline, candidate, clusters)), MetricPolicy("accuracy"))
    assert verdict.ci_method == "CLT t"


def test_decide_agrees_with_the_vectorised_verdicts() -> None:
    rng = np.random.default_rng(5)
    n = 150
    for _ in range(40):
        b = int(rng.integers(0, 15))
        c = int(rng.integers(0, 15))
        for higher in (True, False):
            policy = MetricPolicy("m", margin=0.03, higher_is_better=higher)
            verdict = decide(compare_paired(PairedScores(*counts_to_scores(b, c, n))), policy)
            worse, better = (b, c) if higher else (c, b)
            assert verdict.verdict == score_verdicts(worse, better, n, 0.03, Z_975)


# --- exact size of the non-inferiority gate ----------------------------------------------

_TAIL = 1e-12


def outcomes_at_the_margin(n: int, flip_rate: float, margin: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every (b, c) with non-negligible probability when P(b) = (f+M)/2, P(c) = (f-M)/2 (true delta = -M).

    b + c ~ Binomial(n, f) and b | b + c ~ Binomial(b + c, (f+M)/(2f)); flip totals
    beyond the 1e-12 tails on either side are left out (their mass is < 2e-12).
    """
    low, high = stats.binom.ppf([_TAIL, 1.0 - _TAIL], n, flip_rate).astype(int)
    totals = np.arange(max(low - 1, 0), min(high + 1, n) + 1)
    flips = np.repeat(totals, totals + 1)
    b = np.concatenate([np.arange(t + 1) for t in totals])
    probability = stats.binom.pmf(flips, n, flip_rate) * stats.binom.pmf(b, flips, (flip_rate + margin) / (2 * flip_rate))
    assert probability.sum() > 1.0 - 1e-10
    return b, flips - b, probability


def wald_verdicts(b: np.ndarray, c: np.ndarray, n: int, margin: float) -> np.ndarray:
    """The former gate on binary scores: t interval on d, Wilson bound when SE is 0."""
    mean = (c - b) / n
    se = np.sqrt(np.maximum(b + c - n * mean**2, 0.0) / (n * (n - 1)))
    lower = mean - stats.t.isf(ALPHA, n - 1) * se
    share = Z_975**2 / (n + Z_975**2)
    lower = np.where(se <= 1e-12, mean - share * (1.0 + mean), lower)
    return np.where(lower > -margin, "PASS", "not")


# The cells, and the cells where the uncorrected score test exceeded alpha (worst first).
CELLS = [(100, 0.03, 0.02), (200, 0.03, 0.02), (400, 0.03, 0.02), (800, 0.03, 0.02), (100, 0.05, 0.02),
         (400, 0.05, 0.02), (800, 0.05, 0.02), (50, 0.10, 0.10), (1963, 0.10, 0.02), (1000, 0.20, 0.05),
         (60, 0.15, 0.02), (2000, 0.30, 0.02), (2000, 0.30, 0.05)]


@pytest.mark.parametrize(("n", "flip_rate", "margin"), CELLS)
def test_exact_size_at_the_margin_is_at_most_alpha(n: int, flip_rate: float, margin: float) -> None:
    b, c, probability = outcomes_at_the_margin(n, flip_rate, margin)
    verdicts = score_verdicts(b, c, n, margin, Z_975)
    size = probability[np.isin(verdicts, ["PASS", "WARN"])].sum()
    assert size <= ALPHA + 1e-9


def test_the_wald_interval_exceeded_alpha_in_these_cells() -> None:
    """Documents why: exactly enumerated, the former interval passed 3.5-11% at the margin."""
    expected = {(100, 0.03, 0.02): 0.035, (200, 0.03, 0.02): 0.062, (400, 0.03, 0.02): 0.044,
                (800, 0.03, 0.02): 0.039, (50, 0.10, 0.10): 0.112}
    for (n, flip_rate, margin), size in expected.items():
        b, c, probability = outcomes_at_the_margin(n, flip_rate, margin)
        assert probability[wald_verdicts(b, c, n, margin) == "PASS"].sum() == pytest.approx(size, abs=1e-3)
