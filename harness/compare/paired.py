"""Paired comparison of a baseline and a candidate run on the same items.

The caller aligns both runs by item ID.  Each item may carry K samples
(epochs); they are averaged within the item first, because treating epochs as
items understates the variance (docs/statistics.md, "Unit of analysis").
Items that share a source carry a cluster ID and get a clustered SE.

The confidence interval is the CLT interval mean(d) +- t_{df} * SE.  The t
quantile (df = n-1, or C-1 with clusters) instead of z is a small-sample
guard: at n >= 100 the two differ by < 1%, while at a few dozen items or
clusters the z interval undercovers.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from harness.compare.distributions import chi2_sf, mcnemar_exact_p, norm_isf, t_ppf, wilcoxon_zsplit_p
from harness.compare.distributions import wilson_interval as _wilson
from harness.compare.paired_binary import score_interval
from harness.compare.power import ErrorRates, minimum_detectable_effect
from harness.compare.sign_flip import sign_flip_p

__all__ = [
    "ScoreKind",
    "ScoreInput",
    "PairedScores",
    "ComparisonOptions",
    "DiscordantPairs",
    "DeltaStatistics",
    "PairedComparison",
    "delta_statistics",
    "cluster_codes",
    "item_means",
    "compare_paired",
    "LabelShiftTest",
    "stuart_maxwell",
    "wilson_interval",
]

ScoreInput = np.ndarray | Sequence[float] | Sequence[Sequence[float]]
"""Scores per item: 1-D (one sample), 2-D (n items x K epochs) or ragged lists."""


class ScoreKind(StrEnum):
    """How the scores look, which decides the secondary test."""

    BINARY = "binary"
    """Every item has one sample per run and all scores are 0 or 1."""
    CONTINUOUS = "continuous"
    """Anything else, including epoch-averaged binary scores."""


@dataclass(frozen=True)
class PairedScores:
    """Baseline and candidate scores aligned by item (same order, same length)."""

    baseline: ScoreInput
    candidate: ScoreInput
    cluster_ids: Sequence[Hashable] | np.ndarray | None = None
    """Optional source ID per item (document, conversation) for clustered SEs. IDs are told apart
    as text; an integer array is taken as cluster codes as they are (no text conversion)."""


@dataclass(frozen=True)
class ComparisonOptions:
    """Knobs for `compare_paired`; the defaults match docs/statistics.md."""

    ci_level: float = 0.95
    """Two-sided confidence level of the reported interval."""
    mde_rates: ErrorRates = ErrorRates(alpha=0.05, power=0.8, two_sided=True)
    """Error rates for the minimum detectable effect at the n actually run."""
    bootstrap: bool = False
    """Also compute a paired BCa bootstrap CI (continuous scores, no clusters)."""
    n_resamples: int = 9999
    """Resamples for the bootstrap and the permutation tests."""
    seed: int = 0
    """Seed for the bootstrap and permutation tests, so reports are reproducible."""
    permutation_below_n: int = 100
    """Continuous scores with fewer items use a sign-flip permutation test instead of Wilcoxon."""


@dataclass(frozen=True)
class DiscordantPairs:
    """McNemar counts for binary scores."""

    b: int
    """Items the baseline got right and the candidate got wrong (regressions)."""
    c: int
    """Items the baseline got wrong and the candidate got right (improvements)."""
    n: int

    @property
    def flip_rate(self) -> float:
        """psi: share of items whose score differs between the runs."""
        return (self.b + self.c) / self.n if self.n else 0.0


@dataclass(frozen=True)
class DeltaStatistics:
    """Mean paired difference and its SE, computed along the last axis.

    Works on a single run (shape (n,)) or a batch of simulated runs
    (shape (runs, n)), so that simulations use exactly the gate's arithmetic.
    """

    mean: np.ndarray
    se: np.ndarray
    df: int
    """Degrees of freedom for the t quantile: n-1, or C-1 with C clusters."""

    def interval(self, level: float) -> tuple[np.ndarray, np.ndarray]:
        """Two-sided CLT interval mean +- t_{df, (1+level)/2} * SE."""
        half_width = t_ppf(0.5 + level / 2.0, self.df) * self.se
        return self.mean - half_width, self.mean + half_width


def delta_statistics(deltas: np.ndarray, cluster_ids: Sequence[Hashable] | np.ndarray | None = None
                     ) -> DeltaStatistics:
    """Mean of d along the last axis with the CLT or clustered SE.

    Clustered: SE^2 = C/(C-1) * sum_c (sum_{i in c} (d_i - mean))^2 / n^2, the
    same as statsmodels OLS(d, ones).fit(cov_type='cluster'); with one item per
    cluster it reduces to the CLT sum((d_i - mean)^2) / (n(n-1)).
    Needs n >= 2 (and C >= 2 with clusters).
    """
    d = np.asarray(deltas, dtype=float)
    n = d.shape[-1]
    mean = d.mean(axis=-1)
    residuals = d - mean[..., None]
    if cluster_ids is None:
        if n < 2:
            raise ValueError("need at least 2 items for a standard error")
        variance = (residuals**2).sum(axis=-1) / (n * (n - 1))
        return DeltaStatistics(mean, np.sqrt(variance), n - 1)
    codes = cluster_codes(cluster_ids)
    n_clusters = int(codes.max()) + 1 if n else 0
    if n_clusters < 2:
        raise ValueError("need at least 2 clusters for a clustered standard error")
    # Summed per cluster with bincount, one row of residuals after another: a dense n x C
    # membership matrix was 800 MB for 100,000 items in 1,000 clusters.
    rows = residuals.reshape(-1, n)
    offsets = (np.arange(rows.shape[0])[:, None] * n_clusters + codes[None, :]).ravel()
    cluster_sums = np.bincount(offsets, weights=rows.ravel(), minlength=rows.shape[0] * n_clusters).reshape(
        *residuals.shape[:-1], n_clusters)
    variance = n_clusters / (n_clusters - 1) * (cluster_sums**2).sum(axis=-1) / n**2
    return DeltaStatistics(mean, np.sqrt(variance), n_clusters - 1)


def cluster_codes(cluster_ids: Sequence[Hashable] | np.ndarray) -> np.ndarray:
    """Cluster numbers 0..C-1 in the sorted order of the IDs as text; integer codes (already
    numbered in that order) are renumbered without going through text, which for 100,000 items
    is most of a comparison's cluster work."""
    if isinstance(cluster_ids, np.ndarray) and np.issubdtype(cluster_ids.dtype, np.integer):
        return np.unique(cluster_ids, return_inverse=True)[1].reshape(-1)
    return np.unique(np.asarray(cluster_ids, dtype=object).astype(str), return_inverse=True)[1].reshape(-1)


@dataclass(frozen=True)
class _ItemScores:
    means: np.ndarray
    """Mean of the non-NaN samples per item; NaN when an item has none."""
    single_sample: bool
    """Every item has exactly one sample."""
    max_samples: int


def item_means(scores: ScoreInput) -> np.ndarray:
    """Per-item mean over epochs, ignoring NaN samples; NaN if an item has none."""
    return _item_scores(scores).means


def _item_scores(scores: ScoreInput) -> _ItemScores:
    if len(scores) == 0:
        return _ItemScores(np.zeros(0), True, 1)
    if isinstance(scores, np.ndarray) and scores.ndim in (1, 2):
        matrix = scores.astype(float).reshape(len(scores), -1)
    elif all(isinstance(s, Sequence | np.ndarray) and not isinstance(s, str) for s in scores):
        rows = [np.atleast_1d(np.asarray(s, dtype=float)) for s in scores]
        matrix = np.full((len(rows), max(len(row) for row in rows)), np.nan)
        for index, samples in enumerate(rows):
            matrix[index, : len(samples)] = samples
    else:
        matrix = np.asarray(scores, dtype=float).reshape(len(scores), -1)
    valid = ~np.isnan(matrix)
    counts = valid.sum(axis=1)
    sums = np.where(valid, matrix, 0.0).sum(axis=1)
    means = np.divide(sums, counts, out=np.full(len(counts), np.nan), where=counts > 0)
    return _ItemScores(means, bool(np.all(counts <= 1)), int(matrix.shape[1]) if matrix.size else 1)


@dataclass(frozen=True)
class PairedComparison:
    """Result of comparing candidate with baseline on the same items.

    Quantities that are undefined for the data at hand (a mean with n = 0, an
    SE with n < 2, a correlation when one run is constant) are None, never a
    silent NaN; `notes` says why.
    """

    n: int
    """Items used (both runs have at least one non-NaN sample)."""
    n_dropped_nan: int
    """Items dropped because one run had no valid score for them."""
    kind: ScoreKind
    samples_per_item: int
    """Largest number of epochs seen for an item (1 = single sample)."""
    scores_in_unit_interval: bool
    """All scores lie in [0, 1], so each item's d lies in [-1, 1]."""
    baseline_mean: float | None
    candidate_mean: float | None
    mean_delta: float | None
    """mean(d), d_i = candidate_i - baseline_i (positive = candidate higher)."""
    se: float | None
    """CLT SE of mean(d), or the clustered SE when clusters were given."""
    df: int | None
    ci_level: float
    ci: tuple[float, float] | None
    """The interval for mean(d): Tango's score interval for single 0/1 scores without clusters
    (a CLT interval is too narrow when few items change), else the CLT one (see `ci_method`)."""
    correlation: float | None
    """Pearson correlation of the two runs' item scores."""
    mde: float | None
    """Minimum detectable effect at this n (ComparisonOptions.mde_rates)."""
    test_name: str
    p_value: float | None
    """Two-sided p of the secondary test named in `test_name`."""
    discordant: DiscordantPairs | None
    """b, c and the flip rate, for binary scores."""
    n_clusters: int | None
    bootstrap_ci: tuple[float, float] | None
    se_is_zero: bool
    """Every item has the same d, so the CLT interval collapses to a point."""
    notes: tuple[str, ...]
    ci_method: str = "CLT t"

    @property
    def variance_per_item(self) -> float | None:
        """n * SE^2: var(d), inflated by the design effect when clustered."""
        return None if self.se is None else self.n * self.se**2

    def interval(self, level: float) -> tuple[float, float] | None:
        """CLT interval at another two-sided level (same SE and df)."""
        if self.se is None or self.mean_delta is None or self.df is None:
            return None
        lower, upper = DeltaStatistics(np.asarray(self.mean_delta), np.asarray(self.se), self.df).interval(level)
        return float(lower), float(upper)


def compare_paired(scores: PairedScores, options: ComparisonOptions = ComparisonOptions()) -> PairedComparison:
    """Compare candidate with baseline item by item.

    Drops items where either run has no valid (non-NaN) score and counts them.
    Never raises for n = 0, n = 1 or all-equal deltas; see `notes`.
    """
    base = _item_scores(scores.baseline)
    cand = _item_scores(scores.candidate)
    if len(base.means) != len(cand.means):
        raise ValueError(f"runs not aligned: {len(base.means)} baseline vs {len(cand.means)} candidate items")
    clusters = None if scores.cluster_ids is None else cluster_codes(scores.cluster_ids)
    if clusters is not None and len(clusters) != len(base.means):
        raise ValueError(f"{len(clusters)} cluster IDs for {len(base.means)} items")

    keep = ~(np.isnan(base.means) | np.isnan(cand.means))
    n_dropped = int((~keep).sum())
    b, c = base.means[keep], cand.means[keep]
    paired = _Paired(c - b, None if clusters is None else clusters[keep])
    values = np.concatenate([b, c])
    binary = paired.n > 0 and base.single_sample and cand.single_sample and bool(np.all((values == 0) | (values == 1)))
    notes = [f"dropped {n_dropped} item(s) with no valid score in one run"] if n_dropped else []

    uncertainty = _uncertainty(paired, options, notes)
    test = _secondary_test(paired, binary, options)
    score_ci = binary and paired.clusters is None
    if score_ci:
        critical = float(norm_isf((1.0 - options.ci_level) / 2.0))
        interval = score_interval(int(np.sum(paired.d < 0)), int(np.sum(paired.d > 0)), paired.n, critical)
        uncertainty = dataclasses.replace(uncertainty, ci=interval)
    return PairedComparison(
        n=paired.n,
        n_dropped_nan=n_dropped,
        kind=ScoreKind.BINARY if binary else ScoreKind.CONTINUOUS,
        samples_per_item=max(base.max_samples, cand.max_samples),
        scores_in_unit_interval=bool(np.all((values >= 0.0) & (values <= 1.0))),
        baseline_mean=float(b.mean()) if paired.n else None,
        candidate_mean=float(c.mean()) if paired.n else None,
        mean_delta=float(paired.d.mean()) if paired.n else None,
        se=uncertainty.se,
        df=uncertainty.df,
        ci_level=options.ci_level,
        ci=uncertainty.ci,
        correlation=_correlation(b, c, notes),
        mde=uncertainty.mde,
        test_name=test.name,
        p_value=test.p_value,
        discordant=DiscordantPairs(int(np.sum(paired.d < 0)), int(np.sum(paired.d > 0)), paired.n) if binary else None,
        n_clusters=paired.n_clusters,
        bootstrap_ci=_bootstrap_ci(b, c, not binary and paired.clusters is None, options, notes),
        se_is_zero=uncertainty.se_is_zero,
        notes=tuple(notes),
        ci_method="Tango score" if score_ci else "CLT t",
    )


@dataclass(frozen=True)
class _Paired:
    """Differences d_i of the items kept, with their cluster codes (`cluster_codes`)."""

    d: np.ndarray
    clusters: np.ndarray | None

    @property
    def n(self) -> int:
        return len(self.d)

    @property
    def n_clusters(self) -> int | None:
        return None if self.clusters is None else len(np.unique(self.clusters))


@dataclass(frozen=True)
class _Uncertainty:
    se: float | None = None
    df: int | None = None
    ci: tuple[float, float] | None = None
    mde: float | None = None
    se_is_zero: bool = False


@dataclass(frozen=True)
class _SecondaryTest:
    name: str
    p_value: float | None


def _correlation(b: np.ndarray, c: np.ndarray, notes: list[str]) -> float | None:
    if len(b) < 2:
        return None
    if np.ptp(b) == 0.0 or np.ptp(c) == 0.0:
        notes.append("correlation undefined: a run has the same score on every item")
        return None
    return float(np.corrcoef(b, c)[0, 1])


def _uncertainty(paired: _Paired, options: ComparisonOptions, notes: list[str]) -> _Uncertainty:
    if paired.n == 0:
        notes.append("no paired items: nothing to compare")
        return _Uncertainty()
    if paired.n < 2:
        notes.append("one paired item: no standard error")
        return _Uncertainty()
    if paired.n_clusters is not None and paired.n_clusters < 2:
        notes.append("fewer than 2 clusters: no clustered standard error")
        return _Uncertainty()
    summary = delta_statistics(paired.d, paired.clusters)
    se = float(summary.se)
    lower, upper = summary.interval(options.ci_level)
    # Equal differences leave rounding noise (~1e-17), not a real spread.
    se_is_zero = se <= 1e-12 * max(1.0, float(np.max(np.abs(paired.d))))
    if se_is_zero:
        notes.append(f"all {paired.n} items (or clusters) have the same difference: SE is 0 and the CI collapses")
        # An MDE of 0 would promise what the data cannot show.
        return _Uncertainty(se, summary.df, (float(lower), float(upper)), None, True)
    mde = minimum_detectable_effect(paired.n * se**2, paired.n, options.mde_rates)
    return _Uncertainty(se, summary.df, (float(lower), float(upper)), mde, False)


def _secondary_test(paired: _Paired, binary: bool, options: ComparisonOptions) -> _SecondaryTest:
    """Two-sided p of the test that fits the scores (docs/statistics.md table)."""
    if paired.n == 0:
        return _SecondaryTest("none", None)
    if paired.clusters is not None:
        # Item-level tests assume independent items; flipping the sign of
        # whole clusters keeps the within-cluster dependence intact.
        _, codes = np.unique(paired.clusters, return_inverse=True)
        totals = np.bincount(codes, weights=paired.d)
        return _SecondaryTest("cluster sign-flip permutation", _sign_flip_p(totals, options))
    if not np.any(paired.d != 0.0):
        return _SecondaryTest("none (all differences are zero)", 1.0)
    if binary:
        b, c = int(np.sum(paired.d < 0)), int(np.sum(paired.d > 0))
        return _SecondaryTest("exact McNemar", mcnemar_exact_p(b, c))
    if paired.n < options.permutation_below_n:
        return _SecondaryTest("sign-flip permutation", _sign_flip_p(paired.d, options))
    return _SecondaryTest("Wilcoxon signed-rank (zsplit)", wilcoxon_zsplit_p(paired.d))


def _sign_flip_p(values: np.ndarray, options: ComparisonOptions) -> float:
    return sign_flip_p(values, options.n_resamples, options.seed)


def _bootstrap_ci(
    baseline: np.ndarray, candidate: np.ndarray, eligible: bool, options: ComparisonOptions, notes: list[str]
) -> tuple[float, float] | None:
    """Paired BCa bootstrap CI of mean(d), when asked for and meaningful."""
    if not options.bootstrap:
        return None
    d = candidate - baseline
    if not eligible or len(d) < 3 or np.ptp(d) == 0.0:
        notes.append("bootstrap CI skipped: only for continuous, unclustered, non-constant differences")
        return None
    from scipy import stats

    result = stats.bootstrap(
        (candidate, baseline),
        lambda x, y, axis: np.mean(x - y, axis=axis),
        paired=True,
        vectorized=True,
        method="BCa",
        confidence_level=options.ci_level,
        n_resamples=options.n_resamples,
        rng=np.random.default_rng(options.seed),
    )
    lower, upper = float(result.confidence_interval.low), float(result.confidence_interval.high)
    if math.isnan(lower) or math.isnan(upper):
        notes.append("bootstrap CI undefined (degenerate resamples)")
        return None
    return lower, upper


# --- labels and single rates -------------------------------------------------


@dataclass(frozen=True)
class LabelShiftTest:
    """Stuart-Maxwell test of equal label distributions on paired items."""

    statistic: float
    df: int
    p_value: float
    n: int
    categories: tuple[str, ...]


def stuart_maxwell(baseline_labels: Sequence[Hashable], candidate_labels: Sequence[Hashable]) -> LabelShiftTest:
    """Test whether the label distribution shifted between two runs on the same items.

    Categories that never change label carry no information and make the
    covariance singular, so they are dropped.  The statistic is n * shift' C^+ shift with a
    generalised inverse of the covariance C, df = its rank: when every remaining category can
    swap with every other (rank k - 1) this is exactly statsmodels' SquareTable.homogeneity
    (which inverts C without its last row and column; statsmodels is not imported, as it
    pulls in pandas); when they fall into groups that never swap with each other, it is the
    statistic summed over the groups.
    """
    if len(baseline_labels) != len(candidate_labels):
        raise ValueError(f"runs not aligned: {len(baseline_labels)} vs {len(candidate_labels)} labels")
    base = [str(x) for x in baseline_labels]
    cand = [str(x) for x in candidate_labels]
    categories = tuple(sorted(set(base) | set(cand)))
    index = {label: i for i, label in enumerate(categories)}
    table = np.zeros((len(categories), len(categories)))
    np.add.at(table, ([index[x] for x in base], [index[x] for x in cand]), 1.0)
    off_diagonal = table - np.diag(np.diag(table))
    moving = (off_diagonal.sum(axis=0) + off_diagonal.sum(axis=1)) > 0
    if moving.sum() < 2:
        return LabelShiftTest(0.0, 0, 1.0, len(base), categories)
    reduced = table[np.ix_(moving, moving)]
    # Stuart-Maxwell covariance of the margin differences (times n): a graph
    # Laplacian whose edge weights are the swap counts n_ij + n_ji.
    swaps = reduced + reduced.T
    np.fill_diagonal(swaps, 0.0)
    laplacian = np.diag(swaps.sum(axis=1)) - swaps
    rank = int(np.linalg.matrix_rank(laplacian))
    n_obs = reduced.sum()
    shift = (reduced.sum(axis=0) - reduced.sum(axis=1)) / n_obs
    covariance = laplacian / n_obs
    statistic = float(n_obs * shift @ np.linalg.pinv(covariance) @ shift)
    return LabelShiftTest(statistic, rank, float(chi2_sf(statistic, rank)), len(base), categories)


def wilson_interval(successes: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a single rate; (0, 1) when n = 0 (nothing known)."""
    return _wilson(successes, n, level)
