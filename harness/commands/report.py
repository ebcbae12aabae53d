"""`evalbatch report`: a run, or its comparison with a baseline, as HTML, Markdown, JUnit XML or JSON."""

from __future__ import annotations

from pathlib import Path

import click

from harness.commands.common import console, reports_user_errors

FILE_NAMES = {"html": "report.html", "md": "report.md", "junit": "report.junit.xml", "json": "report.json"}


def render(data, fmt: str) -> str:
    """The report in one format (the HTML's renderer, with matplotlib, is imported only for HTML)."""
    if fmt == "html":
        from harness.report.html import render_html

        return render_html(data)
    if fmt == "md":
        from harness.report.markdown import render_markdown

        return render_markdown(data.document)
    if fmt == "junit":
        from harness.report.junit import render_junit

        return render_junit(data.document)
    from harness.report.report_json import render_json

    return render_json(data.document)


@click.command()
@click.argument("run")
@click.option("--baseline", "baseline", metavar="NAME|RUN_ID",
              help="Compare with this baseline or run, as the gate would (not recorded). Default: the run's "
                   "recorded gate.json, or the run alone when it was never gated.")
@click.option("--format", "fmt", type=click.Choice(list(FILE_NAMES)), default="html", show_default=True,
              help="html: one self-contained file; md: for a PR comment or $GITHUB_STEP_SUMMARY; junit: a "
                   "test case per gate check; json: the gate record plus run summaries.")
@click.option("--out", type=click.Path(dir_okay=False, allow_dash=True, path_type=Path),
              help="Where to write it (default: report.html, report.md, report.junit.xml or report.json in the "
                   "run folder; - prints it).")
@click.option("--reports-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where runs are found (default: found from the current directory; RUN may be a folder's path).")
@click.option("--target", default=None, help="For runs of several targets.")
@click.option("--suite", "suite_path", type=click.Path(dir_okay=False, path_type=Path),
              help="The suite (default: the one the run was made from).")
@reports_user_errors
def report(run: str, baseline: str | None, fmt: str, out: Path | None, reports_dir: Path | None,
           target: str | None, suite_path: Path | None) -> None:
    """Write a report of RUN: with a baseline (--baseline, or the run's recorded gate) the comparison
    and the gate's verdict with its reasons, else the run alone."""
    from harness.report.report_data import ReportOptions, gather
    from harness.runs.files import write_atomically

    data = gather(run, ReportOptions(baseline, reports_dir, target, suite_path))
    text = render(data, fmt)
    if out is not None and str(out) == "-":
        click.echo(text, nl=False)
        return
    path = out or data.folder / FILE_NAMES[fmt]
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, text)
    console().print(f"report ({fmt}) of run {data.document.run.run_id} written to {path}", soft_wrap=True)


def report_option(function):
    """`--report FORMAT` (repeatable) for `run` and `gate`: write those reports into the run folder."""
    return click.option("--report", "report_formats", multiple=True, type=click.Choice(list(FILE_NAMES)),
                        metavar="FORMAT", help="Also write this report into the run folder (html, md, junit, "
                        "json; repeatable), as `evalbatch report` would.")(function)


def write_reports(folder: Path, formats: tuple[str, ...], target: str | None = None) -> list[Path]:
    """The run's reports in `formats`, written as report.<ext> in its folder; a run of several
    targets gets one per target (report.<target>.<ext>)."""
    if not formats:  # before the imports: report_data pulls in scipy (~0.5 s, ~60 MB) for every run
        return []
    from harness.report.report_data import ReportOptions, gather
    from harness.runs.files import write_atomically
    from harness.runs.manifest import read_manifest

    labels = [target] if target else [t.label for t in read_manifest(folder).targets]
    written = []
    for label in labels:
        data = gather(str(folder), ReportOptions(target=label))
        for fmt in dict.fromkeys(formats):
            name = FILE_NAMES[fmt] if len(labels) == 1 else FILE_NAMES[fmt].replace("report.", f"report.{label}.", 1)
            write_atomically(folder / name, render(data, fmt))
            written.append(folder / name)
    if written:  # on stderr: `gate --json` prints only JSON on stdout
        click.echo("reports: " + ", ".join(str(path) for path in written), err=True)
    return written
