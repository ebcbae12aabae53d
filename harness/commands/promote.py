"""`evalbatch promote`: make a run whose gate passed the production configuration, and optionally
run it on the full evaluated slices."""

from __future__ import annotations

import sys
from typing import NoReturn

import click

from harness.commands.collect import mode_option
from harness.commands.common import EXIT_FAILED_REQUESTS, exit_interrupted, reports_user_errors, stop_on_sigterm
from harness.commands.common import console as make_console


@click.command()
@click.argument("suite", type=click.Path(dir_okay=False))
@click.option("--run", "run_id", required=True, metavar="RUN_ID", help="The run whose gate passed.")
@click.option("--full", is_flag=True, help="Then run the promoted configuration on the full evaluated slices, "
              "sorting outputs into validated.jsonl and needs_review.jsonl.")
@mode_option
@reports_user_errors
def promote(suite: str, run_id: str, full: bool, mode: str | None = None) -> None:
    """Promote RUN_ID's prompt version and model to production for SUITE. Refused (exit 1) unless
    RUN_ID's gate.json is PASS or WARN against the suite's own baseline, that baseline file and the
    gate policy are unchanged since, and the run still is what was gated; with --full also unless the
    suite's prompt and targets still are the promoted ones. Recorded in baselines/<suite>/promoted.json."""
    from harness.compare.promotion import (
        GateRefused,
        already_promoted,
        approve,
        check_full_run_matches,
        record_promotion,
    )
    from harness.config.loader import load_suite
    from harness.plan import PlanOptions, plan_run
    from harness.runs.locate import find_run, search_dirs

    loaded = load_suite(suite)
    folder = find_run(run_id, search_dirs(suite=loaded), loaded.spec.name)
    # The promotion record is the evidence: promoting the same run again records nothing new, and
    # its gate need not hold still (setting the baseline from it changes the file the gate read).
    repeated = already_promoted(loaded, folder)
    if repeated is not None:
        record = repeated
        click.echo(f"run {record.run_id} already promoted at {record.promoted_at} by {record.promoted_by} "
                   f"({record.prompt}@{record.prompt_version}, gate {record.verdict}); not recorded again")
    else:
        try:
            record = approve(loaded, folder)
        except GateRefused as refused:
            _refuse(str(refused))
    if mode is not None and not full:
        raise click.UsageError("--mode applies to the full run: add --full")
    # Checked before anything is recorded or sent: a full run must be of what passed the gate.
    plan = plan_run(suite, PlanOptions(prompt_version=record.prompt_version)) if full else None
    differences = check_full_run_matches(record, plan) if plan else []
    if differences:
        _refuse("the suite no longer matches the configuration that passed the gate, so a full run would "
                "not be of it (nothing promoted, nothing sent):\n  " + "\n  ".join(differences))
    if repeated is None:
        record_promotion(loaded, record)
        click.echo(f"promoted {record.prompt}@{record.prompt_version} ({record.prompt_fingerprint[:12]}) with "
                   f"{', '.join(t.model for t in record.targets)} to production for {record.suite} "
                   f"(gate {record.verdict}, run {record.run_id})")
    if plan is None:
        click.echo(f"Next: run it on the full evaluated slices with: evalbatch promote {suite} --run {record.run_id} "
                   f"--full; or make it the baseline with: evalbatch baseline set {suite} --from {record.run_id}")
        return
    _run_full_promotion(suite, plan, mode)


def _run_full_promotion(suite: str, plan, mode: str | None) -> None:
    """The promoted configuration on the full slices: its scores, its validated / needs-review
    split, and how to make it the baseline (or finish it)."""
    from harness.execute import RunInterrupted, RunOptions, execute
    from harness.report.run_view import print_full_run_split
    from harness.report.summary import SummaryOptions, print_summary
    from harness.runs.commands import resume_command

    console = make_console()
    stop_on_sigterm()  # a cancelled CI job stops cleanly too
    try:
        outcome = execute(plan, RunOptions(force_new=True, full_promotion=True, mode=mode), console)
    except RunInterrupted as stop:
        exit_interrupted(suite, stop)  # the printed `evalbatch run` command finishes and sorts it
    print_summary(console, outcome.lines, outcome.manifest.wall_time_s, SummaryOptions.of_plan(plan))
    console.print(f"run {outcome.manifest.run_id}: {outcome.manifest.status}; results in {outcome.folder}")
    print_full_run_split(console, plan.suite, outcome)
    if outcome.manifest.status != "complete":
        console.print(f"The full run did not complete. Finish it with: {resume_command(suite, outcome.manifest)} "
                      f"(add --retry-failed to retry failed requests)", soft_wrap=True)
        sys.exit(EXIT_FAILED_REQUESTS)
    console.print(f"Make it the baseline with: evalbatch baseline set {suite} --from {outcome.manifest.run_id}",
                  soft_wrap=True)


def _refuse(message: str) -> NoReturn:
    click.echo(f"refused: {message}", err=True)
    sys.exit(EXIT_FAILED_REQUESTS)
