"""`evalbatch ci`: gate the suites a change affects on their pre-rollout samples, and leave the
reviewer a Markdown summary, JUnit XML and HTML reports.

Exit codes: 0 every gate passed (or WARNed), or no suite was affected; 1 a gate FAILed; 3 a gate
was INCONCLUSIVE and none failed; 2 bad input (nothing sent); 4 refused because the estimated
cost exceeds --budget (nothing sent); 130 interrupted (run the same command again to resume).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import click

from harness.commands.common import EXIT_INTERRUPTED, console, finite, reports_user_errors, stop_on_sigterm

EXIT_OVER_BUDGET = 4
"""Not bad input: the suites are fine, the change is just dearer than the job may spend."""


@click.command("ci")
@click.argument("suites_dir", required=False, type=click.Path(file_okay=False, path_type=Path))
@click.option("--base", "base_ref", default=None, metavar="GIT_REF",
              help="Gate the suites whose inputs differ from this git revision (e.g. origin/main); default: "
                   "those that differ from what their baseline froze.")
@click.option("--budget", type=click.FloatRange(min=0), metavar="USD", callback=finite,
              help="Refuse to start (exit 4, nothing sent) when the samples' estimated cost exceeds USD.")
@click.option("--sample", "sample_size", type=click.IntRange(min=2), metavar="N",
              help="Sample N items of each suite (default: the power plan's size for the gate's margin).")
@click.option("--reports-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Write runs under DIR/<suite>/ and CI's files under DIR/ci/ (default: each suite's output.dir "
                   "for runs, <project>/reports/ci for CI's files).")
@click.option("--summary-file", type=click.Path(dir_okay=False, path_type=Path), metavar="PATH",
              help="Write the Markdown summary here (default: <reports>/ci/summary.md); it is also appended to "
                   "$GITHUB_STEP_SUMMARY when that is set.")
@click.option("--junit", "junit_file", type=click.Path(dir_okay=False, path_type=Path), metavar="PATH",
              help="Write JUnit XML here, a testsuite per suite (default: <reports>/ci/junit.xml).")
@reports_user_errors
def ci(suites_dir: Path | None, base_ref: str | None, budget: float | None, sample_size: int | None,
       reports_dir: Path | None, summary_file: Path | None, junit_file: Path | None) -> None:
    """Gate the suites affected by a change: for each suite whose prompt, includes, schemas, dataset,
    suite file, target settings or baseline changed (since --base, else since its baseline), run the
    pre-rollout sample (resuming or reusing the same work), gate it against the baseline, and write
    the summary, JUnit XML and HTML reports. Suites without a baseline are skipped with a note.

    Exit codes: 0 all passed or nothing affected, 1 a gate failed, 3 inconclusive, 2 bad input,
    4 over --budget (nothing sent), 130 interrupted."""
    from harness.ci.selection import CiOptions, select

    out = console()
    selection = select(CiOptions(suites_dir, base_ref, budget, sample_size, reports_dir), Path.cwd())
    ci_dir = (reports_dir.resolve() if reports_dir else selection.project_dir / "reports") / "ci"
    files = _Files(summary_file or ci_dir / "summary.md", junit_file or ci_dir / "junit.xml", ci_dir)
    _print_selection(selection)
    if not selection.work:
        click.echo("nothing to gate: no suite is affected")
        _write_outputs(selection, [], budget, files)
        return
    _refuse_over_budget(selection, budget, files)
    results = _gate_all(selection, reports_dir, out)
    _write_outputs(selection, results, budget, files)
    _print_verdicts(results)
    from harness.ci.outputs import exit_code

    sys.exit(exit_code(results))


@dataclass(frozen=True)
class _Files:
    summary: Path
    junit: Path
    ci_dir: Path


def _print_selection(selection) -> None:
    against = f"git {selection.base_ref}" if selection.base_ref else "their baselines"
    click.echo(f"{len(selection.work)} of {selection.total_suites} suite(s) in {selection.suites_dir} affected "
               f"since {against}")
    for work in selection.work:
        click.echo(f"{work.change.suite} ({work.change.file}):")
        for reason in work.change.reasons:
            click.echo(f"  {reason}")
        if work.skipped is not None:
            click.echo(f"  skipped: {work.skipped}")
        elif work.sample is not None:
            reuse = f"; reusing run {work.reuse.name}" if work.reuse is not None else ""
            click.echo(f"  sample: {work.sample.label}{reuse}")


def _refuse_over_budget(selection, budget: float | None, files: _Files) -> None:
    """Before anything is sent: the estimate (every reply as long as max_tokens allows) against --budget."""
    cost = selection.estimate_usd
    unpriced = sorted({f"{w.change.suite}: {t}" for w in selection.to_run for t in w.unpriced})
    shown = "unknown" if cost is None else f"${cost:,.4f}"
    click.echo(f"estimated cost of the samples: at most {shown}" + (f" (budget ${budget:,.2f})" if budget is not None
                                                                     else ""))
    if budget is None:
        return
    if cost is None:
        message = (f"refused: the cost cannot be estimated, so --budget cannot be held: no price for target(s) "
                   f"{unpriced}; set targets[].pricing in the suite")
    elif cost > budget:
        per_suite = ", ".join(f"{w.change.suite} ${w.estimate_usd:,.4f}" for w in selection.to_run
                              if w.estimate_usd)
        message = (f"refused: the samples would cost up to ${cost:,.4f} ({per_suite}), over the budget of "
                   f"${budget:,.2f}; nothing was sent. Raise --budget, or lower --sample")
    else:
        return
    click.echo(message, err=True)
    _write_text(files.summary, f"## evalbatch CI: refused (over budget)\n\n{message}.\n", append_step_summary=True)
    sys.exit(EXIT_OVER_BUDGET)


def _gate_all(selection, reports_dir: Path | None, out) -> list:
    from harness.ci.gating import SuiteInterrupted, run_and_gate

    stop_on_sigterm()  # a cancelled CI job stops as cleanly as Ctrl-C; the rerun resumes
    results = []
    for work in selection.work:
        try:
            results.append(run_and_gate(work, reports_dir, out))
        except SuiteInterrupted as stopped:
            click.echo(f"\nInterrupted while running {stopped.suite}. Everything finished so far is stored in "
                       f"{stopped.stop.folder}; run the same `evalbatch ci` command again to resume it.", err=True)
            sys.exit(EXIT_INTERRUPTED)
    return results


def _write_outputs(selection, results: list, budget: float | None, files: _Files) -> None:
    from harness.ci.outputs import copy_html, render_junit, render_summary

    copied = copy_html(results, files.ci_dir)
    try:
        html_dir = files.ci_dir.resolve().relative_to(selection.project_dir.resolve()).as_posix()
    except ValueError:
        html_dir = str(files.ci_dir)
    _write_text(files.summary, render_summary(selection, results, budget, html_dir), append_step_summary=True)
    _write_text(files.junit, render_junit(results))
    click.echo(f"summary: {files.summary}; junit: {files.junit}"
               + (f"; html: {', '.join(str(p) for p in copied)}" if copied else ""))


def _write_text(path: Path, text: str, append_step_summary: bool = False) -> None:
    from harness.runs.files import write_atomically

    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, text)
    step_summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if append_step_summary and step_summary:
        with open(step_summary, "a", encoding="utf-8") as handle:
            handle.write(text + "\n")


def _print_verdicts(results: list) -> None:
    for result in results:
        if not result.gates:
            click.echo(f"{result.name}: skipped")
            continue
        for gate in result.gates:
            label = result.name if len(result.gates) == 1 else f"{result.name} [{gate.target}]"
            click.echo(f"{label}: gate {gate.record.verdict} ({result.how})")
            for reason in gate.record.reasons:
                click.echo(f"  {reason}")
