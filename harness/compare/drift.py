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
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum

import numpy as np
from scipy import stats
from scipy.spatial.distance import jensenshannon

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
    adjusted = stats.false_discovery_control([s.p_value for s in signals], method="bh")
    final = tuple(
        replace(s, adjusted_p=float(p), alarm=bool(p < policy.alpha and s.effect > s.effect_threshold))
        for s, p in zip(signals, adjusted, strict=True)
    )
    return DriftReport(final, policy)


def measure_signal(item: DriftInput, policy: DriftPolicy = DriftPolicy()) -> DriftSignal:
    """Test, effect size and calibrated threshold for one signal (no BH, no alarm)."""
    if item.paired and len(item.reference) != len(item.current):
        raise ValueError(f"{item.name}: paired samples differ in length ({len(item.reference)} vs {len(item.current)})")
    rng = np.random.default_rng(policy.seed)
    measure = {SignalKind.LABELS: _labels, SignalKind.RATE: _rate, SignalKind.CONTINUOUS: _continuous}[item.kind]
    return measure(item, policy, rng)


def _null_threshold(null_effects: np.ndarray, policy: DriftPolicy) -> float:
    return float(np.quantile(null_effects, policy.null_quantile))


def _swap_masks(n: int, policy: DriftPolicy, rng: np.random.Generator) -> np.ndarray:
    """Paired null: each pair is swapped with probability 1/2 (permutations x n)."""
    return rng.random((policy.n_permutations, n)) < 0.5


def _shuffled_groups(n_ref: int, n_cur: int, policy: DriftPolicy, rng: np.random.Generator) -> np.ndarray:
    """Unpaired null: which pooled values land in the reference (permutations x pooled)."""
    labels = np.concatenate([np.ones(n_ref, dtype=bool), np.zeros(n_cur, dtype=bool)])
    return rng.permuted(np.tile(labels, (policy.n_permutations, 1)), axis=1)


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


def _labels(item: DriftInput, policy: DriftPolicy, rng: np.random.Generator) -> DriftSignal:
    reference = [str(x) for x in item.reference]
    current = [str(x) for x in item.current]
    if not reference or not current:
        return _empty_signal(item, "Jensen-Shannon distance", len(reference), len(current))
    categories = sorted(set(reference) | set(current))
    index = {label: i for i, label in enumerate(categories)}
    ref_onehot = np.eye(len(categories))[[index[x] for x in reference]]
    cur_onehot = np.eye(len(categories))[[index[x] for x in current]]
    effect = _js_distance(ref_onehot.sum(axis=0), cur_onehot.sum(axis=0))

    if item.paired:
        test = stuart_maxwell(reference, current)
        test_name, p_value = "Stuart-Maxwell", test.p_value
        swaps = _swap_masks(len(reference), policy, rng).astype(float)
        moved = swaps @ (cur_onehot - ref_onehot)
        null = _js_distance(ref_onehot.sum(axis=0) + moved, cur_onehot.sum(axis=0) - moved)
    else:
        test_name, p_value = "chi-square contingency", 1.0
        counts = np.vstack([ref_onehot.sum(axis=0), cur_onehot.sum(axis=0)])
        if len(categories) > 1:
            p_value = float(stats.chi2_contingency(counts).pvalue)
        in_reference = _shuffled_groups(len(reference), len(current), policy, rng).astype(float)
        pooled = np.vstack([ref_onehot, cur_onehot])
        null_ref = in_reference @ pooled
        null = _js_distance(null_ref, pooled.sum(axis=0) - null_ref)
    threshold = _null_threshold(null, policy)
    return _signal(
        item, test_name, p_value, ("Jensen-Shannon distance", effect, threshold), (len(reference), len(current))
    )


def _js_distance(reference_counts: np.ndarray, current_counts: np.ndarray) -> np.ndarray | float:
    """Jensen-Shannon distance (base 2, in [0, 1]) between count vectors along the last axis."""
    p = reference_counts / reference_counts.sum(axis=-1, keepdims=True)
    q = current_counts / current_counts.sum(axis=-1, keepdims=True)
    distance = np.nan_to_num(jensenshannon(p, q, base=2, axis=-1))
    return float(distance) if np.ndim(distance) == 0 else distance


# --- rates ----------------------------------------------------------------------


def _as_flags(values: Sequence | np.ndarray) -> np.ndarray:
    """0/1 floats with NaN kept (None counts as missing)."""
    return np.array([np.nan if v is None else float(v) for v in values], dtype=float)


def _rate(item: DriftInput, policy: DriftPolicy, rng: np.random.Generator) -> DriftSignal:
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
        moved = _swap_masks(len(reference), policy, rng).astype(float) @ (current - reference)
        null = np.abs((current.sum() - moved) - (reference.sum() + moved)) / len(reference)
    else:
        k_ref, k_cur = int(reference.sum()), int(current.sum())
        table = [[k_cur, len(current) - k_cur], [k_ref, len(reference) - k_ref]]
        test_name, p_value = "Fisher exact", float(stats.fisher_exact(table).pvalue)
        effect_ci = _newcombe_interval((k_cur, len(current)), (k_ref, len(reference)))
        pooled = np.concatenate([reference, current])
        in_reference = _shuffled_groups(len(reference), len(current), policy, rng)
        null_ref_rate = (in_reference @ pooled) / len(reference)
        null_cur_rate = (pooled.sum() - in_reference @ pooled) / len(current)
        null = np.abs(null_cur_rate - null_ref_rate)
    return _signal(
        item,
        test_name,
        1.0 if p_value is None else p_value,
        ("|rate difference|", abs(difference), _null_threshold(null, policy)),
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


def _continuous(item: DriftInput, policy: DriftPolicy, rng: np.random.Generator) -> DriftSignal:
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
    effect = float(stats.wasserstein_distance(reference, current)) / scale

    if item.paired:
        differences = current - reference
        p_value = 1.0
        if np.any(differences != 0.0):
            p_value = float(stats.wilcoxon(differences, zero_method="zsplit").pvalue)
        test_name = "Wilcoxon signed-rank (zsplit)"
        swaps = _swap_masks(len(reference), policy, rng)
        null_ref = np.sort(np.where(swaps, current, reference), axis=1)
        null_cur = np.sort(np.where(swaps, reference, current), axis=1)
        # Equal sample sizes: W1 is the mean gap between matching order statistics.
        null = np.abs(null_ref - null_cur).mean(axis=1) / scale
    else:
        test_name, p_value = "Kolmogorov-Smirnov", float(stats.ks_2samp(reference, current).pvalue)
        null = _unpaired_wasserstein_null(reference, current, policy, rng) / scale
    return _signal(
        item,
        test_name,
        p_value,
        (effect_name, effect, _null_threshold(null, policy)),
        (len(reference), len(current)),
        note=f"mean {reference.mean():.4g} -> {current.mean():.4g}",
    )


def _reference_scale(reference: np.ndarray, current: np.ndarray) -> float:
    """Reference std; the pooled std if the reference is constant; 1 if both are."""
    for sample in (reference, np.concatenate([reference, current])):
        if len(sample) > 1 and np.std(sample, ddof=1) > 0.0:
            return float(np.std(sample, ddof=1))
    return 1.0


def _unpaired_wasserstein_null(
    reference: np.ndarray, current: np.ndarray, policy: DriftPolicy, rng: np.random.Generator
) -> np.ndarray:
    """W1 between reshuffled groups: integral of |F_ref - F_cur| over the pooled sorted values."""
    pooled = np.concatenate([reference, current])
    order = np.argsort(pooled, kind="stable")
    gaps = np.diff(pooled[order])
    in_reference = _shuffled_groups(len(reference), len(current), policy, rng)[:, order]
    cdf_ref = np.cumsum(in_reference, axis=1)[:, :-1] / len(reference)
    cdf_cur = np.cumsum(~in_reference, axis=1)[:, :-1] / len(current)
    return np.abs(cdf_ref - cdf_cur) @ gaps
