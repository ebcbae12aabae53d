"""The gate's English has one renderer (`harness.runs.gate_record`): what `decide` and `combine`
say is what the gate record says, including what to do when the data are too few."""

from __future__ import annotations

import numpy as np

from harness.compare.paired import PairedScores, compare_paired
from harness.compare.power import ErrorRates, items_for_non_inferiority
from harness.compare.verdict import MetricPolicy, SettlePremise, Verdict, combine, decide, metric_reason
from harness.runs.gate_record import render_metric, render_primary
from tests.compare.test_verdict import comparison_with

ACCURACY = MetricPolicy("accuracy")
ADVICE = "add data, or run epochs for noisy outputs"


def test_the_gate_and_its_record_render_the_same_sentences() -> None:
    verdict = decide(comparison_with(-0.005, 0.01), ACCURACY)
    assert verdict.reason == render_metric(metric_reason(verdict))
    assert render_metric(metric_reason(verdict, "accuracy", "all")).startswith(
        "INCONCLUSIVE: accuracy (slice all) -0.5 pts, 95% CI [")
    assert combine([verdict]).reasons == render_primary([metric_reason(verdict)], [])
    assert combine([]).reasons == ["INCONCLUSIVE: no primary metrics to gate on"]


def test_unchanged_binary_items_are_planned_as_not_changing_in_the_record_too() -> None:
    """The record used to say "if the true difference is the observed +0.0 pts" here."""
    same = np.array([1, 0, 1] * 10)
    verdict = decide(compare_paired(PairedScores(same, same.copy())), ACCURACY)
    assert verdict.settle is not None and verdict.settle.premise is SettlePremise.NO_CHANGE
    recorded = render_metric(metric_reason(verdict, "accuracy", "all"))
    assert "about 213 items (183 more) would settle it if further items do not change either" in recorded
    assert "observed +0.0" not in recorded


def test_items_that_all_moved_alike() -> None:
    unchanged = np.linspace(0.05, 0.85, 20)
    wilson = decide(compare_paired(PairedScores(unchanged, unchanged.copy())), ACCURACY)
    assert wilson.verdict is Verdict.INCONCLUSIVE
    assert wilson.reason.startswith("INCONCLUSIVE: accuracy: all 20 paired items moved by +0.0 pts; the Wilson bound "
                                    "on items that could differ gives 95% CI [")
    assert "would settle it if further items change the same way" in wilson.reason

    constant = np.linspace(0.1, 0.5, 50) * 10
    unbounded = decide(compare_paired(PairedScores(constant, constant + 1)), ACCURACY)
    assert unbounded.reason == ("INCONCLUSIVE: accuracy: all 50 paired items moved by +100.0 pts, so the SE is 0 "
                                "and, for scores outside [0, 1], no interval can be formed")
    assert decide(compare_paired(PairedScores([], [])), ACCURACY).reason == "INCONCLUSIVE: accuracy: no paired items"


def test_more_items_than_the_slices_hold_comes_with_a_margin_they_would_settle() -> None:
    verdict = decide(comparison_with(-0.005, 0.01, n=200), ACCURACY)
    variance = 200 * 0.01**2
    needed = items_for_non_inferiority(variance, 0.015, ErrorRates(alpha=0.025, power=0.8, two_sided=False))
    assert verdict.items_needed == needed and needed > 230

    def items_at(margin: float) -> int | None:
        return items_for_non_inferiority(variance, margin - 0.005, ErrorRates(alpha=0.025, power=0.8, two_sided=False))

    reason = metric_reason(verdict, "accuracy", "all", items_available=230)
    assert reason.within_reach is not None
    margin, items = reason.within_reach.margin, reason.within_reach.items
    assert items == items_at(margin) <= 230 < items_at(margin - 0.001)
    assert render_metric(reason).endswith(
        f"about {needed:,} items ({needed - 200:,} more) would settle it if the true difference is the observed "
        f"-0.5 pts, but the evaluated slices hold only 230: decide a larger margin in advance (e.g. M = {margin:g} "
        f"needs about {items:,}), {ADVICE} ({verdict.test_name} p={verdict.p_value:.3g})")

    # Enough items, or not known: nothing to add.
    assert "evaluated slices" not in render_metric(metric_reason(verdict, items_available=needed))
    assert "evaluated slices" not in verdict.reason


def test_too_few_unchanged_binary_items_and_a_likely_fail() -> None:
    same = np.array([1, 0, 1] * 10)
    unchanged = decide(compare_paired(PairedScores(same, same.copy())), ACCURACY)
    reason = metric_reason(unchanged, items_available=100)
    assert reason.within_reach is not None and reason.within_reach.items <= 100
    assert unchanged.settle is not None
    smaller = unchanged.settle.items_at(reason.within_reach.margin - 0.001)
    assert smaller is not None and smaller > 100
    assert (f"if further items do not change either, but the evaluated slices hold only 100: decide a larger margin "
            f"in advance (e.g. M = {reason.within_reach.margin:g} needs about {reason.within_reach.items}), {ADVICE}"
            in render_metric(reason))

    # Below the margin, a larger margin chosen now would be chosen after seeing the data.
    failing = decide(comparison_with(-0.074, 0.0276, n=300), ACCURACY)
    reason = metric_reason(failing, items_available=400)
    assert reason.within_reach is None and failing.items_needed is not None and failing.items_needed > 400
    assert (f"more items would most likely show a FAIL (about {failing.items_needed:,} items, "
            f"{failing.items_needed - 300:,} more, to confirm it at the observed effect, but the evaluated slices "
            f"hold only 400: {ADVICE})") in render_metric(reason)
