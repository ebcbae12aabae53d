"""What a finished (or stopped) run prints after its summary: sequential looks, where its results
are, a promotion's validated / needs-review split, and what to do about unfinished or failed requests."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.console import Console

from harness.config.loader import LoadedSuite
from harness.engine.states import UNFINISHED_STATES
from harness.engine.store import RunStore
from harness.runs.commands import failure_advice, resume_command

if TYPE_CHECKING:  # a view of a run's outcome, not of how it was run
    from harness.execute import RunOutcome


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
    if unfinished:
        console.print(f"{unfinished} request(s) did not finish. Resume with: "
                      f"{resume_command(suite_arg, outcome.manifest)}", soft_wrap=True)
    store = RunStore.read_only(outcome.folder / RunStore.FILENAME)
    try:
        failures = store.terminal_failures()
    finally:
        store.close()
    for advice in failure_advice(suite_arg, outcome.manifest, failures, max_retries):
        console.print(advice, soft_wrap=True, markup=False)
