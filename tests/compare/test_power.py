"""Sample-size formulas and the group-sequential design."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from harness.compare.paired import delta_statistics
from harness.compare.power import (
    NON_INFERIORITY_RATES,
    ErrorRates,
    GroupSequentialPlan,
    SequentialAction,
    items_for_continuous,
    items_for_non_inferiority,
    items_for_paired_binary,
    max_items_inflation,
    minimum_detectable_effect,
    non_inferiority_z,
    obrien_fleming_spending,
    plan_group_sequential,
    sequential_action,
)

ONE_SIDED_05 = ErrorRates(alpha=0.05, power=0.8, two_sided=False)


@pytest.mark.parametrize(
    ("drop", "flip_rate", "two_sided_n", "one_sided_n"),
    [
        (0.01, 0.05, 3923, 3090),
        (0.01, 0.20, 15696, 12364),
        (0.02, 0.10, 1960, 1544),
        (0.03, 0.05, 434, 342),
        (0.05, 0.10, 312, 246),
        (0.10, 0.20, 155, 122),
    ],
)
def test_connor_reproduces_the_power_table(drop: float, flip_rate: float, two_sided_n: int, one_sided_n: int) -> None:
    assert items_for_paired_binary(flip_rate, drop) == two_sided_n
    assert items_for_paired_binary(flip_rate, -drop, ONE_SIDED_05) == one_sided_n


def test_non_inferiority_matches_the_doc_shortcut() -> None:
    # n = 7.84 * psi / M^2 with no true difference, one-sided 0.025, power 0.8
    assert items_for_non_inferiority(0.10, 0.02) == 1963
    assert items_for_non_inferiority(0.10, 0.05) == 314
    z_sum = NON_INFERIORITY_RATES.z_alpha + NON_INFERIORITY_RATES.z_power
    assert z_sum**2 == pytest.approx(7.849, abs=1e-3)
    # A true difference eats into the margin; at or beyond it nothing helps.
    assert items_for_non_inferiority(0.10, 0.02, true_difference=-0.01) == math.ceil(z_sum**2 * 0.1 / 0.01**2)
    assert items_for_non_inferiority(0.10, 0.02, true_difference=-0.02) is None


def test_continuous_and_mde_are_inverse() -> None:
    n = items_for_continuous(0.04, 0.03)
    assert n == math.ceil((1.959964 + 0.841621) ** 2 * 0.04 / 0.03**2)
    # The MDE at the planned n is (just below) the planned effect.
    assert minimum_detectable_effect(0.04, n) == pytest.approx(0.03, rel=2e-3)
    assert minimum_detectable_effect(0.04, n) <= 0.03


@pytest.mark.parametrize(
    "call",
    [
        lambda: items_for_paired_binary(0.02, 0.05),  # effect larger than the flip rate
        lambda: items_for_paired_binary(0.1, 0.0),
        lambda: items_for_continuous(0.04, 0.0),
        lambda: items_for_non_inferiority(0.1, 0.0),
        lambda: minimum_detectable_effect(0.04, 0),
        lambda: ErrorRates(alpha=1.5),
    ],
)
def test_invalid_planning_inputs_raise(call) -> None:
    with pytest.raises(ValueError):
        call()


# --- group-sequential ---------------------------------------------------------------

THREE_LOOKS = plan_group_sequential((1 / 3, 2 / 3, 1.0), alpha=0.025)


def test_obrien_fleming_boundaries_match_the_reference() -> None:
    assert THREE_LOOKS.boundaries == pytest.approx((3.710, 2.511, 1.993), abs=5e-4)
    assert plan_group_sequential((0.5, 1.0)).boundaries == pytest.approx((2.963, 1.969), abs=5e-4)
    assert plan_group_sequential((1.0,)).boundaries == pytest.approx((stats.norm.isf(0.025),))


def test_spending_function_spends_alpha_by_the_last_look() -> None:
    spent = obrien_fleming_spending(np.array([0.0, 1 / 3, 2 / 3, 1.0]), 0.025)
    assert spent[0] == 0.0
    assert np.all(np.diff(spent) > 0)
    assert spent[-1] == pytest.approx(0.025)
    # First look: everything spent so far goes into one boundary.
    assert THREE_LOOKS.boundaries[0] == pytest.approx(stats.norm.isf(spent[1]))


def test_boundaries_spend_exactly_the_planned_alpha() -> None:
    """Monte Carlo on the Brownian motion itself: crossing probability equals alpha."""
    rng = np.random.default_rng(31)
    t = np.array(THREE_LOOKS.information_fractions)
    increments = rng.normal(0.0, np.sqrt(np.diff(np.concatenate([[0.0], t]))), (400_000, 3))
    z = np.cumsum(increments, axis=1) / np.sqrt(t)
    crossed = np.any(z >= np.array(THREE_LOOKS.boundaries), axis=1)
    assert crossed.mean() == pytest.approx(0.025, abs=0.0015)


def test_maximum_sample_inflation_is_small_for_obrien_fleming() -> None:
    assert max_items_inflation(THREE_LOOKS) == pytest.approx(1.013, abs=0.002)
    assert max_items_inflation(plan_group_sequential((1.0,))) == pytest.approx(1.0, abs=1e-6)


def test_sequential_action_rules() -> None:
    b1, _, b3 = THREE_LOOKS.boundaries
    assert sequential_action(THREE_LOOKS, 0, b1 + 0.01) is SequentialAction.SUCCESS
    assert sequential_action(THREE_LOOKS, 0, 3.0) is SequentialAction.CONTINUE
    assert sequential_action(THREE_LOOKS, 0, -b1 - 0.01) is SequentialAction.FAILURE
    assert sequential_action(THREE_LOOKS, 2, 1.0) is SequentialAction.INCONCLUSIVE
    assert sequential_action(THREE_LOOKS, 2, b3) is SequentialAction.SUCCESS
    assert non_inferiority_z(-0.01, 0.005, 0.02) == pytest.approx(2.0)
    with pytest.raises(ValueError):
        sequential_action(THREE_LOOKS, 3, 0.0)
    with pytest.raises(ValueError):
        plan_group_sequential((0.5, 0.4, 1.0))


def _run_three_looks(deltas: np.ndarray, margin: float, boundaries: tuple[float, ...]) -> np.ndarray:
    """Outcome of each simulated monitoring run, looking after each third of the items."""
    n_max = deltas.shape[1]
    looks = [n_max // 3, 2 * n_max // 3, n_max]
    z_by_look = []
    for n in looks:
        summary = delta_statistics(deltas[:, :n])
        z_by_look.append((summary.mean + margin) / summary.se)
    plan = GroupSequentialPlan(THREE_LOOKS.information_fractions, THREE_LOOKS.alpha, boundaries)
    outcomes = []
    for zs in np.array(z_by_look).T:
        for look, z in enumerate(zs):
            action = sequential_action(plan, look, float(z))
            if action is not SequentialAction.CONTINUE:
                outcomes.append(action)
                break
    return np.array(outcomes)


def test_group_sequential_type_one_error_at_the_margin() -> None:
    rng = np.random.default_rng(32)
    margin, n_max = 0.02, 900
    deltas = rng.normal(-margin, 0.25, (4000, n_max))  # true mean(d) = -M: success is a false PASS
    adjusted = np.mean(_run_three_looks(deltas, margin, THREE_LOOKS.boundaries) == SequentialAction.SUCCESS)
    naive = np.mean(_run_three_looks(deltas, margin, (1.96, 1.96, 1.96)) == SequentialAction.SUCCESS)
    assert adjusted <= 0.025 + 0.01
    assert naive > 0.04, "peeking at 1.96 at every look should inflate the error"


def test_group_sequential_keeps_power_with_the_inflated_maximum() -> None:
    rng = np.random.default_rng(33)
    margin, sd = 0.02, 0.25
    n_fixed = items_for_non_inferiority(sd**2, margin)
    n_max = math.ceil(n_fixed * max_items_inflation(THREE_LOOKS) / 3) * 3
    outcomes = _run_three_looks(rng.normal(0.0, sd, (2000, n_max)), margin, THREE_LOOKS.boundaries)
    assert np.mean(outcomes == SequentialAction.SUCCESS) >= 0.78
    assert np.mean(outcomes == SequentialAction.FAILURE) <= 0.01
