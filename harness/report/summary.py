"""The end-of-run summary: per target, evaluated slice and scorer the mean with a 95% CI, the
failed requests, states, tokens, time, and per target tokens and cost per item."""

from __future__ import annotations

import math
from array import array
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

from harness.cost.money import format_usd
from harness.cost.pricing import ModelPrice
from harness.engine.states import RequestState
from harness.runs.results import ResultLine

if TYPE_CHECKING:  # the summary needs only a finished plan's settings, not the planning code
    from harness.plan import RunPlan


@dataclass(frozen=True)
class ScoreSummary:
    target: str
    scorer: str
    n_items: int
    mean: float
    ci_low: float | None
    ci_high: float | None
    slice: str = ""
    """The evaluated slices joined with '+' for the union row, else one evaluated slice."""
    failed: int = 0
    """Items with a failed_terminal request: scored 0 in the mean, or left out (failed_as_zero=False)."""


@dataclass(frozen=True)
class SummaryOptions:
    """What the summary cannot read from the result lines: the run's scorers and evaluated slices,
    and the suite's rule for failed requests (`scoring.failed_requests`)."""

    scorers: list[str] = field(default_factory=list)
    """Every scorer of the run, so a target whose requests all failed still gets its rows."""
    evaluated: list[str] = field(default_factory=list)
    """The evaluated slices; with more than one, each gets its own rows besides the union."""
    failed_as_zero: bool = True
    prices: dict[str, ModelPrice | None] = field(default_factory=dict)
    """Each target's price (None: unknown), for requests that succeeded without a recorded cost
    (runs from before costs were recorded)."""

    @classmethod
    def of_plan(cls, plan: RunPlan) -> SummaryOptions:
        from harness.cost.pricing import price_for

        spec = plan.suite.spec
        return cls([s.label for s in spec.scorers], plan.evaluated, spec.scoring.failed_as_zero,
                    {target.label: price_for(target) for target in spec.targets})


def mean_with_ci(values: Sequence[float], level: float = 0.95) -> tuple[float, float | None, float | None]:
    """Student-t interval on item-level scores; None when n < 2 (no spread to estimate).
    For scores in [0, 1] the interval is clipped to [0, 1]: a rate cannot leave it."""
    n = len(values)
    if n == 0:
        return math.nan, None, None
    mean = sum(values) / n
    if n < 2:
        return mean, None, None
    variance = sum((v - mean) ** 2 for v in values) / (n - 1)
    half = t_quantile(0.5 + level / 2, n - 1) * math.sqrt(variance / n)
    low, high = mean - half, mean + half
    if all(0.0 <= v <= 1.0 for v in values):
        low, high = max(0.0, low), min(1.0, high)
    return mean, low, high


def t_quantile(p: float, df: int) -> float:
    """Student's t quantile for 0.5 <= p < 1, to ~1e-12: the root of the t CDF, found by bisection.
    Computed here rather than with scipy.stats, whose import (about a second) every run would pay
    just to print its summary."""
    if not 0.5 <= p < 1 or df < 1:
        raise ValueError(f"t_quantile needs 0.5 <= p < 1 and df >= 1, got p={p}, df={df}")
    low, high = 0.0, 1.0
    while _t_cdf(high, df) < p:
        low, high = high, high * 2
    for _ in range(200):
        middle = (low + high) / 2
        if middle in (low, high):
            break
        low, high = (middle, high) if _t_cdf(middle, df) < p else (low, middle)
    return (low + high) / 2


def _t_cdf(t: float, df: int) -> float:
    """P(T <= t) for t >= 0: 1 - I_x(df/2, 1/2) / 2 with x = df / (df + t^2)."""
    return 1 - 0.5 * _incomplete_beta(df / (df + t * t), df / 2, 0.5)


def _incomplete_beta(x: float, a: float, b: float) -> float:
    """The regularized incomplete beta function I_x(a, b), by its continued fraction (modified
    Lentz), on the side of x where the fraction converges fast."""
    if x <= 0:
        return 0.0
    if x >= 1:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x > (a + 1) / (a + b + 2):
        return 1 - front * _beta_fraction(1 - x, b, a) / b
    return front * _beta_fraction(x, a, b) / a


def _beta_fraction(x: float, a: float, b: float) -> float:
    tiny = 1e-300
    c, d = 1.0, 1 - (a + b) * x / (a + 1)
    d = 1 / (d if abs(d) > tiny else tiny)
    result = d
    for m in range(1, 500):
        for numerator in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                          -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1 + numerator * d
            d = 1 / (d if abs(d) > tiny else tiny)
            c = 1 + numerator / c
            c = c if abs(c) > tiny else tiny
            result *= c * d
        if abs(c * d - 1) < 1e-15:
            break
    return result


@dataclass(frozen=True)
class LinesByItem:
    """Result lines that come with every line of a (target, item) together and the targets in
    run order (as iter_summary_lines(by_item=True) reads them): summed as they stream, never held."""

    lines: Iterable[ResultLine]


@dataclass
class _Group:
    """One summary row as it is summed: the mean of each item (array of doubles, not objects) and
    how many items failed."""

    item_means: array = field(default_factory=lambda: array("d"))
    failed: int = 0


@dataclass
class _TargetTally:
    items: int = 0
    successful_items: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    spent: float = 0.0
    known: bool = False
    unpriced: int = 0


@dataclass
class RunSummary:
    """Everything the end-of-run summary prints, summed in one pass over the lines."""

    scores: list[ScoreSummary]
    costs: list[TargetCost]
    failed_items: int
    states: dict[str, int]
    input_tokens: int
    output_tokens: int

    @property
    def requests(self) -> int:
        return sum(self.states.values())


def summarize_run(lines: Iterable[ResultLine] | LinesByItem, options: SummaryOptions | None = None) -> RunSummary:
    """Per target and scorer, the union of the evaluated slices first, then each evaluated slice
    when there are several. Epochs are averaged within the item first: items, not samples, are
    the unit of analysis. A failed_terminal request scores 0 for every scorer (or is left out
    under failed_as_zero=False); requests that never finished are not scored. Memory grows with
    the items only by a double per item and row (none for LinesByItem's stream besides that)."""
    options = options or SummaryOptions()
    tally = _Tally(options)
    for item_lines in _item_groups(lines):
        tally.add_item(item_lines)
    return tally.summary()


def summarize_scores(lines: Iterable[ResultLine] | LinesByItem, options: SummaryOptions | None = None) -> list[ScoreSummary]:
    return summarize_run(lines, options).scores


def summarize_costs(lines: Iterable[ResultLine] | LinesByItem, options: SummaryOptions | None = None) -> list[TargetCost]:
    return summarize_run(lines, options).costs


def _item_groups(lines: Iterable[ResultLine] | LinesByItem) -> Iterator[list[ResultLine]]:
    """The lines of each (target, item) together: as they come for LinesByItem, otherwise (a list
    in any order) sorted by target and item in order of first appearance."""
    if isinstance(lines, LinesByItem):
        ordered: Iterable[ResultLine] = lines.lines
    else:
        listed = list(lines)
        targets = {line.target: n for n, line in reversed(list(enumerate(listed)))}
        items = {(line.target, line.item_id): n for n, line in reversed(list(enumerate(listed)))}
        ordered = sorted(listed, key=lambda line: (targets[line.target], items[(line.target, line.item_id)]))
    group: list[ResultLine] = []
    for line in ordered:
        if group and (line.target, line.item_id) != (group[0].target, group[0].item_id):
            yield group
            group = []
        group.append(line)
    if group:
        yield group


class _Tally:
    def __init__(self, options: SummaryOptions) -> None:
        self.options = options
        evaluated = list(options.evaluated)
        union = "+".join(evaluated) or "all evaluated"
        self.groups = [(union, None)] + ([(name, name) for name in evaluated] if len(evaluated) > 1 else [])
        self.scorers = list(dict.fromkeys(options.scorers))
        self.rows: dict[tuple[str, str], dict[str, _Group]] = {}
        """(target, scorer) -> summary row label -> its group; a key only once an item was scored."""
        self.targets: dict[str, _TargetTally] = {}
        self.states: dict[str, int] = defaultdict(int)
        self.failed_items = 0
        self.input_tokens = self.output_tokens = 0

    def add_item(self, lines: list[ResultLine]) -> None:
        target = lines[0].target
        self.targets.setdefault(target, _TargetTally())
        for line in lines:
            self.states[line.state] += 1
            self.input_tokens += line.input_tokens or 0
            self.output_tokens += line.output_tokens or 0
            for name in line.scores:
                if name not in self.scorers:
                    self.scorers.append(name)
        failed = any(line.state == RequestState.FAILED_TERMINAL for line in lines)
        self.failed_items += failed
        self._add_scores(target, lines, failed)
        self._add_cost(self.targets[target], lines, self.options.prices.get(target))

    def _add_scores(self, target: str, lines: list[ResultLine], failed: bool) -> None:
        slices = lines[0].slices
        for scorer in self.scorers:
            values: list[float] = []
            scored = False
            for line in lines:
                line_failed = line.state == RequestState.FAILED_TERMINAL
                value = (line.scores.get(scorer) or {}).get("value")
                if value is None and not line_failed:
                    continue  # unfinished, or not scored: missing, not a failure
                scored = True
                if line_failed:
                    value = 0.0 if self.options.failed_as_zero else None
                if value is not None:
                    values.append(value)
            if not scored:
                continue
            row = self.rows.setdefault((target, scorer), {label: _Group() for label, _ in self.groups})
            for label, slice_name in self.groups:
                if slice_name is not None and slice_name not in slices:
                    continue
                group = row[label]
                if values:
                    group.item_means.append(sum(values) / len(values))
                group.failed += failed

    @staticmethod
    def _add_cost(tally: _TargetTally, lines: list[ResultLine], price: ModelPrice | None) -> None:
        for line in lines:
            if line.state != RequestState.SUCCEEDED:
                continue
            if line.cost_usd is not None:
                tally.spent, tally.known = tally.spent + line.cost_usd, True
            elif price is not None and line.input_tokens is not None and line.output_tokens is not None:
                tally.spent, tally.known = tally.spent + price.cost(line.input_tokens, line.output_tokens), True
            else:
                tally.unpriced += 1
        # Per item over the items that finished: a cancelled or interrupted run has spent nothing on
        # the items it never sent, and dividing by them would understate the cost of an item.
        finished = [line for line in lines if line.state in (RequestState.SUCCEEDED, RequestState.FAILED_TERMINAL)]
        if finished:
            tally.items += 1
            tally.successful_items += all(line.state == RequestState.SUCCEEDED for line in finished)
        tally.input_tokens += sum(line.input_tokens or 0 for line in finished)
        tally.output_tokens += sum(line.output_tokens or 0 for line in finished)

    def summary(self) -> RunSummary:
        scores = []
        for target in self.targets:
            for scorer in self.scorers:
                row = self.rows.get((target, scorer))
                if row is None:
                    continue  # a scorer no line of the target ever scored (e.g. every request unfinished)
                for label, _ in self.groups:
                    group = row[label]
                    mean, low, high = mean_with_ci(group.item_means)
                    scores.append(ScoreSummary(target, scorer, len(group.item_means), mean, low, high, label,
                                               group.failed))
        costs = [TargetCost(target, t.items, t.successful_items, t.input_tokens, t.output_tokens,
                            t.spent if t.known or self.options.prices.get(target) is not None else None, t.unpriced)
                 for target, t in self.targets.items()]
        return RunSummary(scores, costs, self.failed_items, dict(self.states), self.input_tokens, self.output_tokens)


def print_summary(console: Console, lines: Iterable[ResultLine] | LinesByItem, wall_time_s: float,
                  options: SummaryOptions | None = None) -> None:
    options = options or SummaryOptions()
    summary = summarize_run(lines, options)
    table = Table(title="Scores (mean over items, 95% CI)")
    for column in ("target", "slice", "scorer", "items", "failed", "mean", "95% CI"):
        table.add_column(column, justify="right" if column in ("items", "failed", "mean") else "left")
    for row in summary.scores:
        ci = f"[{row.ci_low:.3f}, {row.ci_high:.3f}]" if row.ci_low is not None else "n/a (n < 2)"
        mean = f"{row.mean:.3f}" if not math.isnan(row.mean) else "n/a"
        table.add_row(row.target, row.slice, row.scorer, str(row.n_items), str(row.failed), mean, ci)
    console.print(table)
    failed_items = summary.failed_items
    if failed_items and options.failed_as_zero:
        console.print(f"failed: {failed_items} item(s) with a failed request count as 0 for every scorer "
                      "(scoring.failed_requests: zero)")
    elif failed_items:
        console.print(f"excluded: {failed_items} failed item(s) are left out of the means "
                      "(scoring.failed_requests: exclude)")
    state_text = ", ".join(f"{state} {count}" for state, count in sorted(summary.states.items()))
    console.print(f"requests: {summary.requests} ({state_text})")
    console.print(f"tokens: {summary.input_tokens:,} in, {summary.output_tokens:,} out    "
                  f"wall time: {wall_time_s:.1f} s")
    for cost in summary.costs:
        console.print(cost_line(cost), soft_wrap=True)


@dataclass(frozen=True)
class TargetCost:
    """A target's usage and spend over a run's lines."""

    target: str
    items: int
    successful_items: int
    """Items every request of which succeeded."""
    input_tokens: int
    output_tokens: int
    cost_usd: float | None
    """Recorded costs, plus (for requests that recorded none) usage x the target's price; None
    when no request has a cost and no price is known."""
    unpriced: int = 0
    """Succeeded requests whose cost could not be known (no recorded cost, and no price or no usage)."""

    @property
    def per_item(self) -> float | None:
        return self.cost_usd / self.items if self.cost_usd is not None and self.items else None

    @property
    def per_successful_item(self) -> float | None:
        if self.cost_usd is None or not self.successful_items:
            return None
        return self.cost_usd / self.successful_items


def cost_line(cost: TargetCost) -> str:
    """One target's spend per item and per successful item, and its tokens per item."""
    per_item = "" if not cost.items else (f"; tokens per item {cost.input_tokens / cost.items:,.0f} in, "
                                          f"{cost.output_tokens / cost.items:,.0f} out")
    if cost.cost_usd is None:
        return f"cost {cost.target}: no price known for its model (add pricing: to the target){per_item}"
    per_success = format_usd(cost.per_successful_item) if cost.successful_items else "n/a"
    text = (f"cost {cost.target}: {format_usd(cost.cost_usd)}, {format_usd(cost.per_item)} per item ({cost.items}), "
            f"{per_success} per successful item ({cost.successful_items}){per_item}")
    if cost.unpriced:
        text += f"; {cost.unpriced} succeeded request(s) without usage or price are not counted"
    return text
