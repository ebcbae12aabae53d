"""`evalbatch collect RUN`: re-attach to a run's provider batches from any shell, days later.

It finishes what a stopped process left (a chunk uploaded but not created is created once,
or adopted when the provider already has its batch), polls the live batches and collects
them into the run store, scores them and rewrites results.jsonl. It never submits requests
that were not in a batch, and never creates a second batch for a chunk.
"""

from __future__ import annotations

import sys

import click

from harness.commands.common import console, exit_interrupted, reports_user_errors, stop_on_sigterm

mode_option = click.option(
    "--mode", type=click.Choice(["realtime", "batch"]), default=None,
    help="Send every target through the provider's batch API (half price, results within 24 h) or realtime, "
         "over each target's `mode:` in the suite; kept in the run, so a resume goes on in it.")


@click.command("collect")
@click.argument("run", metavar="RUN")
@click.option("--suite", "suite", type=click.Path(dir_okay=False), default=None,
              help="The suite (default: the one the run was made from).")
@click.option("--reports-dir", type=click.Path(file_okay=False), default=None,
              help="Where runs are found (default: the suite's output.dir or <project>/reports; RUN can also be "
                   "a run folder's path).")
@click.option("--no-wait", "no_wait", is_flag=True,
              help="Collect the batches that have ended and return, instead of waiting for the others.")
@reports_user_errors
def collect(run: str, suite: str | None, reports_dir: str | None, no_wait: bool) -> None:
    """Poll RUN's provider batches (batch mode) and collect their results into the run, then score
    it and write results.jsonl. Exit codes as for `run` (1 while requests are left)."""
    from pathlib import Path

    from harness.commands.jobs import _FINISHED, _locate, _suite_file

    given = Path(suite) if suite else None
    folder, manifest = _locate(run, given, Path(reports_dir) if reports_dir else None)
    outcome = collect_run(folder, manifest, _suite_file(manifest, folder, given), wait=not no_wait)
    if outcome is not None and outcome.manifest.status not in _FINISHED:
        sys.exit(1)


def collect_run(folder, manifest, suite_arg: str, *, wait: bool):
    """Collects the run's open provider batches (waiting for them, or only those ended) and
    prints the outcome; None when it has none."""
    from harness.commands.jobs import _frozen_plan, _reports_dir_of
    from harness.engine.batch.batch_store import BatchStore, has_batches
    from harness.engine.store import RunStore
    from harness.execute import RunInterrupted, RunOptions, execute
    from harness.report.run_view import print_outcome

    store = RunStore.existing(folder)
    try:
        open_batches = len(BatchStore(store).chunks(open_only=True)) if has_batches(store) else 0
    finally:
        store.close()
    out = console()
    if not open_batches:
        out.print(f"run {manifest.run_id} has no provider batch left to collect", soft_wrap=True)
        return None
    plan = _frozen_plan(suite_arg, folder, manifest)
    out.print(f"Collecting {open_batches} provider batch(es) of run {manifest.run_id}", soft_wrap=True)
    stop_on_sigterm()
    options = RunOptions(resume_id=manifest.run_id, reports_dir=_reports_dir_of(folder, plan), collect_only=True,
                         wait=wait)
    try:
        outcome = execute(plan, options, out)
    except RunInterrupted as stop:
        exit_interrupted(suite_arg, stop)
    print_outcome(out, suite_arg, plan, outcome)
    return outcome
