"""Sample-size planning from a baseline: items needed to detect an effect (superiority) and to
show non-inferiority at the suite's margin, with what that sample would cost.

Binary metrics are planned for the score test the gate uses on them (Nam 1997), continuous ones
with the CLT formula.  A sequential design (gate.sample.sequential) spends alpha at every look,
so its maximum sample is the fixed-sample n times `max_items_inflation` for its looks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from harness.compare.power import (
    ErrorRates,
    equal_looks,
    items_for_continuous,
    items_for_non_inferiority,
    items_for_paired_binary,
    items_for_paired_binary_non_inferiority,
    max_items_inflation,
)
from harness.compare.snapshot import RunSnapshot, metric_item_means
from harness.compare.verdict import smallest_margin
from harness.config.suite import GateMetric, PricingSpec
from harness.runs.gate_record import MarginInReach

# A rerun of an identical configuration can flip no item at all; planning with psi = 0 would
# promise a sample of one. A floor keeps the estimate honest when history shows no flips.
_MIN_FLIP_RATE = 0.01


@dataclass(frozen=True)
class PlanRequest:
    mde: float
    power: float = 0.8
    alpha: float = 0.05


@dataclass(frozen=True)
class MetricPlan:
    metric: str
    binary: bool
    spread: float
    spread_source: str
    superiority_items: int | None
    non_inferiority_items: int | None
    """Fixed-sample items to show non-inferiority with the requested power if the true difference is 0."""
    margin: float
    sequential_items: int | None = None
    """Maximum items of the sequential design with `looks` equal looks (same power), if one is used."""
    looks: int | None = None
    items_available: int = 0
    """Items the evaluated slices hold: the baseline's."""
    within_reach: MarginInReach | None = None
    """When non_inferiority_items exceed items_available: the smallest margin they would settle."""


@dataclass(frozen=True)
class SampleCost:
    items: int
    requests: int
    input_tokens: float
    output_tokens: float
    usd: float | None
    serial_seconds: float


def plan_metric(baseline: RunSnapshot, second: RunSnapshot | None, gate: GateMetric, request: PlanRequest,
                non_inferiority_alpha: float, looks: int | None = None) -> MetricPlan:
    """psi (binary) or var(d) (continuous) from two runs when given, else a conservative guess.

    `looks`: the number of equal looks of a sequential design, or None for a fixed sample.
    """
    binary = gate.metric in baseline.binary_metrics
    base = metric_item_means(baseline, gate.metric)
    if second is not None:
        paired = [(base[i], m) for i, m in metric_item_means(second, gate.metric).items() if i in base]
        deltas = np.array([b - c for b, c in paired])
        spread = float(np.mean(deltas != 0)) if binary else float(np.var(deltas, ddof=1)) if len(deltas) > 1 else 0.0
        source = f"observed between run {baseline.run_id} and run {second.run_id} ({len(paired)} items)"
    else:
        values = np.array(list(base.values()))
        p = float(values.mean()) if len(values) else 0.5
        spread = 2 * p * (1 - p) if binary else 2 * float(values.var(ddof=1)) if len(values) > 1 else 0.0
        source = ("2p(1-p) from the baseline's mean, assuming independent errors (give --against RUN_ID "
                  "for an observed flip rate)" if binary else "2 var(scores) from the baseline (no correlation assumed)")
    if binary:
        spread = max(spread, _MIN_FLIP_RATE, abs(request.mde))
    rates = ErrorRates(alpha=request.alpha, power=request.power, two_sided=True)
    superiority = (items_for_paired_binary(min(spread, 1.0), request.mde, rates) if binary
                   else items_for_continuous(spread, request.mde, rates) if spread > 0 else None)
    ni_rates = ErrorRates(alpha=non_inferiority_alpha, power=request.power, two_sided=False)
    def non_inferiority_at(margin: float) -> int | None:
        if binary:
            return items_for_paired_binary_non_inferiority(min(spread, 1.0), margin, ni_rates) if margin < 1 else None
        return items_for_non_inferiority(spread, margin, ni_rates)

    non_inferiority = non_inferiority_at(gate.margin) if gate.margin > 0 else None
    available = len(baseline.items)
    within_reach = None
    if non_inferiority is not None and non_inferiority > available:
        within_reach = smallest_margin(non_inferiority_at, gate.margin, available)
    sequential = None
    if looks is not None and non_inferiority is not None:
        inflation = max_items_inflation(equal_looks(looks, non_inferiority_alpha), request.power)
        sequential = math.ceil(non_inferiority * inflation)
    return MetricPlan(gate.metric, binary, spread, source, superiority, non_inferiority, gate.margin,
                      sequential, looks, available, within_reach)


def sample_cost(baseline: RunSnapshot, items: int, pricing: PricingSpec | None) -> SampleCost:
    usage = baseline.usage
    requests = items * usage.epochs
    tokens_in, tokens_out = requests * usage.input_tokens, requests * usage.output_tokens
    usd = None
    if pricing is not None:
        usd = (tokens_in * pricing.input_per_mtok + tokens_out * pricing.output_per_mtok) / 1e6
    return SampleCost(items, requests, tokens_in, tokens_out, usd, requests * usage.latency_ms / 1000)

