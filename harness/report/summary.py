"""The end-of-run summary: per target and scorer the mean with a 95% CI, states, tokens, time."""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass

from rich.console import Console
from rich.table import Table
from scipy import stats

from harness.runs.results import ResultLine


@dataclass(frozen=True)
class ScoreSummary:
    target: str
    scorer: str
    n_items: int
    mean: float
    ci_low: float | None
    ci_high: float | None


def mean_with_ci(values: list[float], level: float = 0.95) -> tuple[float, float | None, float | None]:
    """Student-t interval on item-level scores; None when n < 2 (no spread to estimate).
    For scores in [0, 1] the interval is clipped to [0, 1]: a rate cannot leave it."""
    n = len(values)
    if n == 0:
        return math.nan, None, None
    mean = sum(values) / n
    if n < 2:
        return mean, None, None
    variance = sum((v - mean) ** 2 for v in values) / (n - 1)
    half = stats.t.ppf(0.5 + level / 2, n - 1) * math.sqrt(variance / n)
    low, high = mean - half, mean + half
    if all(0.0 <= v <= 1.0 for v in values):
        low, high = max(0.0, low), min(1.0, high)
    return mean, low, high


def summarize_scores(lines: list[ResultLine]) -> list[ScoreSummary]:
    """Epochs are averaged within the item first: items, not samples, are the unit of analysis."""
    per_item: dict[tuple[str, str], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for line in lines:
        for scorer, score in line.scores.items():
            if score.get("value") is not None:
                per_item[(line.target, scorer)][line.item_id].append(score["value"])
    summaries = []
    for (target, scorer), by_item in per_item.items():
        item_means = [sum(v) / len(v) for v in by_item.values()]
        mean, low, high = mean_with_ci(item_means)
        summaries.append(ScoreSummary(target, scorer, len(item_means), mean, low, high))
    return summaries


def print_summary(console: Console, lines: list[ResultLine], wall_time_s: float) -> None:
    table = Table(title="Scores (mean over items, 95% CI)")
    for column in ("target", "scorer", "items", "mean", "95% CI"):
        table.add_column(column, justify="right" if column in ("items", "mean") else "left")
    for summary in summarize_scores(lines):
        ci = f"[{summary.ci_low:.3f}, {summary.ci_high:.3f}]" if summary.ci_low is not None else "n/a (n < 2)"
        table.add_row(summary.target, summary.scorer, str(summary.n_items), f"{summary.mean:.3f}", ci)
    console.print(table)
    states: dict[str, int] = defaultdict(int)
    for line in lines:
        states[line.state] += 1
    tokens_in = sum(line.input_tokens or 0 for line in lines)
    tokens_out = sum(line.output_tokens or 0 for line in lines)
    state_text = ", ".join(f"{state} {count}" for state, count in sorted(states.items()))
    console.print(f"requests: {len(lines)} ({state_text})")
    console.print(f"tokens: {tokens_in:,} in, {tokens_out:,} out    wall time: {wall_time_s:.1f} s")
