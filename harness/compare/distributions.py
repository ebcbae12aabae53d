"""The distribution functions every comparison needs, from scipy.special.

scipy.stats costs ~0.6 s of CPU and ~45 MB to import, scipy.optimize ~0.4 s; a gate that needs
normal and t quantiles, chi-square tails, Wilson intervals, Benjamini-Hochberg, exact McNemar and
Wilcoxon's normal approximation should not pay for them. These are the routines scipy.stats
itself calls for the same quantities (norm.isf is -ndtri, t.ppf is stdtrit, chi2.sf is chdtrc,
binom.cdf is bdtr, ...), so the numbers are the same; tests/compare/test_distributions.py holds
them against scipy.stats. What needs more (Wilcoxon's exact null, the bootstrap, unpaired drift
tests) imports scipy.stats where it runs.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import special

__all__ = ["wilcoxon_zsplit_p", "mcnemar_exact_p", "norm_sf", "norm_isf", "norm_cdf", "norm_ppf", "norm_pdf", "t_ppf", "t_isf", "chi2_sf",
           "wilson_interval", "bh_adjusted"]


def norm_sf(x):
    return special.ndtr(-np.asarray(x, dtype=float))


def norm_isf(q):
    return -special.ndtri(np.asarray(q, dtype=float))


def norm_cdf(x):
    return special.ndtr(np.asarray(x, dtype=float))


def norm_ppf(q):
    return special.ndtri(np.asarray(q, dtype=float))


def norm_pdf(x, loc=0.0, scale=1.0):
    y = (np.asarray(x, dtype=float) - loc) / scale
    return np.exp(-y * y / 2.0) / math.sqrt(2.0 * math.pi) / scale


def t_ppf(q, df):
    return special.stdtrit(df, np.asarray(q, dtype=float))


def t_isf(q, df):
    return -special.stdtrit(df, np.asarray(q, dtype=float))


def chi2_sf(x, df):
    return special.chdtrc(df, np.asarray(x, dtype=float))


def mcnemar_exact_p(worse: int, better: int) -> float:
    """Exact McNemar: two-sided p of binomtest(better, worse + better, 0.5). The binomial with
    p = 1/2 is symmetric, so scipy's two-sided p (the outcomes no more likely than the one seen)
    is twice the smaller tail, and 1 when the split is even."""
    flips = worse + better
    if flips == 0 or 2 * better == flips:
        return 1.0
    return float(min(1.0, 2.0 * special.bdtr(min(worse, better), flips, 0.5)))


def wilcoxon_zsplit_p(differences: np.ndarray) -> float:
    """Two-sided p of scipy.stats.wilcoxon(differences, zero_method="zsplit"). With zeros or ties
    and more than 13 differences scipy uses the normal approximation (tie-corrected, no continuity
    correction), computed here; otherwise (an exact or permutation null) scipy.stats is asked."""
    d = np.asarray(differences, dtype=float)
    magnitudes = np.sort(np.abs(d))
    tied = bool(np.any(magnitudes[1:] == magnitudes[:-1]))
    if len(d) <= 13 or not (tied or np.any(d == 0.0)):
        from scipy import stats  # ~0.6 s and ~45 MB to import: only for these cases

        return float(stats.wilcoxon(d, zero_method="zsplit").pvalue)
    order = np.argsort(np.abs(d), kind="stable")
    starts = np.flatnonzero(np.r_[True, magnitudes[1:] != magnitudes[:-1]])
    sizes = np.diff(np.r_[starts, len(d)])
    ranks = np.empty(len(d))
    ranks[order] = np.repeat(starts + (sizes + 1) / 2.0, sizes)  # average ranks, from 1
    r_plus = ranks[d > 0].sum() + ranks[d == 0].sum() / 2.0  # zsplit: zeros count half to each side
    n = float(len(d))
    mean = n * (n + 1.0) * 0.25
    se = math.sqrt((n * (n + 1.0) * (2.0 * n + 1.0) - float(np.sum(sizes**3.0 - sizes)) / 2.0) / 24.0)
    return float(min(1.0, 2.0 * special.ndtr(-abs((r_plus - mean) / se))))


def wilson_interval(successes: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a single rate (as binomtest(...).proportion_ci(method='wilson'));
    (0, 1) when n = 0 (nothing known)."""
    if n == 0:
        return 0.0, 1.0
    if not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n, got {successes} of {n}")
    p = successes / n
    z = float(special.ndtri(0.5 + 0.5 * level))
    denominator = 2 * (n + z**2)
    center = (2 * n * p + z**2) / denominator
    delta = z / denominator * math.sqrt(4 * n * p * (1 - p) + z**2)
    lower = 0.0 if successes == 0 else center - delta
    upper = 1.0 if successes == n else center + delta
    return float(lower), float(upper)


def bh_adjusted(p_values) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (as scipy.stats.false_discovery_control(method='bh'))."""
    ps = np.asarray(p_values, dtype=float)
    if ps.size == 0:
        return ps.copy()
    order = np.argsort(ps)
    ranked = ps[order] * (ps.size / np.arange(1, ps.size + 1))
    ranked = np.minimum.accumulate(ranked[::-1])[::-1]
    adjusted = np.empty_like(ranked)
    adjusted[order] = ranked
    return np.clip(adjusted, 0.0, 1.0)
