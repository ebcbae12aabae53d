"""Sample-size planning and group-sequential boundaries for paired comparisons.

Formulas follow docs/statistics.md:

- superiority, paired binary (Connor 1987):
  n = [z_a*sqrt(psi) + z_b*sqrt(psi - delta^2)]^2 / delta^2, psi = flip rate;
- superiority, continuous: n = (z_a + z_b)^2 * var(d) / delta^2;
- non-inferiority at margin M when the true difference is `true_difference`:
  n = (z_{1-alpha} + z_power)^2 * var(d) / (M + true_difference)^2.  For paired
  binary scores with no true difference var(d) = E[d^2] = psi, and at one-sided
  alpha 0.025 / power 0.8 this is the doc's 7.84 * psi / M^2;
- non-inferiority for paired binary scores judged by the score test (Nam 1997):
  n = [z_{1-alpha}*sigma_0 + z_power*sigma_1]^2 / (M + true_difference)^2 with
  sigma_1^2 = psi - delta^2 and sigma_0^2 the restricted-MLE variance at
  delta0 = -M.  The Wald formula above falls short of the planned power for
  the score test (exactly enumerated: 0.74 instead of 0.80 at psi 0.03, M 0.02);
- minimum detectable effect at n: (z_a + z_b) * sqrt(var(d) / n).

Group-sequential monitoring uses the Lan-DeMets O'Brien-Fleming spending
function alpha*(t) = 2 - 2*Phi(z_{1-alpha/2} / sqrt(t)) for a one-sided alpha.
Boundaries are found by numerical integration of the joint law of the
Brownian-motion Z statistics (Armitage-McPherson-Rowe recursion), not a table.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from harness.compare.distributions import norm_cdf, norm_isf, norm_pdf, norm_ppf, norm_sf
from harness.compare.paired_binary import CONTINUITY, restricted_mle

__all__ = [
    "NON_INFERIORITY_RATES",
    "ErrorRates",
    "GroupSequentialPlan",
    "SequentialAction",
    "equal_looks",
    "final_bound",
    "items_for_continuous",
    "items_for_non_inferiority",
    "items_for_paired_binary",
    "items_for_paired_binary_non_inferiority",
    "max_items_inflation",
    "minimum_detectable_effect",
    "non_inferiority_z",
    "obrien_fleming_spending",
    "plan_group_sequential",
    "sequential_action",
]


@dataclass(frozen=True)
class ErrorRates:
    """Type I error and power for a planning calculation."""

    alpha: float = 0.05
    """Total type I error; split over both tails when `two_sided`."""
    power: float = 0.8
    """Probability of detecting the planned effect."""
    two_sided: bool = True
    """Whether `alpha` is two-sided (z_{1-alpha/2}) or one-sided (z_{1-alpha})."""

    def __post_init__(self) -> None:
        if not 0.0 < self.alpha < 1.0 or not 0.0 < self.power < 1.0:
            raise ValueError(f"alpha and power must lie in (0, 1), got {self}")

    @property
    def z_alpha(self) -> float:
        """Critical value for the type I error."""
        tail = self.alpha / 2.0 if self.two_sided else self.alpha
        return float(norm_isf(tail))

    @property
    def z_power(self) -> float:
        """Normal quantile of the power."""
        return float(norm_ppf(self.power))


NON_INFERIORITY_RATES = ErrorRates(alpha=0.025, power=0.8, two_sided=False)
"""The gate's defaults: one-sided 0.025 (two-sided 95% CI) and power 0.8."""


def items_for_paired_binary(flip_rate: float, effect: float, rates: ErrorRates = ErrorRates()) -> int:
    """Items needed to detect a paired binary difference `effect` (Connor 1987).

    `flip_rate` (psi) is the share of items whose score differs between runs
    (estimate it from history).  It must be at least |effect|: the net change
    cannot exceed the share of items that changed.
    """
    delta = abs(effect)
    if delta == 0.0:
        raise ValueError("effect must be non-zero")
    if not delta <= flip_rate <= 1.0:
        raise ValueError(f"need |effect| <= flip_rate <= 1, got effect={effect}, flip_rate={flip_rate}")
    root = rates.z_alpha * math.sqrt(flip_rate) + rates.z_power * math.sqrt(flip_rate - delta**2)
    return math.ceil(root**2 / delta**2)


def items_for_continuous(variance: float, effect: float, rates: ErrorRates = ErrorRates()) -> int:
    """Items needed to detect a mean paired difference `effect` given var(d)."""
    if effect == 0.0:
        raise ValueError("effect must be non-zero")
    if variance < 0.0:
        raise ValueError(f"variance must be >= 0, got {variance}")
    return math.ceil((rates.z_alpha + rates.z_power) ** 2 * variance / effect**2)


def items_for_non_inferiority(
    variance: float,
    margin: float,
    rates: ErrorRates = NON_INFERIORITY_RATES,
    true_difference: float = 0.0,
) -> int | None:
    """Items needed to show mean(d) > -margin when the truth is `true_difference`.

    `variance` is var(d) per item (for paired binary scores with no true
    difference this is the flip rate psi).  Returns None when the true
    difference is at or below -margin: no sample size can then show
    non-inferiority.
    """
    if margin <= 0.0:
        raise ValueError(f"margin must be > 0, got {margin}")
    if variance < 0.0:
        raise ValueError(f"variance must be >= 0, got {variance}")
    distance = margin + true_difference
    if distance <= 0.0:
        return None
    return max(1, math.ceil((rates.z_alpha + rates.z_power) ** 2 * variance / distance**2))


def items_for_paired_binary_non_inferiority(
    flip_rate: float,
    margin: float,
    rates: ErrorRates = NON_INFERIORITY_RATES,
    true_difference: float = 0.0,
) -> int | None:
    """Items for the score test (Nam 1997) to settle non-inferiority at `margin` with `rates.power`.

    When `true_difference` > -margin this is the n that shows non-inferiority;
    when it is below -margin, the n at which the upper bound falls below the
    margin (a FAIL).  None when the true difference sits on the margin.
    `flip_rate` (psi) must be at least |true_difference|.
    """
    if not 0.0 < margin < 1.0:
        raise ValueError(f"margin must lie in (0, 1), got {margin}")
    if not abs(true_difference) <= flip_rate <= 1.0:
        raise ValueError(f"need |true_difference| <= flip_rate <= 1, got {true_difference}, {flip_rate}")
    distance = abs(margin + true_difference)
    if distance == 0.0:
        return None
    # The restricted MLE at the expected cell proportions (n = 1) gives the
    # variance the test statistic is standardised with.
    worse, better = (flip_rate - true_difference) / 2.0, (flip_rate + true_difference) / 2.0
    null_variance = 2.0 * float(restricted_mle(worse, better, 1.0, -margin)) - margin - margin**2
    root = rates.z_alpha * math.sqrt(null_variance) + rates.z_power * math.sqrt(flip_rate - true_difference**2)
    # The test's numerator is n*distance less the continuity correction, so n solves
    # distance*n - root*sqrt(n) - CONTINUITY = 0 (a quadratic in sqrt(n)).
    sqrt_n = (root + math.sqrt(root**2 + 4.0 * distance * CONTINUITY)) / (2.0 * distance)
    return max(1, math.ceil(sqrt_n**2 - 1e-9))


def minimum_detectable_effect(variance: float, n: int, rates: ErrorRates = ErrorRates()) -> float:
    """Smallest true difference detected with the given power at n items."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    return (rates.z_alpha + rates.z_power) * math.sqrt(variance / n)


# --- group-sequential design -------------------------------------------------


def obrien_fleming_spending(information_fraction: float | np.ndarray, alpha: float = 0.025) -> np.ndarray:
    """Cumulative one-sided alpha spent by information fraction t (Lan-DeMets OBF)."""
    t = np.asarray(information_fraction, dtype=float)
    with np.errstate(divide="ignore"):
        spent = 2.0 - 2.0 * norm_cdf(norm_isf(alpha / 2.0) / np.sqrt(t))
    return np.where(t > 0.0, spent, 0.0)


# Grid for the recursion: W(t) = Z(t)*sqrt(t) is integrated over
# [drift*t - _TAIL_SD*sqrt(t), bound*sqrt(t)] on _GRID_POINTS points (odd, for
# Simpson's rule).  Probability below the lower end is < 1e-15.
_GRID_POINTS = 1601
_TAIL_SD = 8.0


@dataclass(frozen=True)
class _Continuation:
    """Sub-density of W(t) on the paths that have not crossed any boundary yet."""

    t: float
    grid: np.ndarray
    density: np.ndarray


def _first_look(t: float, drift: float, bound: float) -> tuple[float, _Continuation]:
    sd = math.sqrt(t)
    cross = float(norm_sf(bound - drift * sd))
    grid = np.linspace(min(drift * t - _TAIL_SD * sd, bound * sd - 1.0), bound * sd, _GRID_POINTS)
    density = norm_pdf(grid, loc=drift * t, scale=sd)
    return cross, _Continuation(t, grid, density)


def _cross_probability(state: _Continuation, t: float, drift: float, bound: float) -> float:
    """P(no earlier crossing and Z(t) >= bound)."""
    step_sd = math.sqrt(t - state.t)
    tail = norm_sf((bound * math.sqrt(t) - state.grid - drift * (t - state.t)) / step_sd)
    from scipy import integrate  # sequential designs only: not imported for every comparison

    return float(integrate.simpson(state.density * tail, x=state.grid))


def _advance(state: _Continuation, t: float, drift: float, bound: float) -> _Continuation:
    step_sd = math.sqrt(t - state.t)
    sd = math.sqrt(t)
    grid = np.linspace(min(drift * t - _TAIL_SD * sd, bound * sd - 1.0), bound * sd, _GRID_POINTS)
    standardized = (grid[:, None] - state.grid[None, :] - drift * (t - state.t)) / step_sd
    kernel = np.exp(-0.5 * standardized**2) / (math.sqrt(2.0 * math.pi) * step_sd)
    from scipy import integrate

    density = integrate.simpson(kernel * state.density[None, :], x=state.grid, axis=1)
    return _Continuation(t, grid, density)


def _validated_fractions(information_fractions: tuple[float, ...]) -> np.ndarray:
    t = np.asarray(information_fractions, dtype=float)
    if t.ndim != 1 or t.size == 0:
        raise ValueError("need at least one information fraction")
    if np.any(np.diff(t) <= 0.0) or t[0] <= 0.0 or not math.isclose(t[-1], 1.0):
        raise ValueError(f"information fractions must increase strictly from >0 to 1, got {information_fractions}")
    return t


@dataclass(frozen=True)
class GroupSequentialPlan:
    """Efficacy boundaries for a one-sided test at looks t_1 < ... < t_K = 1."""

    information_fractions: tuple[float, ...]
    """Share of the maximum number of items analysed at each look."""
    alpha: float
    """One-sided type I error spent over all looks."""
    boundaries: tuple[float, ...]
    """Z value at or above which the test succeeds at each look."""


def plan_group_sequential(information_fractions: tuple[float, ...], alpha: float = 0.025) -> GroupSequentialPlan:
    """Lan-DeMets O'Brien-Fleming efficacy boundaries for the given looks.

    Look k's boundary b_k solves
    P(Z_1 < b_1, ..., Z_{k-1} < b_{k-1}, Z_k >= b_k) = alpha*(t_k) - alpha*(t_{k-1})
    under H0, where Z_k = W(t_k)/sqrt(t_k) for a standard Brownian motion W.
    At t = (1/3, 2/3, 1) and alpha 0.025 this gives 3.710 / 2.511 / 1.993.
    """
    t = _validated_fractions(information_fractions)
    increments = np.diff(np.concatenate([[0.0], obrien_fleming_spending(t, alpha)]))
    bounds = [float(norm_isf(increments[0]))]
    _, state = _first_look(float(t[0]), 0.0, bounds[0])
    for t_k, spend in zip(t[1:], increments[1:], strict=True):
        b_k = _solve_boundary(state, float(t_k), float(spend))
        bounds.append(b_k)
        state = _advance(state, float(t_k), 0.0, b_k)
    return GroupSequentialPlan(tuple(float(x) for x in t), alpha, tuple(bounds))


def _solve_boundary(state: _Continuation, t: float, spend: float) -> float:
    """Boundary at t whose crossing probability (given no earlier crossing) is `spend`."""
    from scipy import optimize

    return float(optimize.brentq(lambda b: _cross_probability(state, t, 0.0, b) - spend, -10.0, 40.0, xtol=1e-10))


def _success_probability(plan: GroupSequentialPlan, drift: float) -> float:
    """P(crossing some efficacy boundary) when E[W(t)] = drift * t."""
    t = plan.information_fractions
    total, state = _first_look(t[0], drift, plan.boundaries[0])
    for t_k, b_k in zip(t[1:], plan.boundaries[1:], strict=True):
        total += _cross_probability(state, t_k, drift, b_k)
        state = _advance(state, t_k, drift, b_k)
    return total


def max_items_inflation(plan: GroupSequentialPlan, power: float = 0.8) -> float:
    """Factor by which the maximum n must exceed the fixed-sample n to keep `power`.

    Plan the fixed-sample n with `items_for_non_inferiority` (or the
    superiority formulas), multiply by this factor, and look at the planned
    information fractions of the inflated n.
    """
    fixed_drift = float(norm_isf(plan.alpha) + norm_ppf(power))
    # Spending alpha early only ever costs power, so the drift lies above the
    # fixed-sample one; OBF designs need a few percent more, never 4x.
    from scipy import optimize

    drift = optimize.brentq(lambda x: _success_probability(plan, x) - power, fixed_drift, 2.0 * fixed_drift, xtol=1e-8)
    return (drift / fixed_drift) ** 2


@functools.lru_cache(maxsize=32)
def equal_looks(looks: int, alpha: float = 0.025) -> GroupSequentialPlan:
    """The O'Brien-Fleming plan for `looks` equally spaced looks (what `gate.sample.looks` means)."""
    if looks < 1:
        raise ValueError(f"looks must be >= 1, got {looks}")
    return plan_group_sequential(tuple((k + 1) / looks for k in range(looks)), alpha)


def final_bound(looks: int, alpha: float = 0.025) -> float:
    """Critical Z for judging the last look of a sequential sample (1.993 for 3 looks at 0.025).

    The earlier looks spent part of alpha, so the final look must not use the
    fixed-sample z_{1-alpha}; pass this as `MetricPolicy.critical_z`.
    """
    return equal_looks(looks, alpha).boundaries[-1]


class SequentialAction(StrEnum):
    """What to do after an interim (or the final) look."""

    SUCCESS = "stop: non-inferiority shown"
    FAILURE = "stop: upper bound below the margin"
    CONTINUE = "continue to the next look"
    INCONCLUSIVE = "final look: neither shown"


def non_inferiority_z(mean_delta: float, se: float, margin: float) -> float:
    """Z = (mean(d) + M) / SE, oriented so that larger means better for the candidate."""
    if se <= 0.0:
        raise ValueError(f"se must be > 0, got {se}")
    return (mean_delta + margin) / se


def sequential_action(plan: GroupSequentialPlan, look: int, z: float) -> SequentialAction:
    """Decide at look `look` (0-based) given Z = (mean(d) + M) / SE.

    Success: Z >= b_k.  Failure (non-binding futility): Z <= -b_k, i.e. the
    upper end of the repeated confidence interval mean(d) + b_k*SE lies below
    -M, so the candidate is credibly worse than the margin.  Because the
    efficacy boundaries ignore this rule, the type I error stays <= alpha
    whether or not anybody stops for futility.  Otherwise continue; at the last
    look, neither outcome is INCONCLUSIVE.
    """
    if not 0 <= look < len(plan.boundaries):
        raise ValueError(f"look must be in [0, {len(plan.boundaries)}), got {look}")
    bound = plan.boundaries[look]
    if z >= bound:
        return SequentialAction.SUCCESS
    if z <= -bound:
        return SequentialAction.FAILURE
    if look == len(plan.boundaries) - 1:
        return SequentialAction.INCONCLUSIVE
    return SequentialAction.CONTINUE
