"""Score test and interval for a difference of paired proportions (Nam 1997; Tango 1998).

With one 0/1 score per item and run, the data reduce to the discordant counts
b (candidate worse) and c (candidate better) out of n items, and the
difference is delta = q_c - q_b.  For H0: delta = delta0 the score statistic is

    Z(delta0) = (c - b - n*delta0) / sqrt(n * (2*q_b~ + delta0 - delta0^2))

where q_b~ is the maximum-likelihood estimate of P(candidate worse) under the
restriction q_c = q_b + delta0: the larger root of

    2n q^2 - [(b + c)(1 - delta0) - 2(n - c)*delta0] q - b*delta0*(1 - delta0) = 0.

Unlike the Wald/CLT interval, whose variance comes from the observed flips, the
restricted variance is the one the data would have if delta0 were true; when
few items change that is what keeps the size of the non-inferiority test near
alpha (docs/statistics.md, "Which test").  Tango's interval collects the delta0
that the two-sided test does not reject; Z decreases in delta0, so the lower
bound clears -M exactly when the one-sided test at delta0 = -M rejects, and the
verdicts are taken from the tests directly (vectorised, so exact enumeration of
all (b, c) outcomes uses the gate's own arithmetic).

The numerator is moved 1/4 towards 0 (a continuity correction).  Exactly
enumerated over the grid of docs/statistics.md (n 50-2000, flip rate
0.02-0.30, margin 0.02-0.10, true difference at the margin), the plain score
test passes up to 0.0264 (n 60, flip 0.15, M 0.02), above the one-sided 0.025
it promises; with the correction the worst cell is 0.0245, for about half a
point to one point of power.

With no discordant pairs the interval is close to +-z^2/(n + z^2), the Wilson
limit on the share of items that could differ (slightly wider, by the
correction), so "3 unchanged items" stay INCONCLUSIVE.

Counts are oriented: b counts items that moved the bad way for the metric.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

__all__ = [
    "restricted_mle",
    "score_interval",
    "score_statistic",
    "score_verdicts",
]

CONTINUITY = 0.25
"""How far the score numerator c - b - n*delta0 is moved towards 0 (see the module docstring)."""

# Z is +-inf where the restricted variance vanishes (delta0 = +-1, or no flips
# at delta0 = 0); a finite stand-in keeps brentq's sign checks well defined.
_INFINITE_Z = 1e12


def restricted_mle(b: npt.ArrayLike, c: npt.ArrayLike, n: npt.ArrayLike, delta0: npt.ArrayLike) -> np.ndarray:
    """q_b~: MLE of P(candidate worse) under q_c - q_b = delta0 (closed form, vectorised)."""
    b, c, n, d0 = (np.asarray(x, dtype=float) for x in (b, c, n, delta0))
    linear = (b + c) * (1.0 - d0) - 2.0 * (n - c) * d0
    # The discriminant is >= 0 in exact arithmetic; rounding can dip below.
    discriminant = np.maximum(linear**2 + 8.0 * n * b * d0 * (1.0 - d0), 0.0)
    return (linear + np.sqrt(discriminant)) / (4.0 * n)


def score_statistic(b: npt.ArrayLike, c: npt.ArrayLike, n: npt.ArrayLike, delta0: npt.ArrayLike) -> np.ndarray:
    """Z(delta0); large when the data favour delta > delta0 (vectorised over all arguments)."""
    b, c, n, d0 = (np.asarray(x, dtype=float) for x in (b, c, n, delta0))
    variance = 2.0 * restricted_mle(b, c, n, d0) + d0 - d0**2
    raw = c - b - n * d0
    numerator = np.sign(raw) * np.maximum(np.abs(raw) - CONTINUITY, 0.0)
    # Where the variance is 0 in exact arithmetic, rounding leaves at most
    # ~1e-16 of either sign, and the numerator is then either exactly 0 or far
    # from it, so only its sign matters.
    degenerate = variance <= 0.0
    with np.errstate(divide="ignore", invalid="ignore"):
        z = numerator / np.sqrt(n * np.where(degenerate, 1.0, variance))
    return np.where(degenerate, np.sign(numerator) * _INFINITE_Z, z)


def score_interval(b: int, c: int, n: int, critical_z: float) -> tuple[float, float]:
    """Tango's interval {delta0 : |Z(delta0)| < critical_z} for delta = q_c - q_b."""
    if n < 1:
        raise ValueError(f"need n >= 1, got {n}")
    if not (0 <= b and 0 <= c and b + c <= n):
        raise ValueError(f"need 0 <= b, c and b + c <= n, got b={b}, c={c}, n={n}")
    estimate = (c - b) / n

    def excess(delta0: float, target: float) -> float:
        return float(score_statistic(b, c, n, delta0)) - target

    lower = -1.0 if estimate <= -1.0 else _root(excess, -1.0, estimate, critical_z)
    upper = 1.0 if estimate >= 1.0 else _root(excess, estimate, 1.0, -critical_z)
    return float(lower), float(upper)


def _root(excess: Callable[[float, float], float], low: float, high: float, target: float,
          xtol: float = 1e-12) -> float:
    """Where excess(x, target) changes sign in [low, high], by bisection to within xtol (the
    tolerance brentq was given; scipy.optimize costs ~0.4 s to import, for every comparison)."""
    at_low = excess(low, target)
    if at_low == 0.0:
        return low
    at_high = excess(high, target)
    if at_high == 0.0:
        return high
    if (at_low < 0.0) == (at_high < 0.0):
        raise ValueError(f"no sign change of the score statistic between {low} and {high}")
    while high - low > xtol:
        middle = (low + high) / 2.0
        at_middle = excess(middle, target)
        if at_middle == 0.0:
            return middle
        if (at_middle < 0.0) == (at_low < 0.0):
            low, at_low = middle, at_middle
        else:
            high = middle
    return (low + high) / 2.0


def score_verdicts(b: npt.ArrayLike, c: npt.ArrayLike, n: npt.ArrayLike, margin: float,
                   critical_z: float) -> np.ndarray:
    """Gate verdict strings (PASS, WARN, FAIL, INCONCLUSIVE) from the score tests, vectorised.

    Non-inferiority (lower bound > -M) iff Z(-M) > critical_z; FAIL (upper
    bound < -M) iff Z(-M) < -critical_z; significantly worse (upper bound < 0)
    iff Z(0) < -critical_z.  Needs n >= 1.
    """
    b, c, n = np.broadcast_arrays(*(np.asarray(x, dtype=float) for x in (b, c, n)))
    if margin > 1.0:
        # delta >= -1 > -M always: non-inferior whatever the data.
        at_margin = np.full(b.shape, np.inf)
    else:
        at_margin = score_statistic(b, c, n, -margin)
    at_zero = score_statistic(b, c, n, 0.0)
    non_inferior = at_margin > critical_z
    return np.select(
        [at_margin < -critical_z, non_inferior & (at_zero < -critical_z), non_inferior],
        ["FAIL", "WARN", "PASS"],
        "INCONCLUSIVE",
    )
