"""How a comparison and its gate record are shown to people (machines read `report_json` and gate.json)."""

from __future__ import annotations

import math
import re

from rich.console import Console
from rich.table import Table
from rich.text import Text

from harness.compare.comparison import ComparisonReport
from harness.compare.verdict import Verdict
from harness.runs.gate_record import GateRecord, render_reasons, render_warnings

_COLOURS = {Verdict.PASS: "green", Verdict.WARN: "yellow", Verdict.INCONCLUSIVE: "magenta", Verdict.FAIL: "red"}


def _fmt(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def one_line(text: str) -> str:
    """Data (category values, item IDs, reasons quoting them) shown on one console line: control
    characters, newlines included, are written as escapes, so no value can move the cursor, erase
    a line or start a line that looks like the tool's own (a forged `gate: PASS`)."""
    return _CONTROL.sub(lambda found: f"\\x{ord(found.group()):02x}", text)


def _ci(bounds: tuple[float, float] | None) -> str:
    return "n/a" if bounds is None else f"[{bounds[0]:+.3f}, {bounds[1]:+.3f}]"


def print_comparison(console: Console, report: ComparisonReport) -> None:
    pairing = report.pairing
    console.print(f"candidate {report.candidate_run} vs baseline {report.baseline_label}: "
                  f"{len(pairing.common)} paired items")
    table = Table(title="Metrics (paired by item; epochs averaged within items)")
    for column in ("metric", "n", "baseline", "candidate", "delta", "SE", "95% CI", "test", "p", "corr", "MDE"):
        table.add_column(column)
    for result in report.metrics:
        c = result.comparison
        table.add_row(result.metric, str(c.n), _fmt(c.baseline_mean), _fmt(c.candidate_mean), _fmt(c.mean_delta),
                      _fmt(c.se), _ci(c.ci) + (" score" if c.ci_method == "Tango score" else ""), c.test_name, _fmt(c.p_value, 4), _fmt(c.correlation, 2), _fmt(c.mde))
    console.print(table)
    if report.subsets:
        sub = Table(title="Slices and categories (exploratory; Benjamini-Hochberg q=0.10)")
        for column in ("subset", "metric", "n", "baseline", "candidate", "delta", "95% CI"):
            sub.add_column(column)
        for s in report.subsets:
            c = s.comparison
            sub.add_row(one_line(s.subset), s.metric, str(c.n), _fmt(c.baseline_mean), _fmt(c.candidate_mean),
                        _fmt(c.mean_delta), _ci(c.ci))
        console.print(sub)
    for stat in report.epochs:
        console.print(f"{stat.metric}: {stat.k} epochs, mean {stat.mean:.3f}, pass^{stat.k} {stat.pass_all_k:.3f}")
    if report.flaky:
        console.print(f"flaky items ({len(report.flaky)}; epochs disagree): " + ", ".join(
            f"{one_line(f.item_id)} {f.metric} agreement {f.agreement:.2f}" for f in report.flaky[:15]))
    if report.drift is not None:
        drift = Table(title="Drift (no ground truth needed; BH across signals)")
        for column in ("signal", "test", "p (BH)", "effect", "threshold", "alarm"):
            drift.add_column(column)
        for signal in report.drift.signals:
            drift.add_row(signal.name, signal.test_name, _fmt(signal.adjusted_p, 4),
                          f"{signal.effect_name} {_fmt(signal.effect)}", _fmt(signal.effect_threshold),
                          "ALARM" if signal.alarm else "-")
        console.print(drift)


def print_gate(console: Console, record: GateRecord) -> None:
    """The verdict, its reasons, warnings (worsened slices, drift alarms) and notes, from the record."""
    console.print(f"gate: {record.verdict}", style=f"bold {_COLOURS[record.verdict]}")
    for reason in render_reasons(record):
        console.print(f"  {one_line(reason)}")
    for warning in render_warnings(record):
        console.print(Text.assemble("  ", ("warning:", "yellow"), f" {one_line(warning)}"))
    for note in record.notes:
        console.print(f"note: {one_line(note)}")
