"""Paired comparison: reference cross-checks, epochs, clusters and edge cases."""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest
import statsmodels.api as sm
from scipy import stats
from statsmodels.stats.contingency_tables import SquareTable, mcnemar

from harness.compare.paired import (
    ComparisonOptions,
    PairedScores,
    ScoreKind,
    compare_paired,
    delta_statistics,
    item_means,
    stuart_maxwell,
    wilson_interval,
)


@pytest.fixture(autouse=True)
def _warnings_are_errors():
    """Edge cases must be handled, not leak RuntimeWarnings (mean of empty slice, ...)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


def binary_runs(seed: int, n: int = 400, flip_rate: float = 0.15, true_delta: float = -0.03):
    rng = np.random.default_rng(seed)
    u = rng.random(n)
    concordant = (rng.random(n) < 0.7).astype(int)
    down, up = (flip_rate - true_delta) / 2, (flip_rate + true_delta) / 2
    baseline = np.where(u < down, 1, np.where(u < down + up, 0, concordant))
    candidate = np.where(u < down, 0, np.where(u < down + up, 1, concordant))
    return baseline, candidate


# --- reference cross-checks ------------------------------------------------------------


def test_binary_scores_use_exact_mcnemar_like_statsmodels() -> None:
    baseline, candidate = binary_runs(1)
    result = compare_paired(PairedScores(baseline, candidate))
    table = np.array(
        [
            [np.sum((baseline == 1) & (candidate == 1)), np.sum((baseline == 1) & (candidate == 0))],
            [np.sum((baseline == 0) & (candidate == 1)), np.sum((baseline == 0) & (candidate == 0))],
        ]
    )
    assert result.kind is ScoreKind.BINARY
    assert result.test_name == "exact McNemar"
    assert result.p_value == pytest.approx(mcnemar(table, exact=True).pvalue, rel=1e-12)
    assert (result.discordant.b, result.discordant.c) == (table[0, 1], table[1, 0])
    assert result.discordant.flip_rate == pytest.approx((table[0, 1] + table[1, 0]) / len(baseline))
    assert result.mean_delta == pytest.approx((table[1, 0] - table[0, 1]) / len(baseline))


def test_clt_standard_error_formula_and_correlation() -> None:
    rng = np.random.default_rng(2)
    baseline = rng.uniform(0, 1, 250)
    candidate = np.clip(baseline + rng.normal(0.01, 0.1, 250), 0, 1)
    result = compare_paired(PairedScores(baseline, candidate))
    d = candidate - baseline
    expected_se = np.sqrt(np.sum((d - d.mean()) ** 2) / (len(d) * (len(d) - 1)))
    assert result.se == pytest.approx(expected_se, rel=1e-12)
    assert result.se == pytest.approx(sm.OLS(d, np.ones(len(d))).fit().bse[0], rel=1e-10)
    assert result.correlation == pytest.approx(stats.pearsonr(baseline, candidate).statistic)
    half = stats.t.ppf(0.975, len(d) - 1) * expected_se
    assert result.ci == pytest.approx((d.mean() - half, d.mean() + half))
    assert result.mde == pytest.approx((1.959964 + 0.841621) * expected_se, rel=1e-5)


def test_clustered_se_matches_statsmodels_cluster_robust_ols() -> None:
    rng = np.random.default_rng(3)
    clusters = np.repeat(np.arange(40), rng.integers(3, 15, 40))
    n = len(clusters)
    baseline = rng.uniform(0, 1, n)
    candidate = baseline + rng.normal(0, 0.1, 40)[clusters] + rng.normal(0, 0.1, n)
    result = compare_paired(PairedScores(baseline, candidate, [f"doc-{c}" for c in clusters]))
    fit = sm.OLS(candidate - baseline, np.ones(n)).fit(cov_type="cluster", cov_kwds={"groups": clusters})
    assert result.se == pytest.approx(fit.bse[0], rel=1e-10)
    assert result.n_clusters == 40
    assert result.df == 39
    assert result.test_name == "cluster sign-flip permutation"
    # Positive intra-cluster correlation: the clustered SE is larger than the naive one.
    assert result.se > compare_paired(PairedScores(baseline, candidate)).se * 1.5


def test_one_item_per_cluster_gives_the_clt_se() -> None:
    d = np.random.default_rng(4).normal(0, 1, (3, 50))
    naive = delta_statistics(d)
    per_item = delta_statistics(d, list(range(50)))
    np.testing.assert_allclose(per_item.se, naive.se, rtol=1e-12)
    assert naive.se.shape == (3,)


def test_continuous_scores_use_wilcoxon_zsplit_from_100_items() -> None:
    rng = np.random.default_rng(5)
    baseline = rng.integers(0, 11, 150) / 10  # coarse grades: many zero differences
    candidate = np.clip(baseline + rng.integers(-1, 2, 150) / 10, 0, 1)
    result = compare_paired(PairedScores(baseline, candidate))
    assert result.kind is ScoreKind.CONTINUOUS
    assert result.test_name.startswith("Wilcoxon")
    reference = stats.wilcoxon(candidate - baseline, zero_method="zsplit")
    assert result.p_value == pytest.approx(reference.pvalue, rel=1e-12)


def test_small_n_uses_an_exact_sign_flip_permutation() -> None:
    d = np.array([0.3, 0.1, -0.05, 0.2, 0.15, 0.4, -0.1, 0.25, 0.05, 0.3])
    baseline = np.full(10, 0.5)
    result = compare_paired(PairedScores(baseline, baseline + d))
    assert result.test_name == "sign-flip permutation"
    # 2^10 = 1024 sign patterns < n_resamples, so scipy enumerates them all.
    observed = abs(d.mean())
    means = [abs(np.mean(d * np.array(signs))) for signs in itertools.product([-1, 1], repeat=10)]
    exact = np.mean(np.array(means) >= observed - 1e-12)
    assert result.p_value == pytest.approx(exact)


def test_bca_bootstrap_is_seeded_and_close_to_the_clt_interval() -> None:
    rng = np.random.default_rng(6)
    baseline = rng.uniform(0, 1, 200)
    candidate = np.clip(baseline + rng.normal(0.02, 0.1, 200), 0, 1)
    options = ComparisonOptions(bootstrap=True, n_resamples=2000, seed=7)
    first = compare_paired(PairedScores(baseline, candidate), options)
    again = compare_paired(PairedScores(baseline, candidate), options)
    assert first.bootstrap_ci == again.bootstrap_ci
    low, high = first.bootstrap_ci
    assert low < first.mean_delta < high
    clt_width = first.ci[1] - first.ci[0]
    assert high - low == pytest.approx(clt_width, rel=0.15)


def test_bootstrap_is_not_offered_for_binary_scores() -> None:
    result = compare_paired(PairedScores(*binary_runs(8)), ComparisonOptions(bootstrap=True))
    assert result.bootstrap_ci is None
    assert any("bootstrap" in note for note in result.notes)


# --- epochs ---------------------------------------------------------------------------


def test_epochs_are_averaged_within_the_item_first() -> None:
    rng = np.random.default_rng(9)
    baseline = (rng.random((120, 3)) < 0.6).astype(float)
    candidate = (rng.random((120, 3)) < 0.6).astype(float)
    by_epoch = compare_paired(PairedScores(baseline, candidate))
    by_mean = compare_paired(PairedScores(baseline.mean(axis=1), candidate.mean(axis=1)))
    assert by_epoch.n == 120
    assert by_epoch.samples_per_item == 3
    assert by_epoch.kind is ScoreKind.CONTINUOUS  # 0/1 scores, but K > 1
    assert by_epoch.se == pytest.approx(by_mean.se)
    assert by_epoch.p_value == pytest.approx(by_mean.p_value)


def test_ragged_epoch_lists_skip_nan_samples() -> None:
    baseline = [[1, 0, np.nan], [1, 1, 1], [np.nan], [0, 1]]
    candidate = [[1, 1, 0], [0, 1], [1], []]
    np.testing.assert_allclose(item_means(baseline), [0.5, 1.0, np.nan, 0.5])
    result = compare_paired(PairedScores(baseline, candidate))
    assert result.n == 2
    assert result.n_dropped_nan == 2
    assert result.baseline_mean == pytest.approx(0.75)
    assert result.candidate_mean == pytest.approx((2 / 3 + 1 / 2) / 2)
    assert result.samples_per_item == 3


def test_binary_detection() -> None:
    assert compare_paired(PairedScores([1, 0, 1, 1], [1, 1, 0, 1])).kind is ScoreKind.BINARY
    assert compare_paired(PairedScores([True, False, True], [True, True, True])).kind is ScoreKind.BINARY
    assert compare_paired(PairedScores([1, 0.5, 1], [1, 1, 0])).kind is ScoreKind.CONTINUOUS
    assert compare_paired(PairedScores([[1], [0]], [[0], [0]])).kind is ScoreKind.BINARY


# --- edge cases -----------------------------------------------------------------------


def test_no_items() -> None:
    result = compare_paired(PairedScores([], []))
    assert result.n == 0
    assert result.mean_delta is None and result.se is None and result.ci is None and result.p_value is None
    assert result.interval(0.9) is None
    assert any("no paired items" in note for note in result.notes)


def test_one_item() -> None:
    result = compare_paired(PairedScores([1.0], [0.0]))
    assert result.n == 1
    assert result.mean_delta == -1.0
    assert result.se is None and result.mde is None
    # 0/1 scores still get Tango's score interval, which needs no standard error; it is wide.
    assert result.ci_method == "Tango score" and result.ci[0] == -1.0 and result.ci[1] > 0.5
    assert result.p_value == 1.0  # one discordant pair: exact McNemar cannot reject
    assert any("no standard error" in note for note in result.notes)


def test_all_deltas_zero_collapse_the_interval_and_say_so() -> None:
    scores = np.array([0.2, 0.5, 0.9, 0.4, 0.7] * 20, dtype=float)
    result = compare_paired(PairedScores(scores, scores.copy()))
    assert result.se_is_zero
    assert result.se == 0.0
    assert result.ci == (0.0, 0.0)
    assert result.p_value == 1.0
    assert result.mde is None
    assert any("CI collapses" in note for note in result.notes)


def test_unchanged_binary_scores_keep_an_interval() -> None:
    """No flips in 100 items does not prove equality: the score interval stays open on both sides."""
    scores = np.array([1, 0, 1, 1, 0] * 20, dtype=float)
    result = compare_paired(PairedScores(scores, scores.copy()))
    assert result.se == 0.0 and result.ci_method == "Tango score"
    assert result.ci[0] == pytest.approx(-result.ci[1]) and 0.03 < result.ci[1] < 0.05


def test_nan_scores_drop_the_pair_and_are_counted() -> None:
    baseline = np.array([1.0, np.nan, 0.0, 1.0, 0.5, 0.2])
    candidate = np.array([1.0, 0.0, np.nan, 0.0, 0.7, 0.2])
    result = compare_paired(PairedScores(baseline, candidate, cluster_ids=list("aabbcc")))
    assert result.n == 4
    assert result.n_dropped_nan == 2
    assert result.mean_delta == pytest.approx((0 - 1 + 0.2 + 0) / 4)
    assert result.n_clusters == 3
    assert all(np.isfinite(x) for x in (result.se, *result.ci, result.p_value))


def test_single_cluster_has_no_standard_error() -> None:
    result = compare_paired(PairedScores([0.1, 0.5, 0.3], [0.2, 0.4, 0.9], cluster_ids=["doc"] * 3))
    assert result.se is None
    assert any("fewer than 2 clusters" in note for note in result.notes)


def test_misaligned_inputs_raise() -> None:
    with pytest.raises(ValueError, match="not aligned"):
        compare_paired(PairedScores([1, 0, 1], [1, 0]))
    with pytest.raises(ValueError, match="cluster IDs"):
        compare_paired(PairedScores([1, 0], [1, 0], cluster_ids=["a"]))


# --- labels and rates -------------------------------------------------------------------


def test_stuart_maxwell_matches_statsmodels() -> None:
    rng = np.random.default_rng(10)
    labels = np.array(["billing", "bug", "feature", "other"])
    baseline = rng.choice(labels, 500, p=[0.4, 0.3, 0.2, 0.1])
    changed = rng.random(500) < 0.2
    candidate = np.where(changed, rng.choice(labels, 500, p=[0.3, 0.3, 0.3, 0.1]), baseline)
    result = stuart_maxwell(list(baseline), list(candidate))
    table = np.array([[np.sum((baseline == a) & (candidate == b)) for b in labels] for a in labels])
    reference = SquareTable(table, shift_zeros=False).homogeneity()
    assert result.statistic == pytest.approx(reference.statistic, rel=1e-10)
    assert result.p_value == pytest.approx(reference.pvalue, rel=1e-8)
    assert result.df == 3


def test_stuart_maxwell_with_unchanged_and_disconnected_categories() -> None:
    # a<->b swap 8 vs 2 times, c<->d 5 vs 5, e never changes.
    baseline = ["a"] * 8 + ["b"] * 2 + ["c"] * 5 + ["d"] * 5 + ["e"] * 30 + ["a"] * 20
    candidate = ["b"] * 8 + ["a"] * 2 + ["d"] * 5 + ["c"] * 5 + ["e"] * 30 + ["a"] * 20
    result = stuart_maxwell(baseline, candidate)
    # Independent blocks: the statistic is the sum of McNemar chi-squares, one df each.
    assert result.statistic == pytest.approx((8 - 2) ** 2 / 10 + 0.0)
    assert result.df == 2
    assert result.p_value == pytest.approx(stats.chi2.sf(3.6, 2))
    assert stuart_maxwell(["x", "y"], ["x", "y"]).p_value == 1.0


def test_wilson_interval() -> None:
    reference = stats.binomtest(7, 40).proportion_ci(0.95, method="wilson")
    assert wilson_interval(7, 40) == pytest.approx((reference.low, reference.high))
    z = stats.norm.isf(0.025)
    assert wilson_interval(0, 50)[1] == pytest.approx(z**2 / (50 + z**2))
    assert wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError):
        wilson_interval(5, 3)


def test_a_constant_shift_with_rounding_noise_counts_as_zero_variance() -> None:
    baseline = np.linspace(0.05, 0.85, 60)
    result = compare_paired(PairedScores(baseline, baseline + 0.1))
    assert result.se_is_zero
    assert result.mean_delta == pytest.approx(0.1)
    assert result.mde is None
