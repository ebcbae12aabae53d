"""`evalbatch report` in JSON, Markdown and JUnit from real runs the fake server answered: the
numbers are checked against gate.json and the run stores (results.jsonl), and data from a model
stays inert text."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from harness.cli import main
from harness.testing.fake_server import FakeLLMServer, keyword_replier
from tests.compare.test_gate_cli import V1_OR_V2_REPLIES, generated_tickets
from tests.conftest import Project, base_suite, write_records

IMG = "<img src=x onerror=window.__pwned=1>"
SCRIPT = "<script>window.__pwned=1</script>"
LINK = "[click](javascript:window.__pwned=1) `x` | cell"
HOSTILE_CATEGORY = "<b onmouseover=window.__pwned=1>de"
# The v2 prompt (zero-shot) answers these three items with hostile text; v1 answers them right.
HOSTILE_REPLIES = {
    "ZERO-SHOT routing. Ticket: HOSTILE-IMG": IMG,
    "ZERO-SHOT routing. Ticket: HOSTILE-SCRIPT": SCRIPT,
    "ZERO-SHOT routing. Ticket: HOSTILE-LINK": LINK,
    "HOSTILE": "billing",
    **V1_OR_V2_REPLIES,
}


@dataclass
class GatedRuns:
    project: Project
    baseline_run: str
    candidate_run: str

    def folder(self, run_id: str) -> Path:
        return self.project.root / "reports" / "demo" / run_id

    def report(self, *args: str):
        return CliRunner().invoke(main, ["report", *args, "--reports-dir", str(self.project.root / "reports")],
                                  catch_exceptions=False)

    def results(self, run_id: str) -> list[dict]:
        lines = (self.folder(run_id) / "results.jsonl").read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines]


def _run(args: list[str]) -> str:
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return re.search(r"run (\S+): complete", result.output).group(1)


def make_gated_runs(root: Path) -> GatedRuns:
    """60 generated tickets and 3 hostile ones (category `lang`, one value hostile too); the v1
    run is the baseline, the v2 run is gated against it (FAIL: v2 answers "bug" to everything)."""
    (root / "prompts" / "route").mkdir(parents=True)
    (root / "prompts" / "route" / "v1.j2").write_text("Ticket: {{ text }}\nTeam:", encoding="utf-8")
    (root / "prompts" / "route" / "v2.j2").write_text("ZERO-SHOT routing. Ticket: {{ text }}\nTeam:", encoding="utf-8")
    records = [{**r, "lang": HOSTILE_CATEGORY if n % 3 == 0 else "en"} for n, r in enumerate(generated_tickets(60))]
    records += [{"id": f"h-{kind.lower()}", "text": f"HOSTILE-{kind} please", "label": "billing", "lang": "en"}
                for kind in ("IMG", "SCRIPT", "LINK")]
    write_records(root / "suites" / "data" / "tickets.jsonl", records)
    project = Project(root, root / "suites" / "demo.yaml")
    with FakeLLMServer(keyword_replier(HOSTILE_REPLIES)) as server:
        suite = base_suite(server.base_url)
        suite["engine"]["concurrency"] = 16
        suite["gate"] = {"category_field": "lang"}
        project.write_suite(suite)
        baseline_run = _run(["run", str(project.suite_path)])
        set_result = CliRunner().invoke(main, ["baseline", "set", str(project.suite_path), "--from", baseline_run])
        assert set_result.exit_code == 0, set_result.output
        candidate_run = _run(["run", str(project.suite_path), "--prompt-version", "v2"])
    gated = CliRunner().invoke(main, ["gate", candidate_run, "--reports-dir", str(root / "reports")])
    assert gated.exit_code == 1, gated.output  # FAIL
    return GatedRuns(project, baseline_run, candidate_run)


@pytest.fixture(scope="module")
def gated(tmp_path_factory) -> GatedRuns:
    return make_gated_runs(tmp_path_factory.mktemp("gated"))


def _accuracy(results: list[dict]) -> dict[str, float]:
    return {line["item_id"]: line["scores"]["accuracy"]["value"] for line in results}


def test_json_is_the_gate_record_plus_run_summaries(gated):
    written = gated.report(gated.candidate_run, "--format", "json")
    assert written.exit_code == 0, written.output
    document = json.loads((gated.folder(gated.candidate_run) / "report.json").read_text(encoding="utf-8"))
    gate = json.loads((gated.folder(gated.candidate_run) / "gate.json").read_text(encoding="utf-8"))
    assert document["version"] == 1 and document["kind"] == "comparison" and document["gate_source"] == "recorded"
    assert document["gate"] == gate

    candidate, baseline = _accuracy(gated.results(gated.candidate_run)), _accuracy(gated.results(gated.baseline_run))
    run_score = document["run"]["scores"][0]
    assert run_score["metric"] == "accuracy" and run_score["n"] == len(candidate) == 63
    assert run_score["mean"] == pytest.approx(sum(candidate.values()) / len(candidate))
    assert document["baseline"]["scores"][0]["mean"] == pytest.approx(sum(baseline.values()) / len(baseline))
    assert document["baseline"]["run"]["run_id"] == gated.baseline_run

    regressed = sorted(i for i in candidate if candidate[i] < baseline[i])
    improved = sorted(i for i in candidate if candidate[i] > baseline[i])
    counts = document["item_counts"][0]
    assert (counts["regressed"], counts["improved"], counts["unchanged"]) == (
        len(regressed), len(improved), len(candidate) - len(regressed) - len(improved))
    # The same pairs McNemar counted in the gate's comparison.
    discordant = gate["comparison"]["metrics"][0]["comparison"]["discordant"]
    assert (discordant["b"], discordant["c"]) == (len(regressed), len(improved))
    assert {item["item_id"] for item in document["top_regressed"]} <= set(regressed)
    assert len(document["top_regressed"]) == min(20, len(regressed))

    metrics = document["run"]["metrics"]
    assert metrics["submitted"] == metrics["succeeded"] == 63 and metrics["failed_terminal"] == 0
    latencies = sorted(line["latency_ms"] for line in gated.results(gated.candidate_run))
    assert latencies[0] <= metrics["latency_p50_ms"] <= latencies[-1]


def test_markdown_has_the_verdict_table_and_top_items_with_data_inert(gated):
    written = gated.report(gated.candidate_run, "--format", "md", "--out", "-")
    assert written.exit_code == 0, written.output
    text = written.output
    gate = json.loads((gated.folder(gated.candidate_run) / "gate.json").read_text(encoding="utf-8"))
    assert text.startswith("## evalbatch gate: **FAIL**")
    delta = gate["metrics"][0]["mean_delta"] * 100
    assert f"| accuracy | 0.905 | 0.190 | {delta:+.1f} |" in text  # baseline 57/63, candidate 12/63
    assert "**FAIL** |" in text
    top = re.findall(r"^\| `([^`]+)` \| accuracy \| 1\.00 \| 0\.00 \|", text, re.M)
    assert len(top) == 10
    # Hostile outputs sit in code spans, so no HTML, link or table cell comes out of them.
    assert "<script>" not in text.replace("`<script>window.__pwned=1</script>`", "")
    assert "<img" not in text.replace(f"`{IMG}`", "")
    assert "| `h-link` | accuracy | 1.00 | 0.00 | `billing` | ``[click](javascript:window.__pwned=1) `x` \\| cell`` |" in text
    table_rows = [line for line in text.splitlines() if line.startswith("| `")]
    assert all(line.count(" | ") == 5 for line in table_rows)


def test_junit_has_a_case_per_check_and_the_reason_as_failure(gated):
    out = gated.folder(gated.candidate_run) / "ci" / "gate.xml"
    written = gated.report(gated.candidate_run, "--format", "junit", "--out", str(out))
    assert written.exit_code == 0, written.output
    gate = json.loads((gated.folder(gated.candidate_run) / "gate.json").read_text(encoding="utf-8"))
    root = ET.parse(out).getroot()
    suite = root.find("testsuite")
    cases = suite.findall("testcase")
    assert [case.get("name") for case in cases] == [f"{m['metric']} (slice {m['slice']})" for m in gate["metrics"]]
    failure = cases[0].find("failure")
    assert failure.get("type") == "FAIL" and failure.get("message") == gate["reasons"][0]
    assert suite.get("tests") == "1" and suite.get("failures") == "1"
    properties = {p.get("name"): p.get("value") for p in suite.find("properties")}
    assert properties["verdict"] == "FAIL" and properties["run_id"] == gated.candidate_run


def test_a_run_alone_reports_its_scores(gated):
    written = gated.report(gated.baseline_run, "--format", "json", "--out", "-")
    assert written.exit_code == 0, written.output
    document = json.loads(written.output)
    assert document["kind"] == "run" and document["gate"] is None and document["baseline"] is None
    accuracy = _accuracy(gated.results(gated.baseline_run))
    assert document["run"]["scores"][0]["mean"] == pytest.approx(sum(accuracy.values()) / len(accuracy))
    junit = gated.report(gated.baseline_run, "--format", "junit", "--out", "-")
    cases = ET.fromstring(junit.output).find("testsuite").findall("testcase")
    assert [case.get("name") for case in cases] == ["accuracy", "requests"]
    assert all(case.find("failure") is None for case in cases)


def test_baseline_option_computes_the_gate_without_recording_it(gated):
    before = sorted(p.name for p in (gated.folder(gated.candidate_run) / "gates").iterdir())
    written = gated.report(gated.candidate_run, "--baseline", gated.baseline_run, "--format", "json", "--out", "-")
    assert written.exit_code == 0, written.output
    document = json.loads(written.output)
    recorded = json.loads((gated.folder(gated.candidate_run) / "gate.json").read_text(encoding="utf-8"))
    assert document["gate_source"] == "computed" and document["baseline"]["kind"] == "run"
    assert document["gate"]["verdict"] == recorded["verdict"] == "FAIL"
    assert document["gate"]["metrics"][0]["mean_delta"] == pytest.approx(recorded["metrics"][0]["mean_delta"])
    assert sorted(p.name for p in (gated.folder(gated.candidate_run) / "gates").iterdir()) == before


def test_unknown_run_is_bad_input(gated):
    result = CliRunner().invoke(main, ["report", "no-such-run", "--reports-dir", str(gated.project.root / "reports")])
    assert result.exit_code == 2
    assert "no-such-run" in result.output
    unknown_baseline = gated.report(gated.candidate_run, "--baseline", "nightly")
    assert unknown_baseline.exit_code == 2
    assert "no baseline 'nightly' of suite 'demo' and no run 'nightly'" in unknown_baseline.output
    missing_suite = gated.report(gated.candidate_run, "--suite", str(gated.project.root / "suites" / "gone.yaml"))
    assert missing_suite.exit_code == 2 and "gone.yaml" in missing_suite.output


def test_gate_report_option_writes_reports_from_the_new_record(gated):
    decided = CliRunner().invoke(main, ["gate", gated.candidate_run, "--reports-dir", str(gated.project.root / "reports"),
                                        "--json", "--report", "md", "--report", "json"])
    assert decided.exit_code == 1, decided.output
    record = json.loads(decided.stdout)  # reports are announced on stderr: stdout stays JSON
    folder = gated.folder(gated.candidate_run)
    document = json.loads((folder / "report.json").read_text(encoding="utf-8"))
    assert document["gate"] == record == json.loads((folder / "gate.json").read_text(encoding="utf-8"))
    assert (folder / "report.md").read_text(encoding="utf-8").startswith("## evalbatch gate: **FAIL**")
    assert "report.md" in decided.stderr


def test_run_report_option(project, fake_server, cli):
    project.write_suite(base_suite(fake_server.base_url))
    result = cli("run", str(project.suite_path), "--report", "junit", "--report", "html")
    assert result.exit_code == 0, result.output
    folder = project.run_dirs()[-1]
    cases = ET.parse(folder / "report.junit.xml").getroot().find("testsuite").findall("testcase")
    assert [case.get("name") for case in cases] == ["accuracy", "requests"]
    assert "<h2>Scores</h2>" in (folder / "report.html").read_text(encoding="utf-8")


@pytest.mark.embedded
def test_reports_of_an_embedded_model_gate(tmp_path, cli):
    """The tickets suite on its first 12 tickets, v1 (few-shot) as baseline, v2 (zero-shot) gated
    with every report written: each says what gate.json and the stores say."""
    import shutil

    import yaml

    from tests.conftest import REPO

    shutil.copytree(REPO / "prompts" / "ticket-routing", tmp_path / "prompts" / "ticket-routing")
    (tmp_path / "suites" / "data").mkdir(parents=True)
    shutil.copy(REPO / "suites" / "data" / "tickets.jsonl", tmp_path / "suites" / "data" / "tickets.jsonl")
    suite = yaml.safe_load((REPO / "suites" / "tickets.yaml").read_text(encoding="utf-8"))
    suite["slices"].append({"name": "first12", "first_n": 12})
    suite["evaluate"] = ["first12"]
    suite_path = tmp_path / "suites" / "tickets.yaml"
    suite_path.write_text(yaml.safe_dump(suite, sort_keys=False), encoding="utf-8")
    baseline_run = _run(["run", str(suite_path)])
    assert cli("baseline", "set", str(suite_path), "--from", baseline_run).exit_code == 0
    candidate_run = _run(["run", str(suite_path), "--prompt-version", "v2"])
    gated = cli("gate", candidate_run, "--reports-dir", str(tmp_path / "reports"),
                "--report", "html", "--report", "md", "--report", "junit", "--report", "json")
    assert gated.exit_code in (1, 3), gated.output  # zero-shot on 12 items: FAIL or INCONCLUSIVE

    folder = tmp_path / "reports" / "tickets" / candidate_run
    gate = json.loads((folder / "gate.json").read_text(encoding="utf-8"))
    document = json.loads((folder / "report.json").read_text(encoding="utf-8"))
    assert document["gate"] == gate
    lines = [json.loads(line) for line in (folder / "results.jsonl").read_text(encoding="utf-8").splitlines()]
    values = [line["scores"]["accuracy"]["value"] for line in lines]
    assert document["run"]["scores"][0]["mean"] == pytest.approx(sum(values) / len(values))
    assert document["run"]["model"] == "gemma3-270m-q4_k_m" and document["run"]["metrics"]["submitted"] == 12
    failure = ET.parse(folder / "report.junit.xml").getroot().find("testsuite").find("testcase").find("failure")
    assert failure is not None and failure.get("message") == gate["reasons"][0]
    assert (folder / "report.md").read_text(encoding="utf-8").startswith(f"## evalbatch gate: **{gate['verdict']}**")
    html = (folder / "report.html").read_text(encoding="utf-8")
    assert f'<span class="verdict v-{gate["verdict"]}" id="verdict">{gate["verdict"]}</span>' in html
