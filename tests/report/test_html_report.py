"""report.html from real runs (fake server): one self-contained file whose numbers are the gate
record's and the stores', and in which nothing from the data or a model is markup."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from html.parser import HTMLParser

import pytest

from tests.report.test_report_formats import HOSTILE_CATEGORY, IMG, LINK, SCRIPT, GatedRuns, make_gated_runs


class _Page(HTMLParser):
    """Tags, attributes and script contents, as a browser's parser would see them."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: dict[str | None, str] = {}
        self._script: str | None = None
        self._script_id: str | None = None

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag == "script":
            self._script, self._script_id = "", dict(attrs).get("id")

    def handle_data(self, data):
        if self._script is not None:
            self._script += data

    def handle_endtag(self, tag):
        if tag == "script" and self._script is not None:
            self.scripts[self._script_id] = self._script
            self._script = None


@pytest.fixture(scope="module")
def gated(tmp_path_factory) -> GatedRuns:
    return make_gated_runs(tmp_path_factory.mktemp("html"))


@pytest.fixture(scope="module")
def page(gated) -> tuple[str, _Page]:
    written = gated.report(gated.candidate_run)  # HTML is the default format
    assert written.exit_code == 0, written.output
    html = (gated.folder(gated.candidate_run) / "report.html").read_text(encoding="utf-8")
    parsed = _Page()
    parsed.feed(html)
    return html, parsed


def test_self_contained_one_file(page):
    html, parsed = page
    tags = {tag for tag, _ in parsed.tags}
    assert "link" not in tags and "iframe" not in tags and "img" not in tags
    for tag, attrs in parsed.tags:
        assert "src" not in attrs or tag == "script" and attrs["src"] is None, (tag, attrs)
        assert not (attrs.get("href") or "").startswith(("http", "//")), (tag, attrs)
    assert "<svg" in html and "<style>" in html
    # The only script that runs is ours, and the page's CSP allows exactly it.
    code = parsed.scripts[None]
    digest = base64.b64encode(hashlib.sha256(code.encode()).digest()).decode()
    assert f"script-src 'sha256-{digest}'" in html


def test_numbers_are_the_gate_records(gated, page):
    html, _ = page
    gate = json.loads((gated.folder(gated.candidate_run) / "gate.json").read_text(encoding="utf-8"))
    metric = gate["metrics"][0]
    assert '<span class="verdict v-FAIL" id="verdict">FAIL</span>' in html
    assert f"<li>{gate['reasons'][0]}</li>" in html
    low, high = metric["ci"]
    assert f"[{low * 100:+.1f}, {high * 100:+.1f}]" in html
    assert f'<td class="n">{metric["mean_delta"] * 100:+.1f}</td>' in html
    assert f'{metric["p"]:.3g}' in html
    for subset in gate["comparison"]["subsets"]:  # lang=en and the hostile category, escaped
        assert f'<td class="n">{subset["comparison"]["n"]}</td>' in html
    # The baseline's history: who set it from which run, and the metric from it to the candidate.
    history = html[html.index('<section id="history">'):]
    assert f"<td>{gated.baseline_run}</td>" in history and "<svg" in history


def test_items_data_lists_every_changed_item(gated, page):
    _, parsed = page
    items = json.loads(parsed.scripts["items-data"])
    candidate = {line["item_id"]: line["scores"]["accuracy"]["value"] for line in gated.results(gated.candidate_run)}
    baseline = {line["item_id"]: line["scores"]["accuracy"]["value"] for line in gated.results(gated.baseline_run)}
    regressed = {i for i in candidate if candidate[i] < baseline[i]}
    assert {row[0] for row in items if row[2] == "regressed"} == regressed
    assert {row[0] for row in items if row[2] == "unchanged"} == set(candidate) - regressed
    hostile = {row[0]: row for row in items if row[0].startswith("h-")}
    assert hostile["h-img"][6] == IMG and hostile["h-script"][6] == SCRIPT and hostile["h-link"][6] == LINK
    assert ["text", "HOSTILE-IMG please"] in hostile["h-img"][8]


def test_data_from_a_model_is_never_markup(page):
    html, parsed = page
    for hostile in (IMG, SCRIPT, HOSTILE_CATEGORY, "<b onmouseover"):
        assert hostile not in html
    assert "lang=&lt;b onmouseover=window.__pwned=1&gt;de" in html
    # In the script element the data is JSON with <, > and & escaped: no `</script>` can end it early.
    assert "\\u003cscript\\u003ewindow.__pwned=1\\u003c/script\\u003e" in parsed.scripts["items-data"]
    assert not any(name.startswith("on") for _, attrs in parsed.tags for name in attrs)
    assert re.search(r"<(img|iframe|object|embed)\b", html) is None


def test_a_run_alone(gated):
    written = gated.report(gated.baseline_run, "--format", "html", "--out", "-")
    assert written.exit_code == 0, written.output
    html = written.output
    accuracy = [line["scores"]["accuracy"]["value"] for line in gated.results(gated.baseline_run)]
    assert f'<td class="n">{sum(accuracy) / len(accuracy):.3f}</td>' in html
    assert 'id="verdict"' not in html and 'id="items-data"' not in html


def test_confusion_matrices_count_the_stored_labels(gated):
    from collections import Counter

    from harness.report.report_data import ReportOptions, gather

    data = gather(gated.candidate_run, ReportOptions(reports_dir=gated.project.root / "reports"))
    confusion = data.confusion
    assert confusion is not None and confusion.metric == "accuracy"
    for side, run_id in (("baseline", gated.baseline_run), ("candidate", gated.candidate_run)):
        counted = Counter((line["fields"]["label"], line["scores"]["accuracy"]["detail"]["label"] or "(none)")
                          for line in gated.results(run_id))
        matrix = getattr(confusion, side)
        shown = {(row, column): matrix[r][c] for r, row in enumerate(confusion.expected)
                 for c, column in enumerate(confusion.predicted)}
        assert {key: value for key, value in shown.items() if value} == dict(counted)
    # v2 answers "bug" to everything except the hostile items, which it answers with no label.
    assert confusion.expected[:1] == ["billing"] and "bug" in confusion.predicted


def test_listed_changes_are_capped_regressed_first(gated, monkeypatch):
    from harness.report import report_data
    from harness.report.html import render_html

    monkeypatch.setattr(report_data, "LISTED_CHANGES", 10)
    data = report_data.gather(gated.candidate_run, report_data.ReportOptions(reports_dir=gated.project.root / "reports"))
    changed = [view.change for view in data.items if view.change.change != "unchanged"]
    regressed = data.document.item_counts[0].regressed
    assert len(changed) == 10 and all(c.change == "regressed" for c in changed)
    assert data.unlisted_changes == regressed + data.document.item_counts[0].improved - 10
    assert f"{data.unlisted_changes:,} more changed items are counted but not listed" in render_html(data)
