"""Drift checks: tests per signal kind, effect sizes, calibrated thresholds, BH."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from scipy import stats
from scipy.spatial.distance import jensenshannon
from statsmodels.stats.proportion import confint_proportions_2indep

from harness.compare import drift
from harness.compare.drift import (
    DriftInput,
    DriftPolicy,
    SignalKind,
    _wasserstein_of_split,
    check_drift,
    measure_signal,
)
from harness.compare.paired import stuart_maxwell

LABELS = np.array(["answer", "clarify", "refuse", "tool"])
FAST = DriftPolicy(n_permutations=200)


def label_sample(rng: np.random.Generator, n: int, shift: float = 0.0) -> np.ndarray:
    """Labels with `shift` of the mass moved from 'answer' to 'tool'."""
    return rng.choice(LABELS, n, p=[0.5 - shift, 0.2, 0.1, 0.2 + shift])


def null_inputs(rng: np.random.Generator, n: int) -> list[DriftInput]:
    """Six signals with no drift: each kind, paired and unpaired."""
    labels = label_sample(rng, n)
    relabelled = np.where(rng.random(n) < 0.3, label_sample(rng, n), labels)  # same marginals
    flags = rng.random(n) < 0.1
    reflagged = np.where(rng.random(n) < 0.3, rng.random(n) < 0.1, flags)
    lengths = rng.gamma(4.0, 50.0, n)
    return [
        DriftInput("labels", SignalKind.LABELS, label_sample(rng, n), label_sample(rng, n)),
        DriftInput("labels paired", SignalKind.LABELS, labels, relabelled, paired=True),
        DriftInput("refusals", SignalKind.RATE, rng.random(n) < 0.1, rng.random(n) < 0.1),
        DriftInput("refusals paired", SignalKind.RATE, flags, reflagged, paired=True),
        DriftInput("length", SignalKind.CONTINUOUS, rng.gamma(4.0, 50.0, n), rng.gamma(4.0, 50.0, n)),
        DriftInput("length paired", SignalKind.CONTINUOUS, lengths, lengths + rng.normal(0, 20, n), paired=True),
    ]


def test_false_alarm_rate_without_drift() -> None:
    rng = np.random.default_rng(1)
    reports = [check_drift(null_inputs(rng, 200), FAST) for _ in range(150)]
    alarmed = np.mean([report.any_alarm for report in reports])
    assert alarmed <= 0.09  # BH at 0.05 across six null signals: about 5% or less
    assert all(len(report.signals) == 6 for report in reports)


def test_real_drift_alarms_for_every_kind() -> None:
    rng = np.random.default_rng(2)
    n = 2000
    base_lengths = rng.gamma(4.0, 50.0, n)
    inputs = [
        DriftInput("labels", SignalKind.LABELS, label_sample(rng, n), label_sample(rng, n, shift=0.06)),
        DriftInput("refusals", SignalKind.RATE, rng.random(n) < 0.10, rng.random(n) < 0.14),
        DriftInput("length", SignalKind.CONTINUOUS, base_lengths, rng.gamma(4.0, 55.0, n)),
        DriftInput(
            "length paired",
            SignalKind.CONTINUOUS,
            base_lengths,
            base_lengths * 1.05 + rng.normal(0, 10, n),
            paired=True,
        ),
    ]
    report = check_drift(inputs, FAST)
    assert [s.name for s in report.alarms] == ["labels", "refusals", "length", "length paired"]
    for signal in report.signals:
        assert signal.adjusted_p < 0.05
        assert signal.effect > signal.effect_threshold


def test_tests_and_effect_sizes_match_the_references() -> None:
    rng = np.random.default_rng(3)
    reference, current = label_sample(rng, 300), label_sample(rng, 250, shift=0.05)
    labels = measure_signal(DriftInput("labels", SignalKind.LABELS, reference, current), FAST)
    counts = np.array([[np.sum(sample == label) for label in LABELS] for sample in (reference, current)])
    assert labels.test_name == "chi-square contingency"
    assert labels.p_value == pytest.approx(stats.chi2_contingency(counts).pvalue)
    assert labels.effect == pytest.approx(jensenshannon(counts[0] / 300, counts[1] / 250, base=2))

    paired_current = np.where(rng.random(300) < 0.2, label_sample(rng, 300, shift=0.2), reference)
    paired = measure_signal(DriftInput("labels", SignalKind.LABELS, reference, paired_current, paired=True), FAST)
    assert paired.test_name == "Stuart-Maxwell"
    assert paired.p_value == pytest.approx(stuart_maxwell(list(reference), list(paired_current)).p_value)

    before, after = rng.gamma(4.0, 50.0, 400), rng.gamma(4.0, 52.0, 300)
    lengths = measure_signal(DriftInput("length", SignalKind.CONTINUOUS, before, after), FAST)
    assert lengths.p_value == pytest.approx(stats.ks_2samp(before, after).pvalue)
    assert lengths.effect == pytest.approx(stats.wasserstein_distance(before, after) / np.std(before, ddof=1))

    paired_after = before + rng.normal(1.0, 5.0, 400)
    paired_lengths = measure_signal(
        DriftInput("length", SignalKind.CONTINUOUS, before, paired_after, paired=True), FAST
    )
    expected = stats.wilcoxon(paired_after - before, zero_method="zsplit").pvalue
    assert paired_lengths.p_value == pytest.approx(expected)


def test_rate_signals_use_fisher_or_mcnemar_with_a_ci() -> None:
    rng = np.random.default_rng(4)
    reference, current = rng.random(500) < 0.08, rng.random(400) < 0.12
    unpaired = measure_signal(DriftInput("refusals", SignalKind.RATE, reference, current), FAST)
    k_ref, k_cur = int(reference.sum()), int(current.sum())
    table = [[k_cur, 400 - k_cur], [k_ref, 500 - k_ref]]
    assert unpaired.test_name == "Fisher exact"
    assert unpaired.p_value == pytest.approx(stats.fisher_exact(table).pvalue)
    assert unpaired.effect == pytest.approx(abs(k_cur / 400 - k_ref / 500))
    newcombe = confint_proportions_2indep(k_cur, 400, k_ref, 500, method="newcomb", compare="diff")
    assert unpaired.effect_ci == pytest.approx(newcombe, abs=1e-9)

    after = np.where(rng.random(500) < 0.05, True, reference)
    paired = measure_signal(DriftInput("refusals", SignalKind.RATE, reference, after, paired=True), FAST)
    b, c = int(np.sum(reference & ~after)), int(np.sum(~reference & after))
    assert paired.test_name == "exact McNemar"
    assert paired.p_value == pytest.approx(stats.binomtest(c, b + c, 0.5).pvalue)
    assert paired.effect_ci[0] < after.mean() - reference.mean() < paired.effect_ci[1]


def test_thresholds_are_calibrated_to_sample_size() -> None:
    """Fixed cut-offs are folklore: the null JS distance shrinks with n."""
    rng = np.random.default_rng(5)

    def threshold(n: int) -> float:
        signal = measure_signal(
            DriftInput("labels", SignalKind.LABELS, label_sample(rng, n), label_sample(rng, n)), FAST
        )
        return signal.effect_threshold

    small, large = threshold(200), threshold(5000)
    assert 0.03 < small < 0.2
    assert small > 3 * large
    # Seeded: the same input gives the same threshold.
    item = DriftInput("length", SignalKind.CONTINUOUS, np.arange(100.0), np.arange(100.0) + 3)
    assert measure_signal(item, FAST).effect_threshold == measure_signal(item, FAST).effect_threshold


def test_alarm_needs_both_a_small_p_and_an_effect_above_the_threshold() -> None:
    reference, current = np.zeros(3000, dtype=bool), np.zeros(3000, dtype=bool)
    reference[:300], current[:355] = True, True  # 10.0% -> 11.8%: Fisher p about 0.03
    item = DriftInput("refusals", SignalKind.RATE, reference, current)
    calibrated = check_drift([item], FAST).signals[0]
    assert calibrated.adjusted_p < 0.05 and calibrated.alarm
    # Same p, but a threshold at the null's maximum that this effect does not clear.
    strict = check_drift([item], DriftPolicy(n_permutations=200, null_quantile=1.0)).signals[0]
    assert strict.adjusted_p == calibrated.adjusted_p
    assert strict.effect < strict.effect_threshold
    assert not strict.alarm


def test_bh_across_signals() -> None:
    rng = np.random.default_rng(7)
    inputs = null_inputs(rng, 300)
    inputs.append(DriftInput("borderline", SignalKind.RATE, rng.random(1500) < 0.10, rng.random(1500) < 0.128))
    report = check_drift(inputs, FAST)
    raw = [s.p_value for s in report.signals]
    np.testing.assert_allclose([s.adjusted_p for s in report.signals], stats.false_discovery_control(raw))
    assert all(s.adjusted_p >= s.p_value for s in report.signals)


def test_vectorised_wasserstein_of_a_split_matches_scipy() -> None:
    rng = np.random.default_rng(8)
    reference, current = rng.normal(0, 1, 40), rng.normal(0, 1, 25)
    pooled = np.concatenate([reference, current])
    groups = np.random.default_rng(3).permuted(np.tile(np.r_[np.ones(40, bool), np.zeros(25, bool)], (20, 1)), axis=1)
    fast = _wasserstein_of_split(reference, current)(groups)
    slow = [stats.wasserstein_distance(pooled[g], pooled[~g]) for g in groups]
    np.testing.assert_allclose(fast, slow, rtol=1e-10)


def test_empty_and_degenerate_inputs() -> None:
    report = check_drift(
        [
            DriftInput("empty", SignalKind.CONTINUOUS, [], [1.0, 2.0]),
            DriftInput("nan only", SignalKind.RATE, [np.nan, None], [1, 0]),
            DriftInput("one label", SignalKind.LABELS, ["a"] * 50, ["a"] * 40),
            DriftInput("constant", SignalKind.CONTINUOUS, [5.0] * 30, [5.0] * 30, paired=True),
        ],
        FAST,
    )
    assert not report.any_alarm
    for signal in report.signals:
        assert signal.p_value == 1.0
        assert np.isfinite(signal.effect) and np.isfinite(signal.effect_threshold)
    assert check_drift([], FAST).signals == ()
    with pytest.raises(ValueError, match="differ in length"):
        measure_signal(DriftInput("x", SignalKind.RATE, [1, 0], [1], paired=True))


def test_permutations_in_small_batches_give_the_same_thresholds(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(9)
    lengths = rng.gamma(4.0, 50.0, 300)
    inputs = [
        DriftInput("labels", SignalKind.LABELS, label_sample(rng, 300), label_sample(rng, 200)),
        DriftInput("length paired", SignalKind.CONTINUOUS, lengths, lengths + rng.normal(0, 5, 300), paired=True),
    ]
    whole = [measure_signal(item, FAST).effect_threshold for item in inputs]
    monkeypatch.setattr(drift, "_BATCH_CELLS", 7_000)  # about 14-23 permutations per batch
    batched = [measure_signal(item, FAST).effect_threshold for item in inputs]
    assert batched == whole


# --- paired nulls on sufficient statistics, against swapping every pair explicitly ----------


def explicit_swap_effect(kind: SignalKind, reference: np.ndarray, current: np.ndarray, swapped: np.ndarray) -> float:
    """The effect after the pairs in `swapped` traded places, computed the plain way (scipy)."""
    ref, cur = np.where(swapped, current, reference), np.where(swapped, reference, current)
    if kind == SignalKind.LABELS:
        labels = sorted(set(reference) | set(current))
        counts = [[np.sum(sample == label) for label in labels] for sample in (ref, cur)]
        return float(jensenshannon(np.divide(counts[0], len(ref)), np.divide(counts[1], len(cur)), base=2))
    if kind == SignalKind.RATE:
        return abs(cur.mean() - ref.mean())
    return stats.wasserstein_distance(ref, cur)


def exact_swap_null(kind: SignalKind, reference: np.ndarray, current: np.ndarray) -> np.ndarray:
    """The effect under every one of the 2^n ways of swapping pairs: the exact paired null."""
    n = len(reference)
    masks = ((np.arange(2**n)[:, None] >> np.arange(n)) & 1).astype(bool)
    return np.array([explicit_swap_effect(kind, reference, current, mask) for mask in masks])


def test_wasserstein_of_swap_counts_matches_swapping_pairs_explicitly() -> None:
    rng = np.random.default_rng(10)
    for n in (2, 7, 40):
        # Integer lengths: ties within and across samples, and pairs of equal values.
        reference = rng.integers(0, 6, n).astype(float)
        current = np.where(rng.random(n) < 0.3, reference, rng.integers(0, 6, n)).astype(float)
        from_value, to_value, counts = drift._pair_kinds(reference, current)
        distance = drift._wasserstein_of_swaps(from_value, to_value, counts, n)
        masks = rng.random((25, n)) < 0.5
        kinds = list(zip(from_value, to_value, strict=True))
        swapped = np.array([[np.sum(mask & (reference == a) & (current == b)) for a, b in kinds]
                            for mask in masks]).reshape(len(masks), len(counts))
        expected = [explicit_swap_effect(SignalKind.CONTINUOUS, reference, current, mask) for mask in masks]
        np.testing.assert_allclose(distance(swapped), expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kind", list(SignalKind))
def test_paired_null_thresholds_match_the_exact_swap_distribution(kind: SignalKind) -> None:
    """Drawing how many pairs of each kind swap (binomially) is the null of swapping each pair
    with probability 1/2: its quantiles agree with full enumeration of the 2^n swaps."""
    rng = np.random.default_rng(11)
    policy = DriftPolicy(n_permutations=20_000)
    checked = 0
    for case in range(6):
        n = 10 + case % 4
        if kind == SignalKind.LABELS:
            reference = label_sample(rng, n)
            current = np.where(rng.random(n) < 0.5, label_sample(rng, n), reference)
        elif kind == SignalKind.RATE:
            reference = rng.random(n) < 0.4
            current = np.where(rng.random(n) < 0.6, rng.random(n) < 0.4, reference)
        else:
            reference = rng.integers(0, 5, n).astype(float)
            current = reference + rng.integers(-2, 3, n)
        exact = exact_swap_null(kind, np.asarray(reference), np.asarray(current))
        scale = 1.0
        if kind == SignalKind.CONTINUOUS:
            scale = drift._reference_scale(np.asarray(reference, float), np.asarray(current, float))
        for quantile in (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95):
            atom = np.quantile(exact, quantile, method="inverted_cdf")
            below, at_or_below = np.mean(exact < atom - 1e-12), np.mean(exact <= atom + 1e-12)
            if not below + 0.02 < quantile < at_or_below - 0.02:
                continue  # the quantile is at the edge of an atom: Monte Carlo may land on either side
            item = DriftInput("x", kind, reference, current, paired=True)
            drawn = measure_signal(item, replace(policy, null_quantile=quantile)).effect_threshold
            assert drawn * scale == pytest.approx(atom, rel=1e-9, abs=1e-12)
            checked += 1
    assert checked >= 20
