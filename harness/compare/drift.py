"""Drift checks on model outputs when there is no ground truth.

Each signal compares a reference sample with a current one, either on the
same items (paired) or from two time windows (unpaired), per the table in
docs/statistics.md:

| kind       | paired          | unpaired          | effect size                     |
|------------|-----------------|-------------------|---------------------------------|
| labels     | Stuart-Maxwell  | chi2_contingency  | Jensen-Shannon distance, base 2 |
| rate       | exact McNemar   | fisher_exact      | rate difference (+ CI)          |
| continuous | Wilcoxon        | ks_2samp          | Wasserstein / reference std     |

A signal alarms when its Benjamini-Hochberg adjusted p (across all signals
in the report) is below alpha AND its effect size exceeds a threshold
calibrated by a seeded permutation null: the 95th percentile of the effect
size when the two samples are exchanged at random (pooled and reshuffled
when unpaired, swapped within pairs when paired).  Fixed cut-offs such as
"JS > 0.1" mean different things at different n: between two samples of 200
from one distribution JS already exceeds 0.11 one time in twenty.

Paired nulls are drawn on sufficient statistics: pairs with the same (reference, current)
values are exchangeable, so how many of them trade places is Binomial(count, 1/2), and pairs
whose two values are equal change nothing when swapped. The null distribution is exactly that
of swapping every pair with probability 1/2, at a cost that grows with the distinct pairs
that differ, not with n (a 100,000-item comparison of short outputs has a handful).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum

import numpy as np
from scipy import special

from harness.compare.distributions import bh_adjusted, wilcoxon_zsplit_p
from harness.compare.paired import PairedScores, compare_paired, stuart_maxwell, wilson_interval

__all__ = ["SignalKind", "DriftInput", "DriftPolicy", "DriftSignal", "DriftReport", "measure_signal", "check_drift"]


class SignalKind(StrEnum):
    """What kind of values a monitored signal carries."""

    LABELS = "labels"
    """Categorical outputs (class labels, tool names, finish reasons)."""
    RATE = "rate"
    """Per-output yes/no flags (refusal, empty output, invalid JSON)."""
    CONTINUOUS = "continuous"
    """Numbers (output length, judge scores)."""


@dataclass(frozen=True)
class DriftInput:
    """One monitored signal: reference and current values."""

    name: str
    kind: SignalKind
    reference: Sequence[Hashable] | Sequence[float] | np.ndarray
    current: Sequence[Hashable] | Sequence[float] | np.ndarray
    paired: bool = False
    """Same items in the same order in both samples (e.g. a replayed suite)."""


@dataclass(frozen=True)
class DriftPolicy:
    """Error rates and permutation settings for a drift report."""

    alpha: float = 0.05
    """Alarm level for Benjamini-Hochberg adjusted p-values."""
    null_quantile: float = 0.95
    """Quantile of the permutation null used as the effect-size threshold."""
    n_permutations: int = 1000
    seed: int = 0


@dataclass(frozen=True)
class DriftSignal:
    """Test and effect size for one signal; `alarm` is set by `check_drift`."""

    name: str
    kind: SignalKind
    paired: bool
    test_name: str
    p_value: float
    effect_name: str
    effect: float
    effect_threshold: float
    """`null_quantile` of the effect under the permutation null."""
    n_reference: int
    n_current: int
    effect_ci: tuple[float, float] | None = None
    """95% CI of current minus reference rate (RATE signals only)."""
    adjusted_p: float | None = None
    """Benjamini-Hochberg adjusted p across the report; None before `check_drift`."""
    alarm: bool = False
    note: str = ""


@dataclass(frozen=True)
class DriftReport:
    """All signals of one drift check, with BH-adjusted p-values and alarms."""

    signals: tuple[DriftSignal, ...]
    policy: DriftPolicy

    @property
    def alarms(self) -> tuple[DriftSignal, ...]:
        return tuple(s for s in self.signals if s.alarm)

    @property
    def any_alarm(self) -> bool:
        return any(s.alarm for s in self.signals)


def check_drift(inputs: Sequence[DriftInput], policy: DriftPolicy = DriftPolicy()) -> DriftReport:
    """Measure every signal, adjust p-values with BH across them, and set alarms."""
    signals = [measure_signal(item, policy) for item in inputs]
    if not signals:
        return DriftReport((), policy)
    adjusted = bh_adjusted([s.p_value for s in signals])
    final = tuple(
        replace(s, adjusted_p=float(p), alarm=bool(p < policy.alpha and s.effect > s.effect_threshold))
        for s, p in zip(signals, adjusted, strict=True)
    )
    return DriftReport(final, policy)


def measure_signal(item: DriftInput, policy: DriftPolicy = DriftPolicy()) -> DriftSignal:
    """Test, effect size and calibrated threshold for one signal (no BH, no alarm)."""
    if item.paired and len(item.reference) != len(item.current):
        raise ValueError(f"{item.name}: paired samples differ in length ({len(item.reference)} vs {len(item.current)})")
    measure = {SignalKind.LABELS: _labels, SignalKind.RATE: _rate, SignalKind.CONTINUOUS: _continuous}[item.kind]
    return measure(item, _PermutationNull(policy, np.random.default_rng(policy.seed)))


# Permutations are drawn in batches of at most this many cells (permutations x
# values), so that windows of 10^5 outputs need tens of MB, not gigabytes. 500,000
# (a few float64 temporaries of 4 MB) rather than 2,000,000: the batches' temporaries were
# ~90 MB of a 100,000-item gate's peak; the draws, and so the results, are the same.
_BATCH_CELLS = 500_000


@dataclass(frozen=True)
class _PermutationNull:
    """Effect sizes under exchange of the two samples, drawn in memory-bounded batches."""

    policy: DriftPolicy
    rng: np.random.Generator

    def paired(self, counts: np.ndarray, effect: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        """`effect(swapped)`: swapped is a (batch, len(counts)) array, how many of the `counts`
        pairs of each distinct (reference, current) kind trade places: Binomial(count, 1/2)."""
        return self._draw(len(counts), lambda size: self.rng.binomial(counts, 0.5, size=(size, len(counts))), effect)

    def unpaired(self, n_ref: int, n_cur: int, effect: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        """`effect(in_reference)`: a (batch, n_ref + n_cur) mask of pooled values dealt to the reference."""
        labels = np.concatenate([np.ones(n_ref, dtype=bool), np.zeros(n_cur, dtype=bool)])
        return self._draw(labels.size, lambda size: self.rng.permuted(np.tile(labels, (size, 1)), axis=1), effect)

    def threshold(self, null_effects: np.ndarray) -> float:
        return float(np.quantile(null_effects, self.policy.null_quantile))

    def _draw(self, width: int, masks: Callable[[int], np.ndarray], effect: Callable[[np.ndarray], np.ndarray]):
        batch = max(1, _BATCH_CELLS // max(1, width))
        chunks, remaining = [], self.policy.n_permutations
        while remaining > 0:
            size = min(batch, remaining)
            chunks.append(np.atleast_1d(effect(masks(size))))
            remaining -= size
        return np.concatenate(chunks)


def _empty_signal(item: DriftInput, effect_name: str, n_ref: int, n_cur: int) -> DriftSignal:
    return _signal(
        item, "none", 1.0, (effect_name, 0.0, 0.0), (n_ref, n_cur), note="a sample is empty: nothing to compare"
    )


def _signal(
    item: DriftInput,
    test_name: str,
    p_value: float,
    effect: tuple[str, float, float],
    sizes: tuple[int, int],
    **extra,
) -> DriftSignal:
    """Assemble a DriftSignal; `effect` is (name, value, calibrated threshold)."""
    effect_name, value, threshold = effect
    return DriftSignal(
        name=item.name,
        kind=item.kind,
        paired=item.paired,
        test_name=test_name,
        p_value=float(p_value),
        effect_name=effect_name,
        effect=float(value),
        effect_threshold=float(threshold),
        n_reference=sizes[0],
        n_current=sizes[1],
        **extra,
    )


# --- labels ---------------------------------------------------------------------


def _labels(item: DriftInput, null: _PermutationNull) -> DriftSignal:
    reference = [str(x) for x in item.reference]
    current = [str(x) for x in item.current]
    if not reference or not current:
        return _empty_signal(item, "Jensen-Shannon distance", len(reference), len(current))
    categories = sorted(set(reference) | set(current))
    index = {label: i for i, label in enumerate(categories)}
    ref_codes = np.array([index[x] for x in reference], dtype=np.intp)
    cur_codes = np.array([index[x] for x in current], dtype=np.intp)
    ref_counts = np.bincount(ref_codes, minlength=len(categories)).astype(float)
    cur_counts = np.bincount(cur_codes, minlength=len(categories)).astype(float)
    effect = float(_js_distance(ref_counts, cur_counts))

    if item.paired:
        test_name, p_value = "Stuart-Maxwell", stuart_maxwell(reference, current).p_value
        from_label, to_label, counts = _pair_kinds(ref_codes, cur_codes)
        # Swapping a pair of kind (i, j) gives the reference j instead of i, the current i instead of j.
        shift = np.zeros((len(counts), len(categories)))
        np.add.at(shift, (np.arange(len(counts)), to_label), 1.0)
        np.add.at(shift, (np.arange(len(counts)), from_label), -1.0)

        def null_effect(swapped: np.ndarray) -> np.ndarray:
            moved = swapped.astype(float) @ shift
            return _js_distance(ref_counts + moved, cur_counts - moved)

        null_effects = null.paired(counts, null_effect)
    else:
        test_name, p_value = "chi-square contingency", 1.0
        if len(categories) > 1:
            from scipy import stats  # unpaired windows only: ~0.6 s and ~45 MB to import

            p_value = float(stats.chi2_contingency(np.vstack([ref_counts, cur_counts])).pvalue)
        pooled = np.eye(len(categories))[np.concatenate([ref_codes, cur_codes])]

        def dealt_effect(in_reference: np.ndarray) -> np.ndarray:
            dealt = in_reference.astype(float) @ pooled
            return _js_distance(dealt, pooled.sum(axis=0) - dealt)

        null_effects = null.unpaired(len(reference), len(current), dealt_effect)
    threshold = null.threshold(null_effects)
    return _signal(
        item, test_name, p_value, ("Jensen-Shannon distance", effect, threshold), (len(reference), len(current))
    )


def _pair_kinds(reference: np.ndarray, current: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The distinct (reference, current) pairs whose two values differ, and how many of each:
    all a paired permutation null depends on (pairs of equal values change nothing when swapped)."""
    differ = reference != current
    kinds, counts = np.unique(np.stack([reference[differ], current[differ]], axis=1), axis=0, return_counts=True)
    return kinds[:, 0], kinds[:, 1], counts


def _js_distance(reference_counts: np.ndarray, current_counts: np.ndarray) -> np.ndarray:
    """Jensen-Shannon distance (base 2, in [0, 1]) between count vectors along the last axis."""
    p = reference_counts / reference_counts.sum(axis=-1, keepdims=True)
    q = current_counts / current_counts.sum(axis=-1, keepdims=True)
    middle = (p + q) / 2.0
    divergence = (special.rel_entr(p, middle).sum(axis=-1) + special.rel_entr(q, middle).sum(axis=-1)) / np.log(2.0)
    # As scipy.spatial.distance.jensenshannon (whose import pulls in scipy.sparse and more).
    return np.asarray(np.nan_to_num(np.sqrt(divergence / 2.0)))


# --- rates ----------------------------------------------------------------------


def _as_flags(values: Sequence | np.ndarray) -> np.ndarray:
    """0/1 floats with NaN kept (None counts as missing)."""
    if isinstance(values, np.ndarray) and values.dtype != object:
        return values.astype(float)
    return np.array([np.nan if v is None else float(v) for v in values], dtype=float)


def _rate(item: DriftInput, null: _PermutationNull) -> DriftSignal:
    reference, current = _as_flags(item.reference), _as_flags(item.current)
    if item.paired:
        keep = ~(np.isnan(reference) | np.isnan(current))
        reference, current = reference[keep], current[keep]
    else:
        reference, current = reference[~np.isnan(reference)], current[~np.isnan(current)]
    if len(reference) == 0 or len(current) == 0:
        return _empty_signal(item, "|rate difference|", len(reference), len(current))
    difference = current.mean() - reference.mean()

    if item.paired:
        comparison = compare_paired(PairedScores(reference, current))
        test_name, p_value = comparison.test_name, comparison.p_value
        effect_ci = comparison.ci

        from_value, to_value, counts = _pair_kinds(reference, current)
        moves = to_value - from_value

        def null_effect(swapped: np.ndarray) -> np.ndarray:
            moved = swapped @ moves
            return np.abs((current.sum() - moved) - (reference.sum() + moved)) / len(reference)

        null_effects = null.paired(counts, null_effect)
    else:
        k_ref, k_cur = int(reference.sum()), int(current.sum())
        table = [[k_cur, len(current) - k_cur], [k_ref, len(reference) - k_ref]]
        from scipy import stats

        test_name, p_value = "Fisher exact", float(stats.fisher_exact(table).pvalue)
        effect_ci = _newcombe_interval((k_cur, len(current)), (k_ref, len(reference)))
        pooled = np.concatenate([reference, current])

        def dealt_effect(in_reference: np.ndarray) -> np.ndarray:
            dealt = in_reference @ pooled
            return np.abs((pooled.sum() - dealt) / len(current) - dealt / len(reference))

        null_effects = null.unpaired(len(reference), len(current), dealt_effect)
    return _signal(
        item,
        test_name,
        1.0 if p_value is None else p_value,
        ("|rate difference|", abs(difference), null.threshold(null_effects)),
        (len(reference), len(current)),
        effect_ci=effect_ci,
        note=f"current - reference rate = {difference:+.4f}",
    )


def _newcombe_interval(current: tuple[int, int], reference: tuple[int, int]) -> tuple[float, float]:
    """Newcombe hybrid-score 95% CI for p_current - p_reference (independent samples)."""
    p1, p2 = current[0] / current[1], reference[0] / reference[1]
    low1, high1 = wilson_interval(*current)
    low2, high2 = wilson_interval(*reference)
    difference = p1 - p2
    return (
        float(difference - np.sqrt((p1 - low1) ** 2 + (high2 - p2) ** 2)),
        float(difference + np.sqrt((high1 - p1) ** 2 + (p2 - low2) ** 2)),
    )


# --- continuous -------------------------------------------------------------------


def _continuous(item: DriftInput, null: _PermutationNull) -> DriftSignal:
    reference = np.asarray(item.reference, dtype=float)
    current = np.asarray(item.current, dtype=float)
    if item.paired:
        keep = ~(np.isnan(reference) | np.isnan(current))
        reference, current = reference[keep], current[keep]
    else:
        reference, current = reference[~np.isnan(reference)], current[~np.isnan(current)]
    effect_name = "Wasserstein / reference std"
    if len(reference) == 0 or len(current) == 0:
        return _empty_signal(item, effect_name, len(reference), len(current))
    scale = _reference_scale(reference, current)
    effect = _wasserstein(reference, current) / scale

    if item.paired:
        differences = current - reference
        p_value = 1.0
        if np.any(differences != 0.0):
            p_value = wilcoxon_zsplit_p(differences)
        test_name = "Wilcoxon signed-rank (zsplit)"

        from_value, to_value, counts = _pair_kinds(reference, current)
        null_effects = null.paired(counts, _wasserstein_of_swaps(from_value, to_value, counts, len(reference))) / scale
    else:
        from scipy import stats

        test_name, p_value = "Kolmogorov-Smirnov", float(stats.ks_2samp(reference, current).pvalue)
        null_effects = null.unpaired(len(reference), len(current), _wasserstein_of_split(reference, current)) / scale
    return _signal(
        item,
        test_name,
        p_value,
        (effect_name, effect, null.threshold(null_effects)),
        (len(reference), len(current)),
        note=f"mean {reference.mean():.4g} -> {current.mean():.4g}",
    )


def _reference_scale(reference: np.ndarray, current: np.ndarray) -> float:
    """Reference std; the pooled std if the reference is constant; 1 if both are."""
    for sample in (reference, np.concatenate([reference, current])):
        if len(sample) > 1 and np.std(sample, ddof=1) > 0.0:
            return float(np.std(sample, ddof=1))
    return 1.0


def _wasserstein_of_split(reference: np.ndarray, current: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """W1 between the two groups of a re-dealt pooled sample, for many deals at once.

    W1 is the integral of |F_ref - F_cur| over the pooled sorted values, so one
    sort of the pooled sample serves every permutation.
    """
    pooled = np.concatenate([reference, current])
    order = np.argsort(pooled, kind="stable")
    gaps = np.diff(pooled[order])

    def distance(in_reference: np.ndarray) -> np.ndarray:
        dealt = in_reference[:, order]
        cdf_ref = np.cumsum(dealt, axis=1)[:, :-1] / len(reference)
        cdf_cur = np.cumsum(~dealt, axis=1)[:, :-1] / len(current)
        return np.abs(cdf_ref - cdf_cur) @ gaps

    return distance


def _wasserstein_of_swaps(reference: np.ndarray, current: np.ndarray, counts: np.ndarray,
                          n: int) -> Callable[[np.ndarray], np.ndarray]:
    """W1 between the two samples of n pairs after `swapped[k]` of the counts[k] pairs
    (reference[k], current[k]) traded places, for many draws at once.

    F_ref - F_cur = (1/n) sum_k (counts_k - 2 swapped_k) (1{x >= reference_k} - 1{x >= current_k}):
    one sort of the kinds' values serves every draw, and W1 is the integral of its absolute value.
    """
    points = np.concatenate([reference, current])
    order = np.argsort(points, kind="stable")
    gaps = np.diff(points[order])

    def distance(swapped: np.ndarray) -> np.ndarray:
        staying = counts - 2 * swapped
        steps = np.concatenate([staying, -staying], axis=1)[:, order]
        return np.abs(np.cumsum(steps, axis=1)[:, :-1]) @ gaps / n

    return distance


def _wasserstein(reference: np.ndarray, current: np.ndarray) -> float:
    """W1 between two samples (as scipy.stats.wasserstein_distance): the integral of |F_ref - F_cur|."""
    points = np.sort(np.concatenate([reference, current]))
    gaps = np.diff(points)
    cdf_ref = np.searchsorted(np.sort(reference), points[:-1], side="right") / len(reference)
    cdf_cur = np.searchsorted(np.sort(current), points[:-1], side="right") / len(current)
    return float(np.sum(np.abs(cdf_ref - cdf_cur) * gaps))

