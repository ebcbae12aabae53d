"""report.html: the gathered report data arranged for the template, rendered by Jinja2 with
autoescape. Everything from the data or a model goes through autoescape (or, for the items the
page's script lists, through `tojson`, which escapes `<`, `>`, `&` and `'` for a script element);
the only markup not escaped is our own: the CSS and JS files beside the template and the SVG
matplotlib draws.
"""

from __future__ import annotations

import base64
import hashlib
import math
from collections import Counter
from importlib import resources
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup

from harness.compare.snapshot import RunSnapshot, is_refusal, metric_item_means
from harness.report.html import charts
from harness.report.report_data import ReportData
from harness.report.report_json import ReportDocument, RunSummary
from harness.runs.gate_record import GateRecord, render_reasons

_FOREST_ROWS = 40
"""Rows of the forest plot at most (primary metrics and guardrails first, then the worst subsets)."""


def _environment() -> Environment:
    environment = Environment(loader=PackageLoader("harness.report.html", "templates"),
                              autoescape=select_autoescape(default=True, default_for_string=True),
                              trim_blocks=True, lstrip_blocks=True)
    environment.filters.update(num=_num, pts=_pts, pval=_pval, interval=_interval)
    return environment


def _asset(name: str) -> Markup:
    """Our own CSS or JS, inlined: the page needs no network, now or years from now."""
    return Markup(resources.files("harness.report.html").joinpath("templates", name).read_text(encoding="utf-8"))


def _csp_hash(script: str) -> str:
    """The page's Content-Security-Policy allows this one script only: were some text ever to
    reach the page as markup, an inline handler or script in it would still not run."""
    return "sha256-" + base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()


def render_html(data: ReportData) -> str:
    document = data.document
    js = _asset("report.js")
    context: dict[str, Any] = {
        "doc": document, "run": document.run, "baseline": document.baseline, "gate": document.gate,
        "css": _asset("report.css"), "js": js, "script_hash": _csp_hash(js), "header": _header_rows(document),
    }
    if document.gate is not None and data.baseline is not None:
        context.update(_comparison_context(document.gate, data))
    else:
        context["length_chart"] = _lengths_chart(None, data.candidate)
    return _environment().get_template("report.html.j2").render(**context)


def _comparison_context(gate: GateRecord, data: ReportData) -> dict[str, Any]:
    comparison = gate.comparison
    reasons = {reason.metric: reason for reason in gate.metrics}
    metrics = [{"metric": r["metric"], "c": r["comparison"], "reason": reasons.get(r["metric"])}
               for r in comparison.get("metrics", [])]
    guardrails = [{"reason": reason, "c": result["comparison"]}
                  for reason, result in zip(gate.guardrails, comparison.get("guardrail_results", []), strict=False)]
    outcomes = comparison.get("gate", {}).get("slices", [])
    subsets = [{"subset": s["subset"], "metric": s["metric"], "c": s["comparison"],
                "adjusted_p": (outcomes[i] or {}).get("adjusted_p") if i < len(outcomes) else None,
                "alarmed": (outcomes[i] or {}).get("alarmed", False) if i < len(outcomes) else False}
               for i, s in enumerate(comparison.get("subsets", []))]
    assert data.baseline is not None
    return {
        "reasons": gate.reasons or render_reasons(gate), "warnings": gate.warnings, "metrics": metrics,
        "guardrails": guardrails, "subsets": subsets, "forest": _forest(gate, metrics, guardrails, subsets),
        "drift": (comparison.get("drift") or {}).get("signals", []), "flaky": comparison.get("flaky", [])[:200],
        "flaky_total": len(comparison.get("flaky", [])), "epochs": comparison.get("epochs", []),
        "labels": _label_shift(data.baseline, data.candidate), "rates": _rates(data.baseline, data.candidate),
        "length_chart": _lengths_chart(data.baseline, data.candidate),
        "items": [_item_row(view) for view in data.items], "counts": data.document.item_counts,
        "item_metrics": sorted({view.change.metric for view in data.items}),
        "item_slices": sorted({s for view in data.items for s in view.change.slices}),
        "history_chart": _history_chart(data), "confusion": data.confusion, "unlisted": data.unlisted_changes,
        "score_charts": _score_charts(data.baseline, data.candidate),
    }


def _score_charts(baseline: RunSnapshot, candidate: RunSnapshot) -> list[tuple[str, Markup]]:
    """Per-item score distributions of the metrics that are not 0/1 (a 0/1 metric's is its mean)."""
    shown = []
    for metric in candidate.metrics:
        if metric in candidate.binary_metrics or metric not in baseline.metrics:
            continue
        base = list(metric_item_means(baseline, metric).values())
        cand = list(metric_item_means(candidate, metric).values())
        if cand:
            shown.append((metric, Markup(charts.histograms(base, cand, f"{metric} (item mean)"))))
    return shown


def _history_chart(data: ReportData) -> Markup | None:
    if len(data.history) < 2 or data.document.gate is None:
        return None
    metric = data.document.gate.metrics[0].metric
    labels = [p.when[:10] for p in data.history[:-1]] + ["candidate"]
    return Markup(charts.trend(labels, [p.value for p in data.history], metric))


def _header_rows(document: ReportDocument) -> list[tuple[str, str, str | None]]:
    """(what, candidate, baseline) rows; the baseline column is None for a run alone."""
    run, base = document.run, document.baseline
    base_run: RunSummary | None = base.run if base is not None else None

    def other(value_of_base: str | None) -> str | None:
        return None if base is None else (value_of_base if value_of_base is not None else "—")

    return [
        ("run", run.run_id, other(base.run_id if base else None)),
        ("prompt", f"{run.prompt}@{run.prompt_version}", other(base.prompt if base else None)),
        ("prompt fingerprint", run.prompt_fingerprint[:12], other(base.prompt_fingerprint[:12] if base else None)),
        ("model", f"{run.provider} {run.model}", other(base.model if base else None)),
        ("params", _params(run.params), other(_params(base.params) if base else None)),
        ("dataset fingerprint", run.dataset[:12], other(base.dataset[:12] if base else None)),
        ("slices (fingerprint)", f"{'+'.join(run.evaluated)} ({run.slice_fingerprint[:12]})",
         other(f"{'+'.join(base.evaluated)} ({base.slice_fingerprint[:12]})" if base else None)),
        ("items × epochs", f"{run.items} × {run.epochs}", other(f"{base_run.items} × {base_run.epochs}" if base_run else None)),
        ("started", run.started_at, other(base_run.started_at if base_run else None)),
        ("status", run.status, other(base_run.status if base_run else None)),
        ("harness", run.harness_version + (f" ({run.git_commit[:10]})" if run.git_commit else ""),
         other(base.harness_version if base else None)),
    ]


def _params(params: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in params.items() if v not in (None, [], {}))


def _forest(gate: GateRecord, metrics: list[dict], guardrails: list[dict], subsets: list[dict]) -> Markup | None:
    rows: list[charts.ForestRow] = []
    margin = None
    for entry in metrics:
        reason, c = entry["reason"], entry["c"]
        if reason is None:
            continue
        signed = -reason.margin if reason.higher_is_better else reason.margin
        margin = signed * 100 if margin is None else margin
        rows.append(_forest_row(f"{entry['metric']} (primary)", c, signed, reason.higher_is_better))
    for entry in guardrails:
        if not entry["c"].get("scores_in_unit_interval"):
            continue  # in points it would be on another scale than the rest (an output length)
        row = _forest_row(f"guardrail {entry['reason'].name}", entry["c"], None, True)
        rows.append(charts.ForestRow(row.label, row.delta, row.low, row.high, worse=entry["reason"].alarmed))
    ranked = sorted(subsets, key=lambda s: (s["c"].get("mean_delta") is None, s["c"].get("mean_delta") or 0.0))
    for entry in ranked[:max(0, _FOREST_ROWS - len(rows))]:
        row = _forest_row(f"{entry['subset']} {entry['metric']}", entry["c"], None, True)
        rows.append(charts.ForestRow(row.label, row.delta, row.low, row.high, worse=entry["alarmed"]))
    rows = [row for row in rows if not math.isnan(row.delta)]
    if not rows:
        return None
    return Markup(charts.forest_plot(rows, margin))


def _forest_row(label: str, c: dict, signed_margin: float | None, higher_is_better: bool) -> charts.ForestRow:
    delta = c.get("mean_delta")
    ci = c.get("ci")
    low, high = (ci[0] * 100, ci[1] * 100) if ci else (None, None)
    worse = False
    if signed_margin is not None and ci:
        worse = ci[0] < signed_margin if higher_is_better else ci[1] > signed_margin
    return charts.ForestRow(label, math.nan if delta is None else delta * 100, low, high, worse)


def _first_labels(snapshot: RunSnapshot) -> Counter:
    return Counter(item.labels[0] for item in snapshot.items.values() if item.labels and item.labels[0] is not None)


def _label_shift(baseline: RunSnapshot, candidate: RunSnapshot) -> dict[str, Any] | None:
    """Predicted-label shares of each run (first epoch), for label-predicting scorers."""
    base, cand = _first_labels(baseline), _first_labels(candidate)
    if not base and not cand:
        return None
    labels = sorted(base.keys() | cand.keys(), key=lambda label: (-(base[label] + cand[label]), label))[:30]
    base_total, cand_total = sum(base.values()) or 1, sum(cand.values()) or 1
    rows = [(label, base[label], base[label] / base_total, cand[label], cand[label] / cand_total) for label in labels]
    chart = charts.bar_pairs(labels, [r[2] for r in rows], [r[4] for r in rows], "share of items")
    return {"rows": rows, "chart": Markup(chart)}


def _rates(baseline: RunSnapshot, candidate: RunSnapshot) -> list[tuple[str, float | None, float | None]]:
    """Empty and refusal rates over answered first epochs."""
    def rate(snapshot: RunSnapshot, test) -> float | None:
        outputs = [item.outputs[0] for item in snapshot.items.values() if item.outputs and item.outputs[0] is not None]
        return sum(1 for o in outputs if test(o)) / len(outputs) if outputs else None

    tests = (("empty output", lambda o: not o.strip()), ("refusal", is_refusal))
    return [(name, rate(baseline, test), rate(candidate, test)) for name, test in tests]


def _lengths_chart(baseline: RunSnapshot | None, candidate: RunSnapshot) -> Markup | None:
    def lengths(snapshot: RunSnapshot) -> list[float]:
        return [float(n) for item in snapshot.items.values() for n in item.output_lengths[:1] if n is not None]

    cand = lengths(candidate)
    if not cand:
        return None
    return Markup(charts.histograms(lengths(baseline) if baseline else [], cand, "output length (characters)"))


def _item_row(view) -> list[Any]:
    """Compact rows for the page's script: [id, metric, change, base score, cand score, base output,
    cand output, slices, input fields]."""
    c = view.change
    return [c.item_id, c.metric, c.change, c.baseline_score, c.candidate_score, c.baseline_output,
            c.candidate_output, c.slices, view.input]


def _num(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.{digits}f}"


def _pts(value: Any) -> str:
    return "n/a" if value is None else f"{value * 100:+.1f}"


def _pval(value: Any) -> str:
    return "n/a" if value is None else f"{value:.3g}"


def _interval(ci: Any) -> str:
    return "n/a" if not ci else f"[{ci[0] * 100:+.1f}, {ci[1] * 100:+.1f}]"
