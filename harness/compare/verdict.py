"""The promotion gate: non-inferiority verdicts per metric, combined into one.

Per metric (docs/statistics.md, "The gate"), with d oriented so that positive
means the candidate is better and [L, U] the two-sided (1 - 2*alpha) CI:

- FAIL:          U < -M                (credibly worse than the margin)
- WARN:          L > -M and U < 0      (significantly worse, but within the margin)
- PASS:          L > -M and U >= 0     (non-inferior, not significantly worse)
- INCONCLUSIVE:  otherwise             (the CI straddles -M: more items needed)

Which interval (docs/statistics.md, "Which test"):

- binary scores, one sample per item, no clusters: the score test for paired
  proportions (Nam 1997) and Tango's (1998) interval that inverts it
  (`harness.compare.paired_binary`).  The Wald/CLT interval on d is too
  liberal when few items change (exact size 0.035-0.062 at flip rate 0.03,
  M 0.02, n 100-800; 0.11 at flip 0.10, M 0.10, n 50); the score method stays
  below alpha there.  It is defined from n = 1, with or without flips;
- everything else (continuous, epoch-averaged, clustered): the CLT interval
  mean(d) +- t_{df} * SE, or, when every item moved by the same amount, a
  Wilson bound on the share of items that could differ.

`MetricPolicy.critical_z` replaces the fixed-sample critical value, e.g. with
the final O'Brien-Fleming bound (`harness.compare.power.final_bound`) when a
sequential sample is judged at its last look; the CLT interval then uses the
normal quantile, as the sequential boundaries do.

An INCONCLUSIVE verdict says how many items would most likely settle it if
the observed difference were the truth: a PASS/WARN when the estimate lies
above -M, a FAIL when it lies below (`SettlePlan`, which also finds the margin
a given number of items would settle: `margin_within_reach`).

The verdicts hold numbers only; their English is rendered by the gate record's
renderer (`harness.runs.gate_record.render_metric` and friends), the one the
gate prints, so `MetricVerdict.reason` and `GateVerdict.reasons` say exactly
what gate.json says.

Combining (`combine`):

- primary metrics: all must pass (intersection-union, no correction); the
  overall verdict is the worst of them, FAIL > INCONCLUSIVE > WARN > PASS;
- guardrails ("any-of" alarms such as safety, refusals, invalid JSON): Holm at
  FWER 0.05.  A guardrail alarms when its Holm-adjusted p is below the FWER
  and it moved the bad way.  An alarm lowers the overall verdict to at least
  WARN, or to FAIL for a guardrail marked `blocking`; it never raises it;
- exploratory slices: Benjamini-Hochberg at q = 0.10, reported as warnings
  only; they never change the verdict.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from harness.compare.distributions import bh_adjusted, norm_isf, norm_sf, t_isf
from harness.compare.multiple_testing import holm_adjusted
from harness.compare.paired import PairedComparison
from harness.compare.paired_binary import score_interval, score_verdicts
from harness.compare.power import (
    ErrorRates,
    items_for_non_inferiority,
    items_for_paired_binary_non_inferiority,
)
from harness.compare.verdict_kind import NoInterval, SettlePremise, Verdict
from harness.runs.gate_record import (
    GuardrailReason,
    MarginInReach,
    MetricReason,
    render_metric,
    render_primary,
    render_slice_warning,
)

__all__ = [
    "GatePolicy",
    "GateVerdict",
    "GuardrailCheck",
    "GuardrailOutcome",
    "MetricPolicy",
    "MetricVerdict",
    "SettlePlan",
    "Verdict",
    "classify",
    "clt_interval",
    "combine",
    "decide",
    "guardrail_check",
    "guardrail_reason",
    "margin_within_reach",
    "metric_reason",
    "worst",
]


def worst(verdicts: Iterable[Verdict]) -> Verdict:
    """Most severe verdict; PASS for an empty iterable."""
    return max(verdicts, key=lambda v: v.severity, default=Verdict.PASS)


@dataclass(frozen=True)
class MetricPolicy:
    """How one metric is gated; fixed in the suite before the run."""

    name: str
    margin: float = 0.02
    """Non-inferiority margin M, in the metric's own units (0.02 = 2 points of a rate)."""
    higher_is_better: bool = True
    alpha: float = 0.025
    """One-sided type I error; the decision uses the two-sided (1 - 2*alpha) CI."""
    power: float = 0.8
    """Power assumed when estimating how many items an INCONCLUSIVE result needs."""
    critical_z: float | None = None
    """Critical value of the decision; None = the fixed-sample z_{1-alpha}.  Set it to
    `power.final_bound(looks, alpha)` for a sequential sample's last look."""

    def __post_init__(self) -> None:
        if self.margin <= 0.0:
            raise ValueError(f"{self.name}: margin must be > 0, got {self.margin}")
        if not 0.0 < self.alpha < 0.5:
            raise ValueError(f"{self.name}: one-sided alpha must lie in (0, 0.5), got {self.alpha}")
        if self.critical_z is not None and not self.critical_z > 0.0:
            raise ValueError(f"{self.name}: critical_z must be > 0, got {self.critical_z}")

    @property
    def z(self) -> float:
        """The critical value the decision uses."""
        return float(norm_isf(self.alpha)) if self.critical_z is None else self.critical_z

    @property
    def ci_level(self) -> float:
        """Two-sided level of the CI the decision uses (0.95 for alpha 0.025; 95.4% at z = 1.993)."""
        return 1.0 - 2.0 * self.alpha if self.critical_z is None else 1.0 - 2.0 * float(norm_sf(self.critical_z))


@dataclass(frozen=True)
class SettlePlan:
    """How an INCONCLUSIVE verdict's items are planned, so they can be planned at another margin."""

    premise: SettlePremise
    formula: Literal["score", "clt", "wilson"]
    """Nam's score-test size (binary), the CLT formula, or the smallest n whose Wilson bound clears."""
    oriented_mean: float
    """The observed difference, positive = better: taken as the truth."""
    spread: float
    """The flip rate (score), var(d) per item (clt); unused for wilson."""
    z: float
    power: float

    def items_at(self, margin: float) -> int | None:
        """Total items that would most likely settle the verdict at `margin`; None when none would."""
        rates = ErrorRates(alpha=float(norm_sf(self.z)), power=self.power, two_sided=False)
        if self.formula == "wilson":
            # Smallest n whose bound z^2/(n+z^2) clears the margin; none exists when every
            # item already got worse by the margin or more.
            if self.oriented_mean <= -margin:
                return None
            allowed_share = (self.oriented_mean + margin) / (1.0 + self.oriented_mean)
            return math.floor(self.z**2 * (1.0 - allowed_share) / allowed_share) + 1
        if self.formula == "score":
            if margin >= 1.0:
                return None
            return items_for_paired_binary_non_inferiority(self.spread, margin, rates, self.oriented_mean)
        # With the margin argument set to the distance from -M, the non-inferiority
        # formula is (z_a + z_b)^2 var / distance^2 in either direction.
        distance = abs(self.oriented_mean + margin)
        return items_for_non_inferiority(self.spread, distance, rates) if distance > 0 else None


@dataclass(frozen=True)
class MetricVerdict:
    """Gate outcome for one primary metric.  Numbers are in the metric's own
    orientation (a rise in a lower-is-better metric is positive).  The English is rendered
    from these fields by `harness.runs.gate_record.render_metric` (`reason`)."""

    metric: str
    verdict: Verdict
    n: int
    """Paired items."""
    mean_delta: float | None
    ci: tuple[float, float] | None
    """The interval the decision used, named by `ci_method`."""
    ci_level: float
    margin: float
    higher_is_better: bool
    items_needed: int | None
    """For INCONCLUSIVE: total items at which, if the observed difference were the truth, the
    gate would with probability `power` show non-inferiority (estimate above -M) or a FAIL
    (estimate below -M).  None otherwise, or when the estimate sits on the margin."""
    more_items_needed: int | None
    """items_needed minus the items already run (never negative)."""
    p_value: float | None
    test_name: str
    """The secondary test behind `p_value` (e.g. exact McNemar), not the interval's method."""
    ci_method: str = ""
    """How `ci` was formed: "Tango score", "CLT t", "CLT normal", "Wilson bound" or ""."""
    settle: SettlePlan | None = None
    """For INCONCLUSIVE: how `items_needed` was planned."""
    no_interval: NoInterval | None = None
    """Why `ci` is None, when it is."""

    @property
    def reason(self) -> str:
        """`VERDICT: name effect, interval, outcome...`, from the single renderer."""
        return render_metric(metric_reason(self))


def metric_reason(verdict: MetricVerdict, metric: str | None = None, slice: str = "",
                  items_available: int | None = None) -> MetricReason:
    """The record of `verdict`.  `items_available`: items the evaluated slices hold, when known."""
    return MetricReason(
        metric=verdict.metric if metric is None else metric, slice=slice, verdict=verdict.verdict, n=verdict.n,
        mean_delta=_number(verdict.mean_delta), ci=verdict.ci, ci_level=verdict.ci_level, margin=verdict.margin,
        higher_is_better=verdict.higher_is_better, ci_method=verdict.ci_method, test=verdict.test_name,
        p=_number(verdict.p_value), items_needed=verdict.items_needed,
        premise=None if verdict.settle is None else verdict.settle.premise, no_interval=verdict.no_interval,
        items_available=items_available,
        within_reach=None if items_available is None else margin_within_reach(verdict, items_available))


def _number(value: float | None) -> float | None:
    """NaN has no JSON form; it means the same as no value here."""
    return None if value is None or math.isnan(value) else float(value)


def margin_within_reach(verdict: MetricVerdict, available: int) -> MarginInReach | None:
    """When an INCONCLUSIVE verdict needs more items than `available`: the smallest margin (to
    0.001) those items would settle at the same premise, with the items it needs.  None when
    they suffice, or when the estimate lies below the margin (a larger margin would then be
    chosen after seeing the data)."""
    plan, needed = verdict.settle, verdict.items_needed
    if plan is None or needed is None or needed <= available or plan.oriented_mean <= -verdict.margin:
        return None
    return smallest_margin(plan.items_at, verdict.margin, available)


def smallest_margin(items_at: Callable[[float], int | None], margin: float,
                    available: int) -> MarginInReach | None:
    """Smallest M' > `margin`, rounded up to 0.001, with items_at(M') <= `available`, and its items.

    items_at falls as the margin grows; None from it means no number of items (e.g. a margin
    of 1 or more for binary scores).  The planning formulas are inverted numerically, so every
    premise is inverted the same way."""
    def reachable(m: float) -> bool:
        items = items_at(m)
        return items is not None and items <= available

    low, high = margin, margin
    for _ in range(20):
        high *= 2.0
        if reachable(high):
            break
        if items_at(high) is None and high >= 1.0:
            high = math.nextafter(1.0, 0.0)
            if not reachable(high):
                return None
            break
        low = high
    else:
        return None
    for _ in range(60):
        middle = (low + high) / 2.0
        low, high = (low, middle) if reachable(middle) else (middle, high)
    rounded = math.ceil(high * 1000 - 1e-9) / 1000
    chosen = rounded if reachable(rounded) else high
    items = items_at(chosen)
    return None if items is None else MarginInReach(margin=chosen, items=items)


def classify(lower: float | np.ndarray, upper: float | np.ndarray, margin: float) -> Verdict | np.ndarray:
    """Verdict from CI bounds oriented so that positive means the candidate is better.

    Vectorised: array bounds give an array of verdict strings, which compare
    equal to the `Verdict` members.
    """
    lower, upper = np.asarray(lower, dtype=float), np.asarray(upper, dtype=float)
    within = lower > -margin
    result = np.select(
        [upper < -margin, within & (upper < 0.0), within],
        [Verdict.FAIL.value, Verdict.WARN.value, Verdict.PASS.value],
        Verdict.INCONCLUSIVE.value,
    )
    return Verdict(str(result)) if result.ndim == 0 else result


def _classify_one(lower: float, upper: float, margin: float) -> Verdict:
    return Verdict(str(classify(lower, upper, margin)))


def clt_interval(
    mean: float | np.ndarray, se: float | np.ndarray, df: int, policy: MetricPolicy
) -> tuple[np.ndarray, np.ndarray]:
    """The CLT interval the gate uses, vectorised: mean +- t_{df, 1-alpha} * SE, or
    mean +- critical_z * SE when the policy sets one (sequential bounds are normal quantiles)."""
    mean, se = np.asarray(mean, dtype=float), np.asarray(se, dtype=float)
    quantile = float(t_isf(policy.alpha, df)) if policy.critical_z is None else policy.critical_z
    return mean - quantile * se, mean + quantile * se


@dataclass(frozen=True)
class _Decision:
    """What one of the three decision paths found."""

    verdict: Verdict
    ci: tuple[float, float] | None = None
    ci_method: str = ""
    settle: SettlePlan | None = None
    no_interval: NoInterval | None = None


def decide(comparison: PairedComparison, policy: MetricPolicy) -> MetricVerdict:
    """Non-inferiority verdict for one metric (see the module docstring)."""
    if comparison.n == 0 or comparison.mean_delta is None:
        decision = _Decision(Verdict.INCONCLUSIVE, no_interval=NoInterval.NO_ITEMS)
    elif comparison.discordant is not None and comparison.n_clusters is None:
        decision = _decide_binary(comparison, policy)
    elif comparison.se is None or comparison.df is None:
        decision = _Decision(Verdict.INCONCLUSIVE, no_interval=NoInterval.NO_STANDARD_ERROR)
    elif comparison.se_is_zero:
        decision = _decide_zero_variance(comparison, policy)
    else:
        decision = _decide_clt(comparison, policy)
    settle = decision.settle if decision.verdict is Verdict.INCONCLUSIVE else None
    needed = None if settle is None else settle.items_at(policy.margin)
    return MetricVerdict(
        metric=policy.name, verdict=decision.verdict, n=comparison.n, mean_delta=comparison.mean_delta,
        ci=decision.ci, ci_level=policy.ci_level, margin=policy.margin, higher_is_better=policy.higher_is_better,
        items_needed=needed, more_items_needed=None if needed is None else max(0, needed - comparison.n),
        p_value=comparison.p_value, test_name=comparison.test_name, ci_method=decision.ci_method,
        settle=settle, no_interval=decision.no_interval)


def _decide_clt(comparison: PairedComparison, policy: MetricPolicy) -> _Decision:
    assert comparison.mean_delta is not None and comparison.se is not None and comparison.df is not None
    sign = 1.0 if policy.higher_is_better else -1.0
    lower, upper = (float(x) for x in clt_interval(comparison.mean_delta, comparison.se, comparison.df, policy))
    oriented = (lower, upper) if sign > 0 else (-upper, -lower)
    settle = SettlePlan(SettlePremise.OBSERVED, "clt", sign * comparison.mean_delta,
                        comparison.variance_per_item or 0.0, policy.z, policy.power)
    method = "CLT t" if policy.critical_z is None else "CLT normal"
    return _Decision(_classify_one(*oriented, policy.margin), (lower, upper), method, settle)


def _decide_binary(comparison: PairedComparison, policy: MetricPolicy) -> _Decision:
    """Score test and Tango interval on the discordant counts (`paired_binary`).

    The counts are oriented first: for a lower-is-better metric the items
    that rose are the ones that got worse.
    """
    assert comparison.discordant is not None
    counts = comparison.discordant
    worse, better = (counts.b, counts.c) if policy.higher_is_better else (counts.c, counts.b)
    verdict = Verdict(str(score_verdicts(worse, better, counts.n, policy.margin, policy.z)))
    lower, upper = score_interval(worse, better, counts.n, policy.z)
    natural = (lower, upper) if policy.higher_is_better else (-upper, -lower)
    premise = SettlePremise.NO_CHANGE if counts.flip_rate == 0.0 else SettlePremise.OBSERVED
    settle = SettlePlan(premise, "score", (better - worse) / counts.n, counts.flip_rate, policy.z, policy.power)
    return _Decision(verdict, natural, "Tango score", settle)


def _decide_zero_variance(comparison: PairedComparison, policy: MetricPolicy) -> _Decision:
    """All items moved by the same amount c, so the CLT interval is a point.

    For scores in [0, 1] (d in [-1, 1]) the true mean lies in
    [c - q(1 + c), c + q(1 - c)], q being the share of items whose d differs
    from c; none of n did, so q is bounded by the one-sided Wilson upper limit
    z^2 / (n + z^2).  This keeps "3 unchanged items" from passing the gate.
    (Binary scores never get here: the score method covers them, and with no
    flips its interval is this same bound.)
    """
    if not comparison.scores_in_unit_interval:
        return _Decision(Verdict.INCONCLUSIVE, no_interval=NoInterval.UNBOUNDED_SHIFT)
    oriented_mean = (comparison.mean_delta or 0.0) * (1.0 if policy.higher_is_better else -1.0)
    z = policy.z
    share_bound = z**2 / (comparison.n + z**2)
    oriented = (
        oriented_mean - share_bound * (1.0 + oriented_mean),
        oriented_mean + share_bound * (1.0 - oriented_mean),
    )
    natural = oriented if policy.higher_is_better else (-oriented[1], -oriented[0])
    settle = SettlePlan(SettlePremise.SAME_SHIFT, "wilson", oriented_mean, 0.0, z, policy.power)
    return _Decision(_classify_one(*oriented, policy.margin), natural, "Wilson bound", settle)


# --- combining metrics, guardrails and slices ---------------------------------


@dataclass(frozen=True)
class GuardrailCheck:
    """A guardrail or exploratory slice: did it move the bad way, and how surely?"""

    name: str
    p_value: float
    """Two-sided p of the paired test for this signal (1 when there is nothing to test)."""
    worsened: bool
    """The change goes the bad way (e.g. the refusal rate rose)."""
    blocking: bool = False
    """An alarm makes the gate FAIL instead of WARN (e.g. safety)."""
    mean_delta: float | None = None
    """Candidate minus baseline, for the reason."""
    test_name: str = ""
    """The paired test behind `p_value`; "" when none was run."""


def guardrail_check(comparison: PairedComparison, policy: MetricPolicy, blocking: bool = False) -> GuardrailCheck:
    """Turn a paired comparison of a guardrail metric into a `GuardrailCheck`.

    With no items the check carries p = 1: there is nothing to alarm on.
    """
    if comparison.mean_delta is None or comparison.p_value is None:
        return GuardrailCheck(policy.name, 1.0, False, blocking)
    delta = comparison.mean_delta
    worsened = delta < 0.0 if policy.higher_is_better else delta > 0.0
    return GuardrailCheck(policy.name, comparison.p_value, worsened, blocking, delta, comparison.test_name)


@dataclass(frozen=True)
class GuardrailOutcome:
    """A check after the multiplicity correction."""

    check: GuardrailCheck
    adjusted_p: float
    alarmed: bool


def guardrail_reason(outcome: GuardrailOutcome, name: str | None = None, metric: str | None = None) -> GuardrailReason:
    """The record of a corrected check; `name` and `metric` default to the check's name."""
    check = outcome.check
    return GuardrailReason(
        name=check.name if name is None else name, metric=check.name if metric is None else metric,
        mean_delta=_number(check.mean_delta), test=check.test_name,
        p=_number(check.p_value) if check.test_name else None, adjusted_p=outcome.adjusted_p,
        worsened=check.worsened, alarmed=outcome.alarmed, blocking=check.blocking)


@dataclass(frozen=True)
class GatePolicy:
    """Error rates for the combination step."""

    guardrail_fwer: float = 0.05
    """Family-wise error rate for guardrails (Holm)."""
    slice_fdr: float = 0.10
    """False discovery rate q for exploratory slices (Benjamini-Hochberg)."""


@dataclass(frozen=True)
class GateVerdict:
    """Overall promotion decision with everything that led to it."""

    verdict: Verdict
    metrics: tuple[MetricVerdict, ...]
    guardrails: tuple[GuardrailOutcome, ...]
    slices: tuple[GuardrailOutcome, ...]

    @property
    def reasons(self) -> list[str]:
        """One line per primary metric and per alarmed guardrail, from the single renderer."""
        return render_primary([metric_reason(m) for m in self.metrics], [guardrail_reason(g) for g in self.guardrails])

    @property
    def warnings(self) -> list[str]:
        """Flagged exploratory slices: worth a look, not a reason to block."""
        return [render_slice_warning(guardrail_reason(s)) for s in self.slices if s.alarmed]


def combine(
    primary_verdicts: Sequence[MetricVerdict],
    guardrail_results: Sequence[GuardrailCheck] = (),
    slice_results: Sequence[GuardrailCheck] = (),
    policy: GatePolicy = GatePolicy(),
) -> GateVerdict:
    """Overall verdict: worst primary, lowered by Holm-significant guardrail alarms."""
    overall = worst(m.verdict for m in primary_verdicts) if primary_verdicts else Verdict.INCONCLUSIVE
    guardrails = _holm(guardrail_results, policy.guardrail_fwer)
    for outcome in guardrails:
        if outcome.alarmed:
            overall = worst([overall, Verdict.FAIL if outcome.check.blocking else Verdict.WARN])
    slices = _benjamini_hochberg(slice_results, policy.slice_fdr)
    return GateVerdict(overall, tuple(primary_verdicts), guardrails, slices)


def _holm(checks: Sequence[GuardrailCheck], fwer: float) -> tuple[GuardrailOutcome, ...]:
    if not checks:
        return ()
    adjusted = holm_adjusted([c.p_value for c in checks])
    return tuple(
        GuardrailOutcome(c, float(p), bool(p <= fwer) and c.worsened) for c, p in zip(checks, adjusted, strict=True)
    )


def _benjamini_hochberg(checks: Sequence[GuardrailCheck], q: float) -> tuple[GuardrailOutcome, ...]:
    if not checks:
        return ()
    adjusted = bh_adjusted([c.p_value for c in checks])
    return tuple(
        GuardrailOutcome(c, float(p), bool(p <= q) and c.worsened) for c, p in zip(checks, adjusted, strict=True)
    )
