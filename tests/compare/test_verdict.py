"""Non-inferiority verdicts, reasons, and the combination with guardrails and slices."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests

from harness.compare.paired import PairedComparison, PairedScores, compare_paired
from harness.compare.paired_binary import score_interval
from harness.compare.power import items_for_non_inferiority, items_for_paired_binary_non_inferiority
from harness.compare.verdict import (
    GatePolicy,
    GuardrailCheck,
    MetricPolicy,
    MetricVerdict,
    Verdict,
    classify,
    combine,
    decide,
    guardrail_check,
    guardrail_reason,
    worst,
)
from harness.runs.gate_record import render_guardrail

ACCURACY = MetricPolicy("accuracy")
BIG_DF = 10**9  # makes the t quantile the normal one, so the expected CIs are easy to write


def comparison_with(mean_delta: float, se: float, n: int = 1000) -> PairedComparison:
    """A real comparison whose estimate is then set to the numbers a test needs."""
    rng = np.random.default_rng(0)
    baseline = rng.uniform(0, 1, n)
    template = compare_paired(PairedScores(baseline, np.clip(baseline + rng.normal(0, 0.1, n), 0, 1)))
    return replace(template, mean_delta=mean_delta, se=se, df=BIG_DF)


@pytest.mark.parametrize(
    ("lower", "upper", "expected"),
    [
        (0.01, 0.03, Verdict.PASS),
        (-0.019, 0.01, Verdict.PASS),
        (-0.019, -0.001, Verdict.WARN),
        (-0.05, -0.021, Verdict.FAIL),
        (-0.03, 0.01, Verdict.INCONCLUSIVE),
        (-0.03, -0.01, Verdict.INCONCLUSIVE),
        (-0.02, 0.01, Verdict.INCONCLUSIVE),  # touching the margin is not clearing it
    ],
)
def test_classify_follows_the_definitions(lower: float, upper: float, expected: Verdict) -> None:
    assert classify(lower, upper, 0.02) is expected


def test_classify_is_vectorised() -> None:
    verdicts = classify(np.array([0.01, -0.05, -0.019]), np.array([0.03, -0.021, -0.001]), 0.02)
    assert list(verdicts) == [Verdict.PASS, Verdict.FAIL, Verdict.WARN]


def test_fail_reason_reads_like_a_sentence() -> None:
    verdict = decide(comparison_with(-0.041, 0.0097), ACCURACY)
    assert verdict.verdict is Verdict.FAIL
    assert verdict.reason.startswith("FAIL: accuracy -4.1 pts, 95% CI [-6.0, -2.2], below the -2 pts margin")
    assert verdict.ci == pytest.approx((-0.041 - 1.959964 * 0.0097, -0.041 + 1.959964 * 0.0097))
    assert verdict.items_needed is None


def test_warn_pass_and_inconclusive() -> None:
    warn = decide(comparison_with(-0.01, 0.004), ACCURACY)
    assert warn.verdict is Verdict.WARN
    assert "significantly worse, but within the -2 pts margin" in warn.reason

    passed = decide(comparison_with(0.002, 0.008), ACCURACY)
    assert passed.verdict is Verdict.PASS
    assert "non-inferior" in passed.reason

    unsure = decide(comparison_with(-0.005, 0.01), ACCURACY)
    assert unsure.verdict is Verdict.INCONCLUSIVE
    assert "straddles the -2 pts margin" in unsure.reason


def test_lower_is_better_flips_the_signs() -> None:
    policy = MetricPolicy("refusal rate", higher_is_better=False)
    worse = decide(comparison_with(+0.041, 0.0097), policy)
    assert worse.verdict is Verdict.FAIL
    assert worse.reason.startswith("FAIL: refusal rate +4.1 pts, 95% CI [+2.2, +6.0], above the +2 pts margin")
    assert decide(comparison_with(-0.041, 0.0097), policy).verdict is Verdict.PASS
    assert decide(comparison_with(+0.01, 0.004), policy).verdict is Verdict.WARN


def test_alpha_sets_the_interval_level() -> None:
    policy = MetricPolicy("accuracy", alpha=0.05)
    verdict = decide(comparison_with(-0.005, 0.008), policy)
    assert verdict.ci_level == pytest.approx(0.90)
    assert "90% CI" in verdict.reason
    assert verdict.ci[0] == pytest.approx(-0.005 - stats.norm.isf(0.05) * 0.008)


def test_inconclusive_says_how_many_items_at_the_observed_difference_for_binary_scores() -> None:
    # 400 items, 22 regressions and 18 improvements: -1 pt, between the margin and 0.
    n, worse, better = 400, 22, 18
    baseline = np.array([1] * worse + [0] * better + [1, 0] * ((n - worse - better) // 2))
    candidate = np.array([0] * worse + [1] * better + [1, 0] * ((n - worse - better) // 2))
    comparison = compare_paired(PairedScores(baseline, candidate))
    verdict = decide(comparison, ACCURACY)
    assert verdict.verdict is Verdict.INCONCLUSIVE
    # The score test's own sample size (Nam 1997) with the observed -1 pt taken as the truth.
    expected = items_for_paired_binary_non_inferiority(0.1, 0.02, true_difference=-0.01)
    assert verdict.items_needed == expected
    assert expected > items_for_non_inferiority(0.1, 0.02)  # more than if the truth were 0
    assert verdict.more_items_needed == verdict.items_needed - n
    assert f"about {expected:,} items ({expected - n:,} more) would settle it" in verdict.reason
    assert "if the true difference is the observed -1.0 pts" in verdict.reason


def test_inconclusive_far_below_the_margin_says_more_items_would_show_a_fail() -> None:
    """-7.4 pts, CI [-12.8, -2.0]: more items would confirm a FAIL, not settle a PASS."""
    comparison = comparison_with(-0.074, 0.0276, n=300)
    verdict = decide(comparison, ACCURACY)
    assert verdict.verdict is Verdict.INCONCLUSIVE
    assert "CI [-12.8, -2.0]" in verdict.reason
    assert "if the true difference is 0" not in verdict.reason
    assert "the estimate is below the -2 pts margin: more items would most likely show a FAIL" in verdict.reason
    needed = items_for_non_inferiority(300 * 0.0276**2, 0.074 - 0.02)  # distance from the margin: 5.4 pts
    assert verdict.items_needed == needed
    assert f"about {needed:,} items, {needed - 300:,} more, to confirm it at the observed effect" in verdict.reason

    refusals = decide(comparison_with(0.074, 0.0276, n=300), MetricPolicy("refusal rate", higher_is_better=False))
    assert "the estimate is above the +2 pts margin: more items would most likely show a FAIL" in refusals.reason


def test_inconclusive_above_zero_plans_with_the_observed_gain() -> None:
    verdict = decide(comparison_with(0.004, 0.013, n=300), ACCURACY)
    assert verdict.verdict is Verdict.INCONCLUSIVE
    assert verdict.items_needed == items_for_non_inferiority(300 * 0.013**2, 0.02, true_difference=0.004)
    assert "if the true difference is the observed +0.4 pts" in verdict.reason


def test_critical_z_replaces_the_fixed_sample_quantile() -> None:
    policy = MetricPolicy("accuracy", critical_z=1.993)
    comparison = comparison_with(-0.005, 0.0076)
    verdict = decide(comparison, policy)
    assert verdict.ci == pytest.approx((-0.005 - 1.993 * 0.0076, -0.005 + 1.993 * 0.0076))
    assert verdict.ci_method == "CLT normal"
    assert verdict.ci_level == pytest.approx(1 - 2 * stats.norm.sf(1.993))
    # -0.5 - 1.96*0.76 = -1.99 clears the margin; -0.5 - 1.993*0.76 = -2.01 does not.
    assert decide(comparison, ACCURACY).verdict is Verdict.PASS
    assert verdict.verdict is Verdict.INCONCLUSIVE

    baseline = np.array([1] * 3 + [1, 0] * 200)
    candidate = np.array([0] * 3 + [1, 0] * 200)
    binary = compare_paired(PairedScores(baseline, candidate))
    scored = decide(binary, policy)
    assert scored.ci_method == "Tango score"
    assert scored.ci == pytest.approx(score_interval(3, 0, 403, 1.993))
    with pytest.raises(ValueError):
        MetricPolicy("accuracy", critical_z=0.0)


def test_inconclusive_for_continuous_scores_uses_the_observed_variance() -> None:
    comparison = comparison_with(0.0, 0.015, n=300)
    verdict = decide(comparison, ACCURACY)
    assert verdict.verdict is Verdict.INCONCLUSIVE
    assert verdict.items_needed == items_for_non_inferiority(300 * 0.015**2, 0.02)


def test_edge_cases_are_inconclusive_with_a_reason() -> None:
    empty = decide(compare_paired(PairedScores([], [])), ACCURACY)
    assert empty.verdict is Verdict.INCONCLUSIVE and "no paired items" in empty.reason
    single = decide(compare_paired(PairedScores([0.5], [0.7])), ACCURACY)
    assert single.verdict is Verdict.INCONCLUSIVE and "1 item(s): no standard error" in single.reason
    # A single 0/1 item still has a score interval; it cannot settle anything.
    for baseline, candidate in (([1], [1]), ([1], [0]), ([0], [1])):
        one = decide(compare_paired(PairedScores(baseline, candidate)), ACCURACY)
        assert one.verdict is Verdict.INCONCLUSIVE and one.ci_method == "Tango score"


def test_identical_runs_need_enough_items_before_they_pass() -> None:
    """SE = 0: a Wilson bound on the share of items that could differ replaces the point CI.

    For 0/1 scores the score interval with no flips is that same bound."""
    few = np.array([1, 0, 1] * 10)
    small = decide(compare_paired(PairedScores(few, few.copy())), ACCURACY)
    assert small.verdict is Verdict.INCONCLUSIVE
    z = stats.norm.isf(0.025)
    # The Wilson limit z^2/(n + z^2) on the share of items that could differ, widened by the score
    # test's continuity correction: (n x - 1/4)^2 = z^2 n x (1 - x) at the bound x.
    def bound(n: int) -> float:
        a2, a1 = n**2 + z**2 * n, -(0.5 * n + z**2 * n)
        return (-a1 + np.sqrt(a1**2 - 0.25 * a2)) / (2 * a2)
    assert small.items_needed == next(n for n in range(30, 400) if bound(n) < 0.02) == 213
    assert small.ci == pytest.approx((-bound(30), bound(30)))
    assert bound(30) > z**2 / (30 + z**2)
    assert small.ci_method == "Tango score"

    many = np.tile([1, 0, 1, 1], 100)
    large = decide(compare_paired(PairedScores(many, many.copy())), ACCURACY)
    assert large.verdict is Verdict.PASS
    assert large.ci[0] == pytest.approx(-bound(400))

    # Every item improved by exactly 10 points: the Wilson bound still clears the margin.
    baseline = np.linspace(0.05, 0.85, 60)
    shifted = decide(compare_paired(PairedScores(baseline, baseline + 0.1)), ACCURACY)
    assert shifted.verdict is Verdict.PASS
    share = z**2 / (60 + z**2)
    assert shifted.ci == pytest.approx((0.1 - share * 1.1, 0.1 + share * 0.9))

    constant = np.linspace(0.1, 0.5, 50)
    unbounded = decide(compare_paired(PairedScores(constant * 10, constant * 10)), ACCURACY)
    assert unbounded.verdict is Verdict.INCONCLUSIVE

    unchanged = np.linspace(0.05, 0.85, 60)
    wilson = decide(compare_paired(PairedScores(unchanged, unchanged.copy())), ACCURACY)
    assert wilson.ci_method == "Wilson bound" and "Wilson" in wilson.reason


# --- combining -------------------------------------------------------------------------


def metric(verdict: Verdict, name: str = "accuracy") -> MetricVerdict:
    template = decide(comparison_with(0.002, 0.008), MetricPolicy(name))
    return replace(template, verdict=verdict)


def test_overall_is_the_worst_primary() -> None:
    assert worst([Verdict.PASS, Verdict.WARN, Verdict.INCONCLUSIVE]) is Verdict.INCONCLUSIVE
    assert worst([Verdict.INCONCLUSIVE, Verdict.FAIL]) is Verdict.FAIL
    gate = combine([metric(Verdict.PASS), metric(Verdict.WARN, "f1")])
    assert gate.verdict is Verdict.WARN
    assert len(gate.reasons) == 2 and gate.reasons[1].startswith("WARN: ")
    assert combine([]).verdict is Verdict.INCONCLUSIVE


def test_guardrails_use_holm_and_only_alarm_when_worse() -> None:
    checks = [
        GuardrailCheck("refusals", 0.012, worsened=True),
        GuardrailCheck("invalid json", 0.03, worsened=True),
        GuardrailCheck("empty output", 0.001, worsened=False),  # significant, but it improved
        GuardrailCheck("latency", 0.5, worsened=True),
    ]
    gate = combine([metric(Verdict.PASS)], checks)
    reject, adjusted, _, _ = multipletests([c.p_value for c in checks], alpha=0.05, method="holm")
    np.testing.assert_allclose([g.adjusted_p for g in gate.guardrails], adjusted)
    # Holm by hand: sorted p times (m - rank), running maximum.
    np.testing.assert_allclose(
        sorted(adjusted), np.maximum.accumulate(np.sort([0.001, 0.012, 0.03, 0.5]) * [4, 3, 2, 1])
    )
    assert [g.alarmed for g in gate.guardrails] == [True, False, False, False]
    assert not reject[1]  # 0.03 alarms unadjusted, not after Holm
    assert gate.verdict is Verdict.WARN
    assert any("guardrail refusals worsened" in reason for reason in gate.reasons)


def test_blocking_guardrail_fails_the_gate_but_never_improves_it() -> None:
    safety = GuardrailCheck("safety", 0.001, worsened=True, blocking=True)
    assert combine([metric(Verdict.PASS)], [safety]).verdict is Verdict.FAIL
    harmless = GuardrailCheck("refusals", 0.001, worsened=True)
    assert combine([metric(Verdict.FAIL)], [harmless]).verdict is Verdict.FAIL
    assert combine([metric(Verdict.INCONCLUSIVE)], [harmless]).verdict is Verdict.INCONCLUSIVE


def test_slices_are_bh_corrected_warnings_only() -> None:
    slices = [GuardrailCheck(f"slice-{i}", p, worsened=True) for i, p in enumerate([0.004, 0.02, 0.03, 0.2, 0.6])]
    gate = combine([metric(Verdict.PASS)], slice_results=slices, policy=GatePolicy(slice_fdr=0.10))
    adjusted = stats.false_discovery_control([s.p_value for s in slices], method="bh")
    np.testing.assert_allclose([s.adjusted_p for s in gate.slices], adjusted)
    # BH by hand: p * m / rank, running minimum from the largest p down.
    by_hand = np.minimum.accumulate((np.array([0.004, 0.02, 0.03, 0.2, 0.6]) * 5 / np.arange(1, 6))[::-1])[::-1]
    np.testing.assert_allclose(adjusted, by_hand)
    assert [s.alarmed for s in gate.slices] == [True, True, True, False, False]
    assert len(gate.warnings) == 3 and gate.warnings[0].startswith("slice-0 worsened (BH-adjusted p=")
    assert gate.verdict is Verdict.PASS


def test_guardrail_check_from_a_comparison() -> None:
    baseline = np.zeros(500, dtype=int)
    candidate = baseline.copy()
    candidate[:30] = 1  # refusal rate 0% -> 6%
    check = guardrail_check(
        compare_paired(PairedScores(baseline, candidate)), MetricPolicy("refusals", higher_is_better=False)
    )
    assert check.worsened
    assert check.p_value == pytest.approx(stats.binomtest(30, 30).pvalue)
    [outcome] = combine([metric(Verdict.PASS)], [check]).guardrails
    assert f"refusals +6.0 pts ({check.test_name} p=" in render_guardrail(guardrail_reason(outcome))
    empty = guardrail_check(compare_paired(PairedScores([], [])), MetricPolicy("refusals"), blocking=True)
    assert empty.p_value == 1.0 and not empty.worsened and empty.blocking
