"""What CI leaves for a reviewer: one Markdown summary for the pull request (a table of the
affected suites, then each suite's gate as `evalbatch report --format md` renders it), one JUnit
file with a testsuite per suite (the gate checks as test cases, as `report --format junit`
writes them), and each suite's HTML report beside them."""

from __future__ import annotations

import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

from harness.ci.gating import SuiteResult
from harness.ci.selection import Selection
from harness.compare.verdict_kind import Verdict
from harness.report.markdown import escape

EXIT_CODES = {Verdict.PASS: 0, Verdict.WARN: 0, Verdict.FAIL: 1, Verdict.INCONCLUSIVE: 3}


def overall_verdict(results: list[SuiteResult]) -> Verdict | None:
    """The most severe verdict of the gated suites; None when none was gated."""
    verdicts = [r.verdict for r in results if r.verdict is not None]
    return max(verdicts, key=lambda v: v.severity) if verdicts else None


def exit_code(results: list[SuiteResult]) -> int:
    verdict = overall_verdict(results)
    return 0 if verdict is None else EXIT_CODES[verdict]


def html_name(result: SuiteResult, target: str, several: bool) -> str:
    return f"{result.name}.{target}.html" if several else f"{result.name}.html"


def copy_html(results: list[SuiteResult], folder: Path) -> list[Path]:
    """Each gated suite's HTML report as <suite>.html in the CI folder (one artifact to upload)."""
    folder.mkdir(parents=True, exist_ok=True)
    copied = []
    for result in results:
        for gate in result.gates:
            path = folder / html_name(result, gate.target, len(result.gates) > 1)
            shutil.copyfile(gate.html, path)
            copied.append(path)
    return copied


def render_summary(selection: Selection, results: list[SuiteResult], budget: float | None,
                   html_dir: str = "reports/ci") -> str:
    """`html_dir`: where the <suite>.html copies are, as the reader finds them (relative to the project)."""
    against = f"git `{escape(selection.base_ref)}`" if selection.base_ref else "their baselines"
    verdict = overall_verdict(results)
    if not results:
        return (f"## evalbatch CI: nothing to gate\n\nNo suite in `{escape(str(selection.suites_dir))}` depends on "
                f"a file or setting that changed since {against} ({selection.total_suites} suite(s) checked).\n")
    gated = sum(1 for r in results if r.gates)
    title = f"**{verdict}**" if verdict is not None else "nothing gated"
    lines = [f"## evalbatch CI: {title}", "",
             f"{len(results)} of {selection.total_suites} suite(s) affected since {against}; {gated} gated. "
             f"{_cost_line(selection, budget)}", "",
             "| suite | why it ran | sample | run | verdict |", "|---|---|---|---|---|"]
    for result in results:
        lines.append(_row(result))
    lines.append("")
    for result in results:
        lines += _suite_section(result, html_dir)
    return "\n".join(lines).rstrip() + "\n"


def _cost_line(selection: Selection, budget: float | None) -> str:
    cost = selection.estimate_usd
    shown = "unknown (a target has no price)" if cost is None else f"at most ${cost:,.4f}"
    return f"Estimated cost of the samples: {shown}" + (f" (budget ${budget:,.2f})." if budget is not None else ".")


def _row(result: SuiteResult) -> str:
    work = result.work
    why = "<br>".join(escape(str(reason)) for reason in work.change.reasons) or "unknown: no baseline froze its inputs"
    if work.skipped is not None:
        return f"| {escape(result.name)} | {why} | | | skipped: {escape(work.skipped)} |"
    sample = escape(work.sample.label) if work.sample else ""
    verdicts = ", ".join(f"{escape(g.target)}: **{g.record.verdict}**" if len(result.gates) > 1
                         else f"**{g.record.verdict}**" for g in result.gates)
    return f"| {escape(result.name)} | {why} | {sample} | {escape(result.how)} | {verdicts} |"


def _suite_section(result: SuiteResult, html_dir: str) -> list[str]:
    from harness.report.markdown import render_markdown

    lines: list[str] = []
    for gate in result.gates:
        hint = f"{html_dir}/{html_name(result, gate.target, len(result.gates) > 1)}"
        text = render_markdown(gate.document, html_hint=hint)  # type: ignore[arg-type]
        # One level below the summary's own heading.
        lines += [("#" + line) if line.startswith("## ") else line for line in text.splitlines()] + [""]
    return lines


def render_junit(results: list[SuiteResult]) -> str:
    """One <testsuite> per affected suite (per target when a run has several): its gate checks
    as test cases; a skipped suite is one skipped case saying why."""
    from harness.report.junit import render_junit as render_suite_junit

    root = ET.Element("testsuites", name="evalbatch ci")
    for result in results:
        if not result.gates:
            suite = ET.SubElement(root, "testsuite", name=f"evalbatch.{result.name}", tests="1", failures="0",
                                  errors="0", skipped="1")
            case = ET.SubElement(suite, "testcase", classname=f"evalbatch.{result.name}.gate", name="gate", time="0")
            ET.SubElement(case, "skipped", message=result.work.skipped or "skipped")
            continue
        for gate in result.gates:
            parsed = ET.fromstring(render_suite_junit(gate.document))  # type: ignore[arg-type]
            for suite in parsed.findall("testsuite"):
                if len(result.gates) > 1:
                    suite.set("name", f"{suite.get('name')}.{gate.target}")
                root.append(suite)
    for total in ("tests", "failures", "errors", "skipped"):
        root.set(total, str(sum(int(s.get(total, "0")) for s in root.findall("testsuite"))))
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
