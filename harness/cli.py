"""The `evalbatch` command line. Commands only parse arguments and call into the package.

Exit codes: 0 success, 1 the run finished with failed requests, 2 bad input (nothing was
sent), 130 interrupted (resume with the printed command).
"""

from __future__ import annotations

import sys
from functools import wraps
from pathlib import Path

import click
from rich.console import Console

from harness import __version__
from harness.errors import UserError

EXIT_FAILED_REQUESTS, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 1, 2, 130


def _console() -> Console:
    return Console(stderr=False, highlight=False)


def reports_user_errors(command):
    """Turns a UserError anywhere below into its message on stderr and exit code 2."""

    @wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except UserError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(EXIT_BAD_INPUT)

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="evalbatch")
def main() -> None:
    """evalbatch: run LLM evaluation suites, store every result durably, and gate prompt changes."""


@main.command()
@click.argument("suite", type=click.Path(dir_okay=False))
@click.option("--slice", "slices", multiple=True, metavar="NAME",
              help="Evaluate this slice instead of the suite's `evaluate` list (repeatable).")
@click.option("--limit", type=click.IntRange(min=1), help="Only the first N items of the selection (a quick look).")
@click.option("--prompt-version", metavar="VERSION",
              help="Run this version of the suite's prompt instead of the one the suite names (e.g. a candidate).")
@click.option("--resume", "resume_id", metavar="RUN_ID", help="Continue this run (by default an unfinished run "
              "of the same work is resumed automatically).")
@click.option("--new", "force_new", is_flag=True, help="Start a new run even if an unfinished one matches.")
@click.option("--retry-failed", is_flag=True, help="Give requests that failed terminally another set of attempts.")
@click.option("--reports-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Write runs under DIR/<suite>/ instead of the suite's output.dir (default <project>/reports).")
@reports_user_errors
def run(suite: str, slices: tuple[str, ...], limit: int | None, prompt_version: str | None, resume_id: str | None, force_new: bool,
        retry_failed: bool, reports_dir: Path | None) -> None:
    """Run SUITE (a suites/*.yaml file): render the prompt over the slices, send every request,
    score the outputs, and write reports/<suite>/<run_id>/ (run store, manifest.json, results.jsonl)."""
    from harness.execute import RunInterrupted, RunOptions, execute
    from harness.plan import PlanOptions, plan_run
    from harness.report.summary import print_summary

    if resume_id and force_new:
        raise click.UsageError("--resume and --new contradict each other")
    console = _console()
    plan = plan_run(suite, PlanOptions(slices=slices, limit=limit, prompt_version=prompt_version))
    console.print(f"{plan.suite.spec.name}: {len(plan.items)} items x {len(plan.suite.spec.targets)} target(s) x "
                  f"{plan.suite.spec.epochs} epoch(s) = {len(plan.requests)} requests; prompt {plan.prompt.label} "
                  f"({plan.prompt.fingerprint[:12]})")
    try:
        outcome = execute(plan, RunOptions(resume_id, force_new, retry_failed, reports_dir), console)
    except RunInterrupted as stop:
        click.echo(f"\nInterrupted. Everything finished so far is stored in {stop.folder}.\n"
                   f"Resume with: evalbatch run {suite} --resume {stop.run_id}", err=True)
        sys.exit(EXIT_INTERRUPTED)
    print_summary(console, outcome.lines, outcome.manifest.wall_time_s)
    console.print(f"run {outcome.manifest.run_id}: {outcome.manifest.status}; results in {outcome.folder}")
    if outcome.manifest.status != "complete":
        console.print(f"Some requests failed. Retry them with: evalbatch run {suite} --resume "
                      f"{outcome.manifest.run_id} --retry-failed")
        sys.exit(EXIT_FAILED_REQUESTS)


@main.command()
@click.argument("suite", type=click.Path(dir_okay=False))
@reports_user_errors
def validate(suite: str) -> None:
    """Check SUITE, its prompt, data and slices, and render every request, without sending anything."""
    from harness.plan import plan_run

    plan = plan_run(suite)
    click.echo(f"ok: {plan.suite.spec.name}: {len(plan.items)} items in slices {plan.evaluated}, "
               f"{len(plan.requests)} requests, prompt {plan.prompt.label} ({plan.prompt.fingerprint[:12]})")


@main.command()
@click.argument("suite", type=click.Path(dir_okay=False))
@reports_user_errors
def runs(suite: str) -> None:
    """List the runs of SUITE, newest first, with their status."""
    from harness.config.loader import load_suite
    from harness.execute import previous_runs

    loaded = load_suite(suite)
    found = previous_runs(loaded.reports_dir / loaded.spec.name)
    if not found:
        click.echo(f"no runs yet under {loaded.reports_dir / loaded.spec.name}")
    for _, manifest in found:
        click.echo(f"{manifest.run_id}  {manifest.status:<11}  {manifest.prompt.name}@{manifest.prompt.version}  "
                   f"{manifest.request_count} requests  started {manifest.started_at}")


if __name__ == "__main__":
    main()
