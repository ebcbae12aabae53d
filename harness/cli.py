"""The `evalbatch` command line. Commands only parse arguments and call into the package.

Exit codes: 0 success; 1 a run finished with failed requests, a gate FAILed or a promotion was
refused; 2 bad input (nothing was sent); 3 the gate is INCONCLUSIVE; 130 interrupted (resume
with the printed command).
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from harness import __version__
from harness.collector import collector_paused
from harness.commands.collect import mode_option
from harness.commands.common import (
    EXIT_FAILED_REQUESTS,
    console,
    exit_interrupted,
    finite,
    reports_user_errors,
    stop_on_sigterm,
)
from harness.commands.report import report_option, write_reports
from harness.errors import UserError

_console = console


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="evalbatch")
def main() -> None:
    """evalbatch: run LLM evaluation suites, store every result durably, and gate prompt changes."""


@main.command()
@click.argument("suite", type=click.Path(dir_okay=False))
@click.option("--slice", "slices", multiple=True, metavar="NAME",
              help="Evaluate this slice instead of the suite's `evaluate` list (repeatable).")
@click.option("--limit", type=click.IntRange(min=1), help="Only the first N items of the selection (a quick look).")
@click.option("--sample", "sample_size", type=click.IntRange(min=2), metavar="N",
              help="Pre-rollout sample of N items (stratified by gate.sample.stratify_by); with "
                   "gate.sample.sequential the run stops early at the group-sequential bounds.")
@click.option("--prompt-version", metavar="VERSION",
              help="Run this version of the suite's prompt instead of the one the suite names (e.g. a candidate).")
@click.option("--resume", "resume_id", metavar="RUN_ID", help="Continue this run (by default an unfinished run "
              "of the same work is resumed automatically).")
@click.option("--new", "force_new", is_flag=True, help="Start a new run even if an unfinished one matches.")
@click.option("--retry-failed", is_flag=True, help="Give requests that failed terminally another set of attempts.")
@click.option("--reports-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Write runs under DIR/<suite>/ instead of the suite's output.dir (default <project>/reports).")
@click.option("--rpm", type=click.FloatRange(min=0, min_open=True), metavar="N", callback=finite,
              help="Send at most N requests per minute to each target (over the suite's engine.limits).")
@click.option("--tpm", type=click.FloatRange(min=0, min_open=True), metavar="N", callback=finite,
              help="Send at most N tokens per minute to each target (prompt estimate + max_tokens).")
@click.option("--cache/--no-cache", default=None,
              help="Answer requests from the shared response cache and add new answers to it, or not "
                   "(default: the suite's engine.cache).")
@mode_option
@report_option
@reports_user_errors
def run(suite: str, slices: tuple[str, ...], limit: int | None, sample_size: int | None, prompt_version: str | None, resume_id: str | None, force_new: bool,
        retry_failed: bool, reports_dir: Path | None, rpm: float | None, tpm: float | None, cache: bool | None,
        mode: str | None = None, report_formats: tuple[str, ...] = ()) -> None:
    """Run SUITE (a suites/*.yaml file): render the prompt over the slices, send every request,
    score the outputs, and write reports/<suite>/<run_id>/ (run store, manifest.json, results.jsonl)."""
    from dataclasses import replace

    with collector_paused():  # see harness.entry and harness.collector
        from harness.config.suite import RateLimits
        from harness.execute import RunInterrupted, RunOptions, execute
        from harness.plan import PlanOptions, plan_run
        from harness.report.run_view import print_full_run_split, print_looks, print_run_metrics, print_what_is_left
        from harness.report.summary import SummaryOptions, print_summary

    if resume_id and force_new:
        raise click.UsageError("--resume and --new contradict each other")
    console = _console()
    plan = plan_run(suite, PlanOptions(slices=slices, limit=limit, prompt_version=prompt_version, sample=sample_size))
    if cache is not None:  # over the suite's engine.cache, for this run only
        spec = plan.suite.spec
        plan = replace(plan, suite=replace(plan.suite, spec=spec.model_copy(
            update={"engine": spec.engine.model_copy(update={"cache": cache})})))
    monitor = None
    if sample_size:  # the statistics (scipy) are imported only for a sequential sample's looks
        from harness.compare.sequential import sequential_monitor

        monitor = sequential_monitor(plan)
    console.print(f"{plan.suite.spec.name}: {plan.item_count} items x {len(plan.suite.spec.targets)} target(s) x "
                  f"{plan.suite.spec.epochs} epoch(s) = {plan.request_count} requests; prompt {plan.prompt.label} "
                  f"({plan.prompt.fingerprint[:12]})")
    # A CI job being cancelled sends SIGTERM: stop as cleanly as on Ctrl-C.
    stop_on_sigterm()
    try:
        limits = RateLimits(rpm=rpm, tpm=tpm) if rpm or tpm else None
        outcome = execute(plan, RunOptions(resume_id, force_new, retry_failed, reports_dir, monitor, limits=limits,
                                           mode=mode), console)
    except RunInterrupted as stop:
        exit_interrupted(suite, stop)
    print_summary(console, outcome.summary_source(), outcome.manifest.wall_time_s, SummaryOptions.of_plan(plan))
    print_looks(console, outcome.manifest.looks)
    print_run_metrics(console, outcome.manifest.metrics)
    console.print(f"run {outcome.manifest.run_id}: {outcome.manifest.status}; results in {outcome.folder}")
    write_reports(outcome.folder, report_formats)
    if outcome.manifest.options.full_promotion:
        print_full_run_split(console, plan.suite, outcome)
    if outcome.manifest.status == "stopped_early":
        console.print(f"Stopped early by the sequential design; judge it with: evalbatch gate {outcome.manifest.run_id}")
    elif outcome.manifest.status != "complete":
        print_what_is_left(console, suite, outcome, plan.suite.spec.engine.max_retries)
        sys.exit(EXIT_FAILED_REQUESTS)


@main.command()
@click.argument("suite", type=click.Path(dir_okay=False))
@click.option("--prompt-version", metavar="VERSION", help="Check this version of the suite's prompt instead.")
@click.option("--show", type=click.IntRange(min=0), default=0, metavar="N",
              help="Print the first N rendered requests (long prompts shortened; results.jsonl keeps them whole).")
@click.option("--reports-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Where the suite's earlier runs are, if not the default (for the changed-prompt warning).")
@reports_user_errors
def validate(suite: str, prompt_version: str | None, show: int, reports_dir: Path | None) -> None:
    """Check SUITE, its prompt, data and slices, and render every request, without sending anything.
    Every bad record is listed at once; a prompt whose text changed under an unchanged version
    label (against the suite's earlier runs) is warned about, as `run` does."""
    from itertools import islice

    from harness.plan import PlanOptions, plan_run
    from harness.report.request_preview import preview
    from harness.runs.claim import warn_on_relabelled_prompt
    from harness.runs.locate import previous_runs, suite_runs_dir

    plan = plan_run(suite, PlanOptions(prompt_version=prompt_version))
    first_target = plan.suite.spec.targets[0]
    shown = (r for r in plan.requests(first_target) if r.sample_index == 0)
    for request in islice(shown, show):
        click.echo("\n".join(preview(request)))
    warn_on_relabelled_prompt(plan, previous_runs(suite_runs_dir(plan.suite, reports_dir)), _console())
    click.echo(f"ok: {plan.suite.spec.name}: {plan.item_count} items in slices {plan.evaluated}, "
               f"{plan.request_count} requests, prompt {plan.prompt.label} ({plan.prompt.fingerprint[:12]})")


@main.command()
@click.argument("suite", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print JSON for machines.")
@reports_user_errors
def runs(suite: str, as_json: bool) -> None:
    """List the runs of SUITE, newest first: status, prompt, requests planned and sent, the first
    gate metric's mean, and which run is promoted, a baseline or a promotion's full run."""
    import json

    from harness.compare.run_list import list_runs, run_line
    from harness.config.loader import load_suite

    listing = list_runs(load_suite(suite))
    if as_json:
        click.echo(json.dumps(listing.as_json(), indent=2))
        return
    if not listing.runs and not listing.damaged:
        click.echo(f"no runs yet under {listing.folder}")
    for listed in listing.runs:
        click.echo(run_line(listed))
    for damaged in listing.damaged:
        click.echo(f"damaged: {damaged['folder']}: {damaged['problem']}")


def _gate_exit_code(verdict) -> int:
    from harness.compare.verdict import Verdict

    return {Verdict.PASS: 0, Verdict.WARN: 0, Verdict.FAIL: 1, Verdict.INCONCLUSIVE: 3}[verdict]


@main.group()
def baseline() -> None:
    """Set and show the baselines a suite's candidates are compared with (baselines/<suite>/)."""


@baseline.command("set")
@click.argument("suite", type=click.Path(dir_okay=False))
@click.option("--from", "run_id", required=True, metavar="RUN_ID", help="The run whose results become the baseline.")
@click.option("--name", default=None, help="Baseline name (default: the suite's gate.baseline, 'production').")
@click.option("--target", default=None, help="The target to take, for runs of several targets.")
@click.option("--note", default="", help="Why, for the history.")
@click.option("--force", is_flag=True, help="Set it even though the run's gate failed (kept in the history).")
@reports_user_errors
def baseline_set(suite: str, run_id: str, name: str | None, target: str | None, note: str, force: bool) -> None:
    """Make run RUN_ID of SUITE a baseline (committed to git; earlier ones stay in its history).
    Refused for a run whose latest gate failed, unless --force."""
    from harness.compare.baseline import set_baseline
    from harness.compare.snapshot import snapshot_run
    from harness.compare.verdict import Verdict
    from harness.config.loader import load_suite
    from harness.runs.gate_record import read_gate_record
    from harness.runs.locate import find_run, search_dirs

    loaded = load_suite(suite)
    folder = find_run(run_id, search_dirs(suite=loaded), loaded.spec.name)
    snapshot = snapshot_run(folder, target, loaded.spec.scoring.failed_as_zero)
    if snapshot.fingerprints.suite != loaded.spec.name:
        raise UserError(f"run {run_id} is of suite {snapshot.fingerprints.suite!r}, not {loaded.spec.name!r}")
    # A gate decided on another target of the run says nothing about the one taken here.
    gated = read_gate_record(folder)
    verdict = gated.verdict if gated is not None and gated.target == snapshot.fingerprints.target else None
    if verdict is Verdict.FAIL and not force:
        raise UserError(f"run {snapshot.run_id}'s gate failed; a failed run does not replace a baseline",
                        file=str(folder / "gate.json"), hint="; ".join(gated.reasons[:3] if gated else [])
                        + " (set it anyway with --force and say why with --note)")
    path = set_baseline(loaded.project_dir, snapshot, name or loaded.spec.gate.baseline, note,
                        gate=None if verdict is None else str(verdict), forced=force and verdict is Verdict.FAIL)
    click.echo(f"baseline {path.stem} of {loaded.spec.name} set from run {snapshot.run_id} "
               f"({snapshot.fingerprints.prompt}, {len(snapshot.items)} items): {path}")


@baseline.command("show")
@click.argument("suite", type=click.Path(dir_okay=False))
@click.option("--name", default=None, help="Baseline name (default: the suite's gate.baseline).")
@reports_user_errors
def baseline_show(suite: str, name: str | None) -> None:
    """Show a baseline of SUITE: where it came from, its metrics and its history."""
    from harness.compare.baseline import baseline_path, load_baseline
    from harness.compare.snapshot import metric_item_means
    from harness.config.loader import load_suite
    from harness.report.summary import mean_with_ci

    loaded = load_suite(suite)
    found = load_baseline(baseline_path(loaded.project_dir, loaded.spec.name, name or loaded.spec.gate.baseline))
    snap = found.snapshot
    click.echo(f"baseline {found.name} of {loaded.spec.name}: run {snap.run_id}, {snap.fingerprints.prompt} "
               f"({snap.fingerprints.prompt_fingerprint[:12]}), model {snap.fingerprints.model}, "
               f"{len(snap.items)} items, slices {snap.fingerprints.evaluated}")
    for metric in snap.metrics:
        mean, low, high = mean_with_ci(list(metric_item_means(snap, metric).values()))
        interval = f"[{low:.3f}, {high:.3f}]" if low is not None else "n/a"
        click.echo(f"  {metric}: {mean:.3f} 95% CI {interval}")
    _print_promotion_status(suite, loaded, found)
    click.echo("history:")
    for event in found.history:
        click.echo(f"  {event.set_at} {event.set_by}: {event.name} <- run {event.from_run} ({event.prompt}, "
                   f"{event.model}){' - ' + event.note if event.note else ''}"
                   f"{' [forced over a FAILED gate]' if event.forced else ''}")


def _print_promotion_status(suite: str, loaded, found) -> None:
    """Whether the baseline predates the latest promotion, and how to bring it up to date."""
    from harness.compare.promotion import baseline_status

    status = baseline_status(loaded, found)
    if status is None:
        return
    promoted = status.promotion
    what = f"run {promoted.run_id} ({promoted.prompt}@{promoted.prompt_version})"
    if status.outdated:
        click.echo(f"still the pre-promotion baseline: {what} was promoted at {promoted.promoted_at}, after this "
                   f"baseline was set at {found.set_at}. Update it with: evalbatch baseline set {suite} --from "
                   f"{status.update_from}" + ("" if found.name == loaded.spec.gate.baseline else f" --name {found.name}"))
    else:
        click.echo(f"up to date with the latest promotion: {what}, promoted at {promoted.promoted_at}")


def _comparison_options(function):
    for option in reversed([
        click.option("--baseline", "baseline_name", metavar="NAME|RUN_ID",
                     help="Baseline name or a run ID (default: the suite's gate.baseline)."),
        click.option("--reports-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
                     help="Where runs are found (default: the suite's output.dir or <project>/reports, "
                          "found from the current directory; a run can also be given as its folder's path)."),
        click.option("--target", default=None, help="For runs of several targets."),
        click.option("--suite", "suite_path", type=click.Path(dir_okay=False, path_type=Path),
                     help="The suite (default: the one the run was made from)."),
        click.option("--json", "as_json", is_flag=True, help="Print JSON for machines."),
    ]):
        function = option(function)
    return function


def _decide(candidate_run: str, baseline_name, reports_dir, target, suite_path):
    """The comparison and the gate's record of it (not yet written)."""
    from harness.compare.gate_decision import judge
    from harness.compare.sources import SourceOptions

    return judge(candidate_run, SourceOptions(baseline_name, reports_dir, target, suite_path))


@main.command("compare")
@click.argument("candidate_run")
@_comparison_options
@reports_user_errors
def compare_command(candidate_run: str, baseline_name, reports_dir, target, suite_path, as_json: bool) -> None:
    """Compare CANDIDATE_RUN with a baseline: paired deltas with CIs and tests per metric, slices,
    categories, flaky items and drift signals."""
    import json

    from harness.report.comparison_view import print_comparison, print_gate

    _, report, record = _decide(candidate_run, baseline_name, reports_dir, target, suite_path)
    if as_json:
        click.echo(json.dumps(record.comparison, indent=2))
        return
    console = _console()
    print_comparison(console, report)
    print_gate(console, record)


@main.command()
@click.argument("candidate_run")
@_comparison_options
@click.option("--policy-changed", "policy_changed", metavar="REASON",
              help="Decide although the suite's gate policy changed since the run started; the reason is "
                   "kept in the gate record.")
@report_option
@reports_user_errors
def gate(candidate_run: str, baseline_name, reports_dir, target, suite_path, as_json: bool,
         policy_changed: str | None, report_formats: tuple[str, ...] = ()) -> None:
    """Decide whether CANDIDATE_RUN may replace the baseline (non-inferiority per the suite's gate),
    and record the decision in the run folder: gate.json (the latest) and gates/ (every decision).
    Refused (exit 2) when the suite's gate policy differs from the one the run started with,
    unless --policy-changed says why.

    Exit codes: 0 PASS or WARN, 1 FAIL, 3 INCONCLUSIVE, 2 bad input."""
    from harness.compare.gate_decision import hold_to_run_policy
    from harness.report.comparison_view import print_gate
    from harness.runs.gate_record import write_gate_record

    inputs, _, record = _decide(candidate_run, baseline_name, reports_dir, target, suite_path)
    record = hold_to_run_policy(inputs, record, policy_changed)
    write_gate_record(inputs.candidate_folder, record)
    if report_formats:  # from the record just written, so the reports say what gate.json says
        write_reports(inputs.candidate_folder, report_formats, record.target)
    if as_json:
        click.echo(record.model_dump_json(indent=2))
    else:
        print_gate(_console(), record)
    sys.exit(_gate_exit_code(record.verdict))


@main.command()
@click.argument("suite", type=click.Path(dir_okay=False))
@click.option("--mde", type=click.FloatRange(min=0.0, min_open=True, max=1.0), required=True,
              help="Smallest difference worth detecting, absolute (0.03 = 3 pts).")
@click.option("--power", type=click.FloatRange(0.5, 0.999), default=0.8, show_default=True,
              help="Chance of detecting a change of --mde (and of passing at the margin when nothing changed).")
@click.option("--alpha", type=click.FloatRange(0.001, 0.2), default=0.05, show_default=True,
              help="Two-sided alpha for superiority.")
@click.option("--baseline", "baseline_name", default=None, help="Baseline name (default: the suite's gate.baseline).")
@click.option("--against", "second_run", metavar="RUN_ID",
              help="A second run of the suite to observe the flip rate / var(d) between runs.")
@click.option("--reports-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where the --against run is found (default: the suite's output.dir or <project>/reports).")
@reports_user_errors
def plan(suite: str, mde: float, power: float, alpha: float, baseline_name: str | None, second_run: str | None,
         reports_dir: Path | None) -> None:
    """How many items SUITE needs: to detect a change of --mde (superiority) and to show
    non-inferiority at the gate's margin, estimated from the baseline, with the sample's cost."""
    from harness.compare.baseline import baseline_path, load_baseline
    from harness.compare.planning import PlanRequest, plan_metric, sample_cost
    from harness.compare.snapshot import snapshot_run
    from harness.config.loader import load_suite
    from harness.runs.gate_record import render_plan_shortfall
    from harness.runs.locate import find_run, search_dirs

    loaded = load_suite(suite)
    spec = loaded.spec
    base = load_baseline(baseline_path(loaded.project_dir, spec.name, baseline_name or spec.gate.baseline)).snapshot
    second = (snapshot_run(find_run(second_run, search_dirs(reports_dir, loaded), spec.name),
                           failed_as_zero=spec.scoring.failed_as_zero)
              if second_run else None)
    target = next((t for t in spec.targets if t.label == base.fingerprints.target), spec.targets[0])
    click.echo(f"{spec.name}: planning from baseline run {base.run_id} ({len(base.items)} items, "
               f"{base.fingerprints.prompt}); power {power:g}, two-sided alpha {alpha:g}, "
               f"non-inferiority one-sided alpha {spec.gate.alpha:g}")
    for gate_metric in spec.gate_metrics:
        if gate_metric.metric not in base.metrics:
            raise UserError(f"the baseline has no scores for metric {gate_metric.metric!r}")
        looks = spec.gate.sample.looks if spec.gate.sample.sequential else None
        result = plan_metric(base, second, gate_metric, PlanRequest(mde, power, alpha), spec.gate.alpha, looks)
        label = "flip rate psi" if result.binary else "var(d)"
        click.echo(f"\n{result.metric}: {label} = {result.spread:.4f} ({result.spread_source})")
        rows = [(f"detect a {mde * 100:g} pt change (superiority)", result.superiority_items),
                (f"show non-inferiority at the {result.margin * 100:g} pt margin", result.non_inferiority_items)]
        if looks is not None:
            # Earlier looks spend alpha, so the same power needs a larger maximum sample.
            rows.append((f"sequential design ({looks} looks), at most", result.sequential_items))
        for what, items in rows:
            if items is None:
                click.echo(f"  {what}: not computable")
                continue
            cost = sample_cost(base, items, target.pricing)
            usd = f", ~${cost.usd:,.2f}" if cost.usd is not None else " (set targets[].pricing for a USD figure)"
            click.echo(f"  {what}: {items:,} items = {cost.requests:,} requests, ~{cost.input_tokens:,.0f} input "
                       f"+ {cost.output_tokens:,.0f} output tokens{usd}, ~{cost.serial_seconds / 60:,.1f} min "
                       f"at one request at a time")
        needed = result.non_inferiority_items
        if needed is not None and needed > result.items_available:
            click.echo("  " + render_plan_shortfall(needed, result.items_available, result.within_reach))


# Commands defined in harness/commands/ (one line each):
from harness.commands.estimate import estimate  # noqa: E402

main.add_command(estimate)
from harness.commands.jobs import cancel, retry, status  # noqa: E402

main.add_command(status)
main.add_command(cancel)
main.add_command(retry)
from harness.commands.report import report  # noqa: E402

main.add_command(report)
from harness.commands.changed import changed  # noqa: E402

main.add_command(changed)
from harness.commands.ci import ci  # noqa: E402

main.add_command(ci)
from harness.commands.collect import collect  # noqa: E402

main.add_command(collect)
from harness.commands.export import export  # noqa: E402

main.add_command(export)
from harness.commands.import_cmd import import_outputs  # noqa: E402

main.add_command(import_outputs)
from harness.commands.promote import promote  # noqa: E402

main.add_command(promote)


if __name__ == "__main__":
    main()
