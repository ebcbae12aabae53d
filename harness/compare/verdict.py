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
above -M, a FAIL when it lies below.

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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
from scipy import stats
from statsmodels.stats.multitest import multipletests

from harness.compare.paired import PairedComparison
from harness.compare.paired_binary import score_interval, score_verdicts
from harness.compare.power import (
    ErrorRates,
    items_for_non_inferiority,
    items_for_paired_binary_non_inferiority,
)

__all__ = [
    "GatePolicy",
    "GateVerdict",
    "GuardrailCheck",
    "GuardrailOutcome",
    "MetricPolicy",
    "MetricVerdict",
    "Verdict",
    "classify",
    "clt_interval",
    "combine",
    "decide",
    "guardrail_check",
    "worst",
]


class Verdict(StrEnum):
    """Outcome of the gate for one metric or overall."""

    PASS = "PASS"
    WARN = "WARN"
    INCONCLUSIVE = "INCONCLUSIVE"
    FAIL = "FAIL"

    @property
    def severity(self) -> int:
        """0 (PASS) to 3 (FAIL); the overall verdict is the most severe."""
        return _SEVERITY[self]


_SEVERITY = {Verdict.PASS: 0, Verdict.WARN: 1, Verdict.INCONCLUSIVE: 2, Verdict.FAIL: 3}


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
    unit: str = "pts"
    """Unit for reasons, after multiplying by `display_scale`."""
    display_scale: float = 100.0
    """Multiplier for reasons: 100 turns a [0, 1] rate into percentage points."""
    decimals: int = 1
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
        return float(stats.norm.isf(self.alpha)) if self.critical_z is None else self.critical_z

    @property
    def ci_level(self) -> float:
        """Two-sided level of the CI the decision uses (0.95 for alpha 0.025; 95.4% at z = 1.993)."""
        return 1.0 - 2.0 * self.alpha if self.critical_z is None else 1.0 - 2.0 * float(stats.norm.sf(self.critical_z))


@dataclass(frozen=True)
class MetricVerdict:
    """Gate outcome for one primary metric.  Numbers are in the metric's own
    orientation (a rise in a lower-is-better metric is positive)."""

    metric: str
    verdict: Verdict
    reason: str
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
    quantile = float(stats.t.isf(policy.alpha, df)) if policy.critical_z is None else policy.critical_z
    return mean - quantile * se, mean + quantile * se


def decide(comparison: PairedComparison, policy: MetricPolicy) -> MetricVerdict:
    """Non-inferiority verdict for one metric (see the module docstring)."""
    sign = 1.0 if policy.higher_is_better else -1.0
    fmt = _Formatter(policy)
    if comparison.n == 0 or comparison.mean_delta is None:
        return _verdict(comparison, policy, Verdict.INCONCLUSIVE, f"{policy.name}: no paired items", None)
    if comparison.discordant is not None and comparison.n_clusters is None:
        return _decide_binary(comparison, policy)
    if comparison.se is None or comparison.df is None:
        reason = f"{policy.name}: {comparison.n} item(s): no standard error"
        return _verdict(comparison, policy, Verdict.INCONCLUSIVE, reason, None)
    oriented_mean = sign * comparison.mean_delta
    if comparison.se_is_zero:
        return _decide_zero_variance(comparison, policy, oriented_mean)

    lower, upper = (float(x) for x in clt_interval(comparison.mean_delta, comparison.se, comparison.df, policy))
    oriented = (lower, upper) if sign > 0 else (-upper, -lower)
    verdict = _classify_one(*oriented, policy.margin)
    reason = f"{fmt.effect(comparison.mean_delta)}, {fmt.interval((lower, upper))}, {fmt.outcome(verdict)}"
    needed = None
    if verdict is Verdict.INCONCLUSIVE:
        variance = comparison.variance_per_item or 0.0
        distance = abs(oriented_mean + policy.margin)
        # With the margin argument set to the distance from -M, the non-inferiority
        # formula is (z_a + z_b)^2 var / distance^2 in either direction.
        needed = items_for_non_inferiority(variance, distance, _planning_rates(policy)) if distance > 0 else None
        reason += "; " + fmt.settle(needed, comparison, oriented_mean)
    reason += fmt.secondary(comparison)
    method = "CLT t" if policy.critical_z is None else "CLT normal"
    return _verdict(comparison, policy, verdict, reason, needed, (lower, upper), method)


def _planning_rates(policy: MetricPolicy) -> ErrorRates:
    return ErrorRates(alpha=float(stats.norm.sf(policy.z)), power=policy.power, two_sided=False)


def _decide_binary(comparison: PairedComparison, policy: MetricPolicy) -> MetricVerdict:
    """Score test and Tango interval on the discordant counts (`paired_binary`).

    The counts are oriented first: for a lower-is-better metric the items
    that rose are the ones that got worse.
    """
    assert comparison.discordant is not None and comparison.mean_delta is not None
    fmt = _Formatter(policy)
    counts = comparison.discordant
    worse, better = (counts.b, counts.c) if policy.higher_is_better else (counts.c, counts.b)
    verdict = Verdict(str(score_verdicts(worse, better, counts.n, policy.margin, policy.z)))
    lower, upper = score_interval(worse, better, counts.n, policy.z)
    natural = (lower, upper) if policy.higher_is_better else (-upper, -lower)
    reason = f"{fmt.effect(comparison.mean_delta)}, {fmt.interval(natural)}, {fmt.outcome(verdict)}"
    needed = None
    if verdict is Verdict.INCONCLUSIVE:
        oriented_mean = (better - worse) / counts.n
        if policy.margin < 1.0:
            needed = items_for_paired_binary_non_inferiority(
                counts.flip_rate, policy.margin, _planning_rates(policy), oriented_mean)
        reason += "; " + fmt.settle(needed, comparison, oriented_mean)
    reason += fmt.secondary(comparison)
    return _verdict(comparison, policy, verdict, reason, needed, natural, "Tango score")


def _decide_zero_variance(comparison: PairedComparison, policy: MetricPolicy, oriented_mean: float) -> MetricVerdict:
    """All items moved by the same amount c, so the CLT interval is a point.

    For scores in [0, 1] (d in [-1, 1]) the true mean lies in
    [c - q(1 + c), c + q(1 - c)], q being the share of items whose d differs
    from c; none of n did, so q is bounded by the one-sided Wilson upper limit
    z^2 / (n + z^2).  This keeps "3 unchanged items" from passing the gate.
    (Binary scores never get here: the score method covers them, and with no
    flips its interval is this same bound.)
    """
    fmt = _Formatter(policy)
    shift = comparison.mean_delta or 0.0
    if shift == 0:
        prefix = f"{policy.name}: no difference on any of the {comparison.n} paired items"
    else:
        prefix = f"{policy.name}: every one of the {comparison.n} items changed by {fmt.number(shift)} {policy.unit}"
    if not comparison.scores_in_unit_interval:
        reason = f"{prefix}, so the SE is 0 and, for scores outside [0, 1], no interval can be formed"
        return _verdict(comparison, policy, Verdict.INCONCLUSIVE, reason, None)
    z = policy.z
    share_bound = z**2 / (comparison.n + z**2)
    oriented = (
        oriented_mean - share_bound * (1.0 + oriented_mean),
        oriented_mean + share_bound * (1.0 - oriented_mean),
    )
    natural = oriented if policy.higher_is_better else (-oriented[1], -oriented[0])
    verdict = _classify_one(*oriented, policy.margin)
    reason = f"{prefix}; Wilson bound on items that could differ gives {fmt.interval(natural)}, {fmt.outcome(verdict)}"
    needed = None
    if verdict is Verdict.INCONCLUSIVE:
        # Smallest n whose bound z^2/(n+z^2) clears the margin; none exists
        # when every item already got worse by the margin or more.
        if oriented_mean > -policy.margin:
            allowed_share = (oriented_mean + policy.margin) / (1.0 + oriented_mean)
            needed = math.floor(z**2 * (1.0 - allowed_share) / allowed_share) + 1
        reason += "; " + fmt.more_items(needed, comparison.n, "if further items change the same way")
    return _verdict(comparison, policy, verdict, reason, needed, natural, "Wilson bound")


def _verdict(
    comparison: PairedComparison,
    policy: MetricPolicy,
    verdict: Verdict,
    reason: str,
    needed: int | None,
    ci: tuple[float, float] | None = None,
    ci_method: str = "",
) -> MetricVerdict:
    return MetricVerdict(
        metric=policy.name,
        verdict=verdict,
        reason=reason,
        mean_delta=comparison.mean_delta,
        ci=ci,
        ci_level=policy.ci_level,
        margin=policy.margin,
        higher_is_better=policy.higher_is_better,
        items_needed=needed,
        more_items_needed=None if needed is None else max(0, needed - comparison.n),
        p_value=comparison.p_value,
        test_name=comparison.test_name,
        ci_method=ci_method,
    )


@dataclass(frozen=True)
class _Formatter:
    """Human-readable pieces of a reason, in the metric's own orientation."""

    policy: MetricPolicy

    def number(self, value: float) -> str:
        return f"{value * self.policy.display_scale:+.{self.policy.decimals}f}"

    def effect(self, mean_delta: float) -> str:
        return f"{self.policy.name} {self.number(mean_delta)} {self.policy.unit}"

    def interval(self, bounds: tuple[float, float]) -> str:
        level = f"{self.policy.ci_level * 100:g}%"
        return f"{level} CI [{self.number(bounds[0])}, {self.number(bounds[1])}]"

    def margin(self) -> str:
        signed = -self.policy.margin if self.policy.higher_is_better else self.policy.margin
        return f"the {signed * self.policy.display_scale:+g} {self.policy.unit} margin"

    def outcome(self, verdict: Verdict) -> str:
        worse_side = "below" if self.policy.higher_is_better else "above"
        better_side = "above" if self.policy.higher_is_better else "below"
        return {
            Verdict.FAIL: f"{worse_side} {self.margin()}",
            Verdict.WARN: f"significantly worse, but within {self.margin()}",
            Verdict.PASS: f"entirely {better_side} {self.margin()} (non-inferior)",
            Verdict.INCONCLUSIVE: f"straddles {self.margin()}",
        }[verdict]

    def more_items(self, needed: int | None, n: int, premise: str) -> str:
        if needed is None:
            return "no number of items can show non-inferiority at this estimate"
        if needed <= n:
            return f"{n} items already exceed the {needed} planned {premise}: the estimate is close to the margin"
        return f"about {needed} items ({needed - n} more) would settle it {premise}"

    def settle(self, needed: int | None, comparison: PairedComparison, oriented_mean: float) -> str:
        """What more items would most likely show, taking the observed difference as the truth.

        Assuming a true difference of 0 instead would promise a PASS to an
        estimate far below the margin, where more items would confirm a FAIL.
        """
        n = comparison.n
        worse_side = "below" if self.policy.higher_is_better else "above"
        if comparison.discordant is not None and comparison.discordant.flip_rate == 0.0:
            return self.more_items(needed, n, "if further items do not change either")
        if oriented_mean < -self.policy.margin:
            head = f"the estimate is {worse_side} {self.margin()}: more items would most likely show a FAIL"
            if needed is None or needed <= n:
                return head
            return f"{head} (about {needed} items, {needed - n} more, to confirm it at the observed effect)"
        if needed is None:
            return f"the estimate sits on {self.margin()}: no number of items is likely to settle it"
        premise = f"if the true difference is the observed {self.number(comparison.mean_delta or 0.0)} {self.policy.unit}"
        return self.more_items(needed, n, premise)

    @staticmethod
    def secondary(comparison: PairedComparison) -> str:
        if comparison.p_value is None:
            return ""
        return f" ({comparison.test_name} p={comparison.p_value:.3g})"


# --- combining metrics, guardrails and slices ---------------------------------


@dataclass(frozen=True)
class GuardrailCheck:
    """A guardrail or exploratory slice: did it move the bad way, and how surely?"""

    name: str
    p_value: float
    """Two-sided p of the paired test for this signal."""
    worsened: bool
    """The change goes the bad way (e.g. the refusal rate rose)."""
    blocking: bool = False
    """An alarm makes the gate FAIL instead of WARN (e.g. safety)."""
    summary: str = ""


def guardrail_check(comparison: PairedComparison, policy: MetricPolicy, blocking: bool = False) -> GuardrailCheck:
    """Turn a paired comparison of a guardrail metric into a `GuardrailCheck`.

    With no items the check carries p = 1: there is nothing to alarm on.
    """
    fmt = _Formatter(policy)
    if comparison.mean_delta is None or comparison.p_value is None:
        return GuardrailCheck(policy.name, 1.0, False, blocking, f"{policy.name}: no paired items")
    delta = comparison.mean_delta
    worsened = delta < 0.0 if policy.higher_is_better else delta > 0.0
    summary = f"{fmt.effect(delta)}{fmt.secondary(comparison)}"
    return GuardrailCheck(policy.name, comparison.p_value, worsened, blocking, summary)


@dataclass(frozen=True)
class GuardrailOutcome:
    """A check after the multiplicity correction."""

    check: GuardrailCheck
    adjusted_p: float
    alarmed: bool


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
    reasons: tuple[str, ...]
    """One line per primary metric and per alarmed guardrail."""
    warnings: tuple[str, ...]
    """Flagged exploratory slices: worth a look, not a reason to block."""


def combine(
    primary_verdicts: Sequence[MetricVerdict],
    guardrail_results: Sequence[GuardrailCheck] = (),
    slice_results: Sequence[GuardrailCheck] = (),
    policy: GatePolicy = GatePolicy(),
) -> GateVerdict:
    """Overall verdict: worst primary, lowered by Holm-significant guardrail alarms."""
    reasons = [f"{m.verdict.value}: {m.reason}" for m in primary_verdicts]
    overall = worst(m.verdict for m in primary_verdicts)
    if not primary_verdicts:
        overall = Verdict.INCONCLUSIVE
        reasons.append("INCONCLUSIVE: no primary metrics to gate on")

    guardrails = _holm(guardrail_results, policy.guardrail_fwer)
    for outcome in guardrails:
        if outcome.alarmed:
            effect = Verdict.FAIL if outcome.check.blocking else Verdict.WARN
            overall = worst([overall, effect])
            reasons.append(
                f"{effect.value}: guardrail {outcome.check.name} worsened "
                f"(Holm-adjusted p={outcome.adjusted_p:.3g}) {outcome.check.summary}".rstrip()
            )

    slices = _benjamini_hochberg(slice_results, policy.slice_fdr)
    warnings = tuple(
        f"slice {s.check.name} worsened (BH-adjusted p={s.adjusted_p:.3g}) {s.check.summary}".rstrip()
        for s in slices
        if s.alarmed
    )
    return GateVerdict(overall, tuple(primary_verdicts), guardrails, slices, tuple(reasons), warnings)


def _holm(checks: Sequence[GuardrailCheck], fwer: float) -> tuple[GuardrailOutcome, ...]:
    if not checks:
        return ()
    reject, adjusted, _, _ = multipletests([c.p_value for c in checks], alpha=fwer, method="holm")
    return tuple(
        GuardrailOutcome(c, float(p), bool(r) and c.worsened) for c, p, r in zip(checks, adjusted, reject, strict=True)
    )


def _benjamini_hochberg(checks: Sequence[GuardrailCheck], q: float) -> tuple[GuardrailOutcome, ...]:
    if not checks:
        return ()
    adjusted = stats.false_discovery_control([c.p_value for c in checks], method="bh")
    return tuple(
        GuardrailOutcome(c, float(p), bool(p <= q) and c.worsened) for c, p in zip(checks, adjusted, strict=True)
    )
