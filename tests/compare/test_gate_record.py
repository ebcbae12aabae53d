"""What `gate` records and says: drift alarms that `compare` shows, and English reasons rendered
from the record's structured fields. Through the CLI against the fake server."""

from __future__ import annotations

import json

import pytest

from harness.runs.gate_record import GateRecord, render_reasons
from harness.testing.fake_server import FakeLLMServer, keyword_replier
from tests.compare.test_gate_cli import EXIT_FAIL, V1_OR_V2_REPLIES, flat, reports, run, use_generated_data


@pytest.fixture
def failed_v2(project, cli):
    """100 tickets; production from v1; v2 (which answers "bug" to everything) gated against it."""
    with FakeLLMServer(keyword_replier(V1_OR_V2_REPLIES)) as server:
        use_generated_data(project, server.base_url, 100)
        base_run = run(cli, project.suite_path)
        assert cli("baseline", "set", str(project.suite_path), "--from", base_run).exit_code == 0
        candidate = run(cli, project.suite_path, "--prompt-version", "v2")
    result = cli("gate", candidate, "--reports-dir", reports(project))
    assert result.exit_code == EXIT_FAIL, result.output
    folder = project.root / "reports" / "demo" / candidate
    return result, GateRecord.model_validate_json((folder / "gate.json").read_text()), folder


def test_gate_warns_of_the_drift_alarms_compare_shows(failed_v2):
    result, record, folder = failed_v2
    [alarm] = [a for a in record.drift_alarms if a.signal == "label distribution"]
    assert alarm.effect > alarm.threshold and alarm.adjusted_p is not None and alarm.adjusted_p < 0.05
    assert "empty output" not in {a.signal for a in record.drift_alarms}
    out = flat(result.output)
    assert "warning: drift alarm: label distribution changed" in out
    assert f"{alarm.effect_name} {alarm.effect:.3f} above the calibrated threshold {alarm.threshold:.3f}" in out
    written = json.loads((folder / "gate.json").read_text())
    assert "label distribution" in {alarm["signal"] for alarm in written["drift_alarms"]}


def test_gate_reasons_are_rendered_from_the_structured_record(failed_v2):
    result, record, folder = failed_v2
    [metric] = record.metrics
    assert (metric.metric, metric.slice, metric.verdict, metric.n) == ("accuracy", "all", "FAIL", 100)
    assert metric.mean_delta == pytest.approx(-0.7) and metric.ci is not None and metric.ci[1] < -metric.margin
    assert record.reasons == render_reasons(record)
    low, high = (f"{bound * 100:+.1f}" for bound in metric.ci)
    expected = (f"FAIL: accuracy (slice all) -70.0 pts, {metric.ci_level * 100:g}% CI [{low}, {high}], "
                "below the -2 pts margin")
    assert record.reasons[0].startswith(expected)
    assert flat(record.reasons[0]) in flat(result.output)

    # The English follows the structured fields, not text stored beside them.
    edited = record.model_copy(update={"metrics": [metric.model_copy(update={"margin": 0.8})]})
    assert render_reasons(edited)[0].startswith(f"FAIL: accuracy (slice all) -70.0 pts, {metric.ci_level * 100:g}% CI")
    assert "below the -80 pts margin" in render_reasons(edited)[0]
    assert record.candidate.prompt_version == "v2" and record.baseline.name == "production"
    assert (folder / "gate.json").is_file()
