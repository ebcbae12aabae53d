"""The gate's small-data advice counts the items a --sample was drawn from (recorded in the run's
manifest), not the larger of the sample and the baseline: a baseline smaller than the slices
made it advise a wider margin than the data called for."""

from __future__ import annotations

import json

from harness.runs.gate_record import GATE_FILE
from tests.conftest import base_suite, write_records

TEXTS = {"billing": "I was billed twice", "bug": "The export button crashes"}


def _records(count: int) -> list[dict]:
    return [{"id": f"p{n:03d}", "text": f"{TEXTS[label]} ({n})", "label": label}
            for n in range(count) for label in [("billing", "bug")[n % 2]]]


def test_a_sample_records_its_population_and_the_gate_counts_it(project, cli, fake_server):
    write_records(project.root / "suites" / "data" / "tickets.jsonl", _records(120))
    project.write_suite(base_suite(fake_server.base_url))
    assert cli("run", str(project.suite_path), "--limit", "20").exit_code == 0  # a small baseline
    [baseline_run] = project.run_dirs()
    manifest = json.loads((baseline_run / "manifest.json").read_text())
    assert manifest["dataset"]["population"] is None  # a --limit stops reading: not counted
    made = cli("baseline", "set", str(project.suite_path), "--from", baseline_run.name)
    assert made.exit_code == 0, made.output

    result = cli("run", str(project.suite_path), "--sample", "30", "--new")
    assert result.exit_code == 0, result.output
    [sample_run] = [run for run in project.run_dirs() if run != baseline_run]
    assert json.loads((sample_run / "manifest.json").read_text())["dataset"]["population"] == 120
    gated = cli("gate", sample_run.name, "--suite", str(project.suite_path))
    assert gated.exit_code in (0, 1, 3), gated.output
    record = json.loads((sample_run / GATE_FILE).read_text())
    assert {metric["items_available"] for metric in record["metrics"]} == {120}  # not max(30, 20)

    full = cli("run", str(project.suite_path), "--new")
    assert full.exit_code == 0, full.output
    [full_run] = [run for run in project.run_dirs() if run not in (baseline_run, sample_run)]
    assert json.loads((full_run / "manifest.json").read_text())["dataset"]["population"] == 120
