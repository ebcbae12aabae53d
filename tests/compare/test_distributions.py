"""The distribution functions a comparison uses without importing scipy.stats give scipy.stats's
numbers; and a comparison whose tests need none of scipy.stats does not import it."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from scipy import stats
from scipy.spatial.distance import jensenshannon

from harness.compare import distributions as dist
from harness.compare.drift import _js_distance, _wasserstein
from harness.compare.paired_binary import score_interval, score_statistic


def test_quantiles_and_tails_match_scipy_stats() -> None:
    q = np.array([1e-9, 0.001, 0.025, 0.05, 0.2, 0.5, 0.8, 0.975, 0.999])
    x = np.linspace(-8.0, 8.0, 41)
    np.testing.assert_allclose(dist.norm_isf(q), stats.norm.isf(q), rtol=1e-14)
    np.testing.assert_allclose(dist.norm_ppf(q), stats.norm.ppf(q), rtol=1e-14)
    np.testing.assert_allclose(dist.norm_sf(x), stats.norm.sf(x), rtol=1e-14)
    np.testing.assert_allclose(dist.norm_cdf(x), stats.norm.cdf(x), rtol=1e-14)
    np.testing.assert_allclose(dist.norm_pdf(x, loc=0.3, scale=1.7), stats.norm.pdf(x, loc=0.3, scale=1.7), rtol=1e-13)
    for df in (1, 2, 5, 29, 999, 99_999):
        np.testing.assert_allclose(dist.t_ppf(q, df), stats.t.ppf(q, df), rtol=1e-12)
        np.testing.assert_allclose(dist.t_isf(q, df), stats.t.isf(q, df), rtol=1e-12)
        np.testing.assert_allclose(dist.chi2_sf(np.abs(x) * 3, df), stats.chi2.sf(np.abs(x) * 3, df), rtol=1e-12)


def test_wilson_and_benjamini_hochberg_match_scipy_stats() -> None:
    rng = np.random.default_rng(0)
    for n in (1, 2, 7, 50, 1000, 100_000):
        for k in {0, 1, n // 3, n - 1, n}:
            for level in (0.9, 0.95, 0.99):
                expected = stats.binomtest(k, n).proportion_ci(confidence_level=level, method="wilson")
                assert dist.wilson_interval(k, n, level) == pytest.approx((expected.low, expected.high), abs=1e-14)
    for size in (1, 2, 5, 40):
        p = rng.random(size) ** 3
        np.testing.assert_allclose(dist.bh_adjusted(p), stats.false_discovery_control(p), rtol=1e-14)
    assert dist.bh_adjusted([]).size == 0


def test_exact_mcnemar_matches_binomtest() -> None:
    assert dist.mcnemar_exact_p(0, 0) == 1.0
    for b, c in ((0, 1), (1, 1), (3, 9), (9, 3), (10, 10), (0, 25), (150, 190), (301, 0), (4999, 5090)):
        assert dist.mcnemar_exact_p(b, c) == pytest.approx(stats.binomtest(c, b + c, 0.5).pvalue, rel=1e-9, abs=1e-300)


def test_wilcoxon_zsplit_matches_scipy() -> None:
    rng = np.random.default_rng(2)
    cases = [rng.integers(-3, 4, n) / 10 for n in (14, 15, 60, 150, 5000)]  # zeros and ties
    cases += [rng.normal(0.1, 1, 200).round(1), np.r_[rng.normal(0, 1, 30), 0.0], rng.normal(0, 1, 40),
              rng.integers(-2, 3, 10).astype(float), np.r_[np.zeros(20), 1.0, 2.0, -1.0]]
    for d in cases:
        if np.any(d != 0):
            expected = stats.wilcoxon(d, zero_method="zsplit").pvalue
            assert dist.wilcoxon_zsplit_p(d) == pytest.approx(expected, rel=1e-12, abs=1e-300)


def test_distances_match_scipy() -> None:
    rng = np.random.default_rng(1)
    for _ in range(20):
        a, b = rng.integers(0, 9, rng.integers(1, 40)).astype(float), rng.normal(3, 2, rng.integers(1, 30))
        assert _wasserstein(a, b) == pytest.approx(stats.wasserstein_distance(a, b), rel=1e-12, abs=1e-14)
        counts = rng.integers(0, 20, (2, 5)).astype(float) + [[1], [0]]
        expected = np.nan_to_num(jensenshannon(counts[0] / counts[0].sum(), counts[1] / counts[1].sum(), base=2))
        assert float(_js_distance(counts[0], counts[1])) == pytest.approx(expected, abs=1e-12)


def test_score_interval_by_bisection_matches_brentq() -> None:
    from scipy import optimize

    for b, c, n in ((0, 0, 1), (0, 0, 100), (3, 9, 50), (30, 2, 200), (0, 5, 5), (5, 0, 5), (12, 11, 4000)):
        estimate = (c - b) / n
        z = float(stats.norm.isf(0.025))

        def excess(delta0: float, target: float, counts: tuple[int, int, int] = (b, c, n)) -> float:
            return float(score_statistic(*counts, delta0)) - target

        low = -1.0 if estimate <= -1.0 else optimize.brentq(excess, -1.0, estimate, args=(z,), xtol=1e-12)
        high = 1.0 if estimate >= 1.0 else optimize.brentq(excess, estimate, 1.0, args=(-z,), xtol=1e-12)
        assert score_interval(b, c, n, z) == pytest.approx((low, high), abs=3e-12)


def test_a_comparison_with_nothing_for_scipy_stats_to_test_does_not_import_it() -> None:
    code = """
import sys
import numpy as np
from harness.compare.paired import PairedScores, compare_paired
from harness.compare.drift import DriftInput, SignalKind, check_drift
same = np.r_[np.ones(60), np.zeros(40)]
compare_paired(PairedScores(same, same.copy(), [f"c{i % 7}" for i in range(100)]))
compare_paired(PairedScores(same, same.copy()))
check_drift([DriftInput("labels", SignalKind.LABELS, ["a", "b"] * 50, ["a", "b"] * 50, paired=True),
             DriftInput("length", SignalKind.CONTINUOUS, np.arange(100.0), np.arange(100.0), paired=True)])
print(sorted(m for m in ("scipy.stats", "scipy.optimize", "scipy.spatial") if m in sys.modules))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
