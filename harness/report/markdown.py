"""The report as Markdown, sized for a pull-request comment or $GITHUB_STEP_SUMMARY: the verdict
and its reasons, the metric table, the top regressed items and where the HTML report is.

Data (outputs, item IDs, slice names) is written inside code spans or escaped, so a model output
cannot add links, images, HTML or table cells to the comment.
"""

from __future__ import annotations

import math
import re

from harness.report.report_json import ItemChange, ReportDocument, RunSummary, ScoreRow

_SHOWN_ITEMS = 10
_OUTPUT_CHARS = 80
# Enough for inline text placed after "- " or inside a table cell: the characters that start
# emphasis, code, links, HTML, entities, strikethrough or a new cell.
_SPECIAL = re.compile(r"([\\`*_\[\]|<>~&])")


def escape(text: str) -> str:
    """Inline Markdown and HTML as literal characters, on one line."""
    return _SPECIAL.sub(r"\\\1", " ".join(text.split()))


def _code(text: str | None, limit: int = _OUTPUT_CHARS) -> str:
    """A code span that no backtick in `text` can close; table pipes escaped (GitHub splits cells first)."""
    if text is None:
        return "_(none)_"
    flat = " ".join(text.split())
    if len(flat) > limit:
        flat = flat[:limit] + "…"
    if not flat:
        return "_(empty)_"
    ticks = "`" * (max((len(run) for run in re.findall(r"`+", flat)), default=0) + 1)
    flat = flat.replace("|", "\\|")
    pad = " " if flat.startswith("`") or flat.endswith("`") else ""
    return f"{ticks}{pad}{flat}{pad}{ticks}"


def _num(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def _pts(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:+.1f}"


def render_markdown(document: ReportDocument, html_hint: str | None = "report.html") -> str:
    lines = [_title(document), ""]
    if document.gate is not None:
        lines += _gate(document)
    else:
        lines += _scores(document.run)
    lines += _operations(document.run)
    for note in document.notes:
        lines += [f"> note: {escape(note)}", ""]
    if html_hint:
        lines += [f"Full report (every changed item side by side, charts): `{html_hint}` in the run folder "
                  "or the workflow's artifacts.", ""]
    return "\n".join(lines).rstrip() + "\n"


def _title(document: ReportDocument) -> str:
    run = document.run
    if document.gate is None:
        return (f"## evalbatch: {escape(run.suite)} run `{run.run_id}` "
                f"({escape(run.prompt)}@{escape(run.prompt_version)} on {escape(run.model)})")
    baseline = document.baseline
    against = "" if baseline is None else f" vs {escape(baseline.name or 'run ' + baseline.run_id)} ({escape(baseline.prompt)})"
    return (f"## evalbatch gate: **{document.gate.verdict}** — {escape(run.suite)}, "
            f"{escape(run.prompt)}@{escape(run.prompt_version)}{against}")


def _gate(document: ReportDocument) -> list[str]:
    gate = document.gate
    assert gate is not None
    source = "recorded in gate.json" if document.gate_source == "recorded" else "computed for this report"
    lines = [f"Candidate run `{gate.run_id}` (target {escape(gate.target)}), decided {gate.decided_at} by "
             f"{escape(gate.decided_by)}, {source}.", ""]
    lines += [f"- {escape(reason)}" for reason in gate.reasons]
    lines += [f"- warning: {escape(warning)}" for warning in gate.warnings]
    lines += ["", "| metric | baseline | candidate | delta (pts) | 95% CI (pts) | margin (pts) | test | p | verdict |",
              "|---|---:|---:|---:|---|---:|---|---:|---|"]
    base_scores = {row.metric: row for row in document.baseline.scores} if document.baseline else {}
    cand_scores = {row.metric: row for row in document.run.scores}
    for reason in gate.metrics:
        ci = "n/a" if reason.ci is None else f"[{_pts(reason.ci[0])}, {_pts(reason.ci[1])}]"
        margin = -reason.margin if reason.higher_is_better else reason.margin
        base, cand = base_scores.get(reason.metric), cand_scores.get(reason.metric)
        lines.append(f"| {escape(reason.metric)} | {_num(base.mean if base else None)} | "
                     f"{_num(cand.mean if cand else None)} | {_pts(reason.mean_delta)} | {ci} | {margin * 100:+g} | "
                     f"{escape(reason.test)} | {_p(reason.p)} | **{reason.verdict}** |")
    lines.append("")
    if gate.guardrails:  # in the metric's own units: a guardrail such as output_length is not a rate
        lines += ["| guardrail | delta | test | Holm p | |", "|---|---:|---|---:|---|"]
        lines += [f"| {escape(check.name)}{' (blocking)' if check.blocking else ''} | {_num(check.mean_delta)} | "
                  f"{escape(check.test)} | {_p(check.adjusted_p)} | {'ALARM' if check.alarmed else 'ok'} |"
                  for check in gate.guardrails]
        lines.append("")
    counts = ", ".join(f"{escape(c.metric)}: {c.regressed:,} regressed, {c.improved:,} improved, "
                       f"{c.unchanged:,} unchanged" for c in document.item_counts)
    if counts:
        lines += [f"Items: {counts}.", ""]
    lines += _items("Top regressed items", document.top_regressed)
    return lines


def _p(p: float | None) -> str:
    return "n/a" if p is None else f"{p:.3g}"


def _items(title: str, items: list[ItemChange]) -> list[str]:
    if not items:
        return []
    lines = [f"<details><summary>{title} ({min(len(items), _SHOWN_ITEMS)} shown)</summary>", "",
             "| item | metric | baseline | candidate | baseline output | candidate output |",
             "|---|---|---:|---:|---|---|"]
    for item in items[:_SHOWN_ITEMS]:
        lines.append(f"| {_code(item.item_id, 40)} | {escape(item.metric)} | {_num(item.baseline_score, 2)} | "
                     f"{_num(item.candidate_score, 2)} | {_code(item.baseline_output)} | {_code(item.candidate_output)} |")
    return lines + ["", "</details>", ""]


def _scores(run: RunSummary) -> list[str]:
    lines = [f"Run `{run.run_id}` ({run.status}) of {run.items} items on {escape(', '.join(run.evaluated))}.", "",
             "| metric | items | mean | 95% CI |", "|---|---:|---:|---|"]
    lines += [f"| {escape(row.metric)} | {row.n} | {_num(row.mean)} | {_interval(row)} |" for row in run.scores]
    return lines + [""]


def _interval(row: ScoreRow) -> str:
    return "n/a" if row.ci_low is None or row.ci_high is None else f"[{row.ci_low:.3f}, {row.ci_high:.3f}]"


def _operations(run: RunSummary) -> list[str]:
    metrics = run.metrics
    if metrics is None:
        return []
    cost = "cost unknown (no prices)" if metrics.cost_usd is None else (
        f"cost ${metrics.cost_usd:.4f} (${_num(metrics.cost_per_item_usd, 6)} per item)")
    latency = "" if metrics.latency_p50_ms is None else (
        f"; latency p50 {metrics.latency_p50_ms:.0f} ms, p95 {_num(metrics.latency_p95_ms, 0)} ms")
    return [f"Operations: {metrics.submitted} requests, {metrics.succeeded} succeeded, {metrics.failed_terminal} failed, "
            f"{metrics.attempts} attempts; {cost}{latency}; wall time {run.wall_time_s:.1f} s.", ""]
