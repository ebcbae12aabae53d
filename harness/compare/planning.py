"""Sample-size planning from a baseline: items needed to detect an effect (superiority) and to
show non-inferiority at the suite's margin, with what that sample would cost."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from harness.compare.power import ErrorRates, items_for_continuous, items_for_non_inferiority, items_for_paired_binary
from harness.compare.snapshot import RunSnapshot, metric_item_means
from harness.config.suite import GateMetric, PricingSpec

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
    margin: float


@dataclass(frozen=True)
class SampleCost:
    items: int
    requests: int
    input_tokens: float
    output_tokens: float
    usd: float | None
    serial_seconds: float


def plan_metric(baseline: RunSnapshot, second: RunSnapshot | None, gate: GateMetric, request: PlanRequest,
                non_inferiority_alpha: float) -> MetricPlan:
    """psi (binary) or var(d) (continuous) from two runs when given, else a conservative guess."""
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
    non_inferiority = items_for_non_inferiority(spread, gate.margin, ni_rates) if gate.margin > 0 else None
    return MetricPlan(gate.metric, binary, spread, source, superiority, non_inferiority, gate.margin)


def sample_cost(baseline: RunSnapshot, items: int, pricing: PricingSpec | None) -> SampleCost:
    usage = baseline.usage
    requests = items * usage.epochs
    tokens_in, tokens_out = requests * usage.input_tokens, requests * usage.output_tokens
    usd = None
    if pricing is not None:
        usd = (tokens_in * pricing.input_per_mtok + tokens_out * pricing.output_per_mtok) / 1e6
    return SampleCost(items, requests, tokens_in, tokens_out, usd, requests * usage.latency_ms / 1000)

