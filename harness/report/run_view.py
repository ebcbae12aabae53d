"""What a finished (or stopped) run prints after its summary: sequential looks, where its results
are, a promotion's validated / needs-review split, and what to do about unfinished or failed requests."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.console import Console

from harness.config.loader import LoadedSuite
from harness.cost.money import format_usd
from harness.engine.metrics import RunMetrics
from harness.engine.states import UNFINISHED_STATES
from harness.engine.store import RunStore
from harness.runs.commands import failure_advice, resume_command

if TYPE_CHECKING:  # a view of a run's outcome, not of how it was run
    from harness.execute import RunOutcome
    from harness.plan import RunPlan


def print_looks(console: Console, looks: list[dict[str, Any]]) -> None:
    for look in looks:
        console.print(f"look {look['look']}/{look['of']} at {look['items']} items: {look['decision']} ("
                      + "; ".join(_look_metric(m) for m in look["metrics"]) + ")")


def _look_metric(metric: dict) -> str:
    """The statistic against the bound it crossed, or against both when it crossed none."""
    if metric["z"] is None:
        return f"{metric['metric']} n/a"
    success = metric.get("success_bound", metric["boundary"])
    failure = metric.get("failure_bound", -metric["boundary"])
    z = metric["z"]
    if z >= success:
        return f"{metric['metric']} z={z:.2f} >= success bound {success:.3f}"
    if z <= failure:
        return f"{metric['metric']} z={z:.2f} <= failure bound {failure:.3f}"
    return f"{metric['metric']} z={z:.2f} between the bounds {failure:.3f} and {success:.3f}"


def print_full_run_split(console: Console, suite: LoadedSuite, outcome: RunOutcome) -> None:
    """A promotion's full run sorts its outputs however it was finished (promote, or a resume)."""
    from harness.compare.promotion import split_validated, validators

    checks = validators(suite)
    valid, review = split_validated(outcome.folder, outcome.lines, checks)
    console.print(f"full run {outcome.manifest.run_id}: {valid} validated, {review} need review "
                  f"(validators: {', '.join(checks) or 'none: only succeeded requests pass'}); "
                  f"{outcome.folder / 'validated.jsonl'}, {outcome.folder / 'needs_review.jsonl'}")


def print_what_is_left(console: Console, suite_arg: str, outcome: RunOutcome, max_retries: int) -> None:
    """The commands repeat the run's options, so following them continues this very run."""
    unfinished = sum(line.state in UNFINISHED_STATES for line in outcome.lines)
    if outcome.manifest.status == "cancelled":
        console.print(f"Run {outcome.manifest.run_id} was cancelled (evalbatch cancel) with {unfinished} request(s) "
                      f"not finished. Resume with: {resume_command(suite_arg, outcome.manifest)}", soft_wrap=True)
    elif unfinished:
        console.print(f"{unfinished} request(s) did not finish. Resume with: "
                      f"{resume_command(suite_arg, outcome.manifest)}", soft_wrap=True)
    store = RunStore.read_only(outcome.folder / RunStore.FILENAME)
    try:
        failures = store.terminal_failures()
    finally:
        store.close()
    for advice in failure_advice(suite_arg, outcome.manifest, failures, max_retries):
        console.print(advice, soft_wrap=True, markup=False)


def print_run_metrics(console: Console, metrics: RunMetrics | None) -> None:
    """Two lines: how the requests went, then what they took (tokens, latency, money)."""
    if metrics is None:
        return
    for line in run_metrics_lines(metrics):
        console.print(line, soft_wrap=True)


def run_metrics_lines(metrics: RunMetrics) -> list[str]:
    m = metrics
    paused = f", paused {m.rate_limit_paused_s:.1f} s by rate limits" if m.rate_limit_paused_s else ""
    reused = f"; {m.from_cache:,} from the cache, {m.duplicates:,} duplicate(s)" if m.from_cache or m.duplicates else ""
    if m.cost_usd is None:
        cost = "cost unknown (no prices)"
    else:
        cost = (f"cost {format_usd(m.cost_usd)} ({format_usd(m.cost_per_item_usd)} per item, "
                f"{format_usd(m.cost_per_success_usd)} per successful item)")
    return [
        f"metrics: {m.submitted:,} submitted, {m.sent:,} sent, {m.completed:,} completed: "
        f"{_percent(m.success_rate)} succeeded, {_percent(m.terminal_failure_rate)} failed terminally; "
        f"retry rate {_percent(m.retry_rate)}, {m.rate_limited:,} answered 429{paused}{reused}",
        f"tokens per item {_number(m.input_tokens_per_item)} in, {_number(m.output_tokens_per_item)} out; "
        f"latency p50 {_number(m.latency_p50_ms, 0)} ms, p95 {_number(m.latency_p95_ms, 0)} ms; {cost}",
    ]


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def _number(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def print_outcome(console: Console, suite_arg: str, plan: RunPlan, outcome: RunOutcome) -> None:
    """Everything `evalbatch run` prints after sending, for commands that run a plan too (retry)."""
    from harness.report.summary import SummaryOptions, print_summary

    manifest = outcome.manifest
    print_summary(console, outcome.summary_source(), manifest.wall_time_s, SummaryOptions.of_plan(plan))
    print_looks(console, manifest.looks)
    print_run_metrics(console, manifest.metrics)
    console.print(f"run {manifest.run_id}: {manifest.status}; results in {outcome.folder}")
    if manifest.options.full_promotion:
        print_full_run_split(console, plan.suite, outcome)
    if manifest.status == "stopped_early":
        console.print(f"Stopped early by the sequential design; judge it with: evalbatch gate {manifest.run_id}")
    elif manifest.status != "complete":
        print_what_is_left(console, suite_arg, outcome, plan.suite.spec.engine.max_retries)
