"""The HTML report's charts as inline SVG, drawn with matplotlib's Agg backend (imported here only,
so the other report formats never pay for it).

Text from the data (metric, slice and category names, labels) reaches the SVG only through
matplotlib's text elements, which it writes XML-escaped; the browser test puts a hostile
category name into a forest plot to hold that.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass

_INK, _MUTED, _BAD, _GOOD, _LINE = "#1f2937", "#6b7280", "#b91c1c", "#15803d", "#2563eb"


@dataclass(frozen=True)
class ForestRow:
    """One interval of the forest plot, in points (0.05 -> 5)."""

    label: str
    delta: float
    low: float | None
    high: float | None
    worse: bool
    """Drawn red: a primary metric whose interval reaches past the margin on the bad side, an
    alarmed guardrail, a worsened slice or category."""


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    matplotlib.rcParams.update({"svg.fonttype": "none", "font.size": 9, "svg.hashsalt": "evalbatch",
                                "font.family": "sans-serif"})
    import matplotlib.pyplot as plt

    return plt


def _svg(figure) -> str:
    """The figure as an <svg> element alone (no XML declaration, doctype or metadata), with a
    fixed id salt, so the same report renders to the same bytes. Every chart is drawn open: no top
    or right frame line."""
    plt = _pyplot()
    for axes in figure.axes:
        for side in ("top", "right"):
            axes.spines[side].set_visible(False)
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None, "Creator": None})
    plt.close(figure)
    text = buffer.getvalue()
    text = text[text.index("<svg"):]
    return re.sub(r"<metadata>.*?</metadata>", "", text, flags=re.S)


def _short(label: str, limit: int = 48) -> str:
    return label if len(label) <= limit else label[:limit - 1] + "…"


def forest_plot(rows: list[ForestRow], margin_pts: float | None) -> str:
    """Deltas with their intervals, one row each, against 0 and the margin (a dashed line on
    the bad side: -margin for higher-is-better metrics)."""
    plt = _pyplot()
    height = 0.9 + 0.32 * len(rows)
    figure, axes = plt.subplots(figsize=(7.2, height))
    for index, row in enumerate(rows):
        y = len(rows) - 1 - index
        colour = _BAD if row.worse else _LINE
        if row.low is not None and row.high is not None:
            axes.plot([row.low, row.high], [y, y], color=colour, linewidth=2.2, solid_capstyle="butt")
        axes.plot([row.delta], [y], marker="D", color=colour, markersize=5)
    axes.axvline(0, color=_MUTED, linewidth=1)
    if margin_pts is not None:
        axes.axvline(margin_pts, color=_BAD, linewidth=1, linestyle="--")
        axes.text(margin_pts, len(rows) - 0.45, f" margin {margin_pts:+g}", color=_BAD, fontsize=8, va="bottom")
    axes.set_yticks(range(len(rows)), [_short(r.label) for r in reversed(rows)])
    axes.set_ylim(-0.6, len(rows) - 0.2)
    axes.set_xlabel("candidate − baseline (points), 95% CI")
    axes.tick_params(colors=_INK)
    return _svg(figure)


def bar_pairs(labels: list[str], baseline: list[float], candidate: list[float], xlabel: str) -> str:
    """Horizontal bars, baseline and candidate side by side per label (label distributions, rates)."""
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(7.2, 0.9 + 0.36 * len(labels)))
    ys = list(range(len(labels)))
    axes.barh([y + 0.19 for y in ys], baseline, height=0.36, color="#9ca3af", label="baseline")
    axes.barh([y - 0.19 for y in ys], candidate, height=0.36, color=_LINE, label="candidate")
    axes.set_yticks(ys, [_short(label) for label in labels])
    axes.invert_yaxis()
    axes.set_xlabel(xlabel)
    axes.legend(frameon=False, loc="lower right")
    return _svg(figure)


def histograms(baseline: list[float], candidate: list[float], xlabel: str) -> str:
    """Two overlaid histograms on shared bins (score or output-length distributions)."""
    import numpy as np

    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(7.2, 2.4))
    values = baseline + candidate
    low, high = (min(values), max(values)) if values else (0.0, 1.0)
    bins = 20 if high > low else 1
    span = (low, high) if high > low else (low - 0.5, high + 0.5)
    # Counted by numpy and drawn as outlines: pyplot.hist draws one patch per bin and value set,
    # which costs more than the counting at 100,000 items.
    for values_of, colour, name in ((baseline, "#9ca3af", "baseline"), (candidate, _LINE, "candidate")):
        if values_of:
            counts, edges = np.histogram(values_of, bins=bins, range=span)
            axes.stairs(counts, edges, fill=True, color=colour, alpha=0.6, label=name)
    axes.set_xlabel(xlabel)
    axes.set_ylabel("items")
    axes.legend(frameon=False)
    return _svg(figure)


def trend(labels: list[str], values: list[float], ylabel: str) -> str:
    """A metric over the baseline's history (one point per setting, then the candidate)."""
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(7.2, 2.2))
    axes.plot(range(len(values)), values, marker="o", color=_LINE)
    axes.set_xticks(range(len(labels)), labels)
    axes.set_ylabel(ylabel)
    return _svg(figure)
