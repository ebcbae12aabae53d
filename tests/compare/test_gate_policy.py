"""The gate policy is fixed before the data is seen: a run records it when it starts, `gate`
refuses a policy changed since unless told why, and every gate decision is kept."""

from __future__ import annotations

import json
import re

import pytest

from harness.testing.fake_server import FakeLLMServer, keyword_replier
from tests.conftest import TICKET_REPLIES, base_suite

EXIT_PASS, EXIT_BAD_INPUT, EXIT_INCONCLUSIVE = 0, 2, 3


def _write_suite(project, server, margin: float) -> None:
    suite = base_suite(server.base_url)
    suite["gate"] = {"primary": [{"metric": "accuracy", "margin": margin}]}
    project.write_suite(suite)


def _run(cli, project) -> str:
    result = cli("run", str(project.suite_path), "--new")
    assert result.exit_code == 0, result.output
    return re.search(r"run (\S+): complete", result.output).group(1)


@pytest.fixture
def gated(project, cli):
    """A baseline and a candidate of the six tickets, the candidate run under a 2-point margin:
    six unchanged items cannot show non-inferiority at 2 points, so the gate is INCONCLUSIVE."""
    with FakeLLMServer(keyword_replier(TICKET_REPLIES)) as server:
        _write_suite(project, server, margin=0.02)
        baseline = _run(cli, project)
        assert cli("baseline", "set", str(project.suite_path), "--from", baseline).exit_code == 0
        candidate = _run(cli, project)
        yield server, project.root / "reports" / "demo" / candidate


def _json(path):
    return json.loads(path.read_text())


def test_the_run_records_its_gate_policy_when_it_starts(project, gated):
    server, run_dir = gated
    recorded = _json(run_dir / "manifest.json")["gate_policy"]
    assert recorded["policy"]["primary"] == [{"metric": "accuracy", "margin": 0.02, "higher_is_better": True}]
    assert len(recorded["fingerprint"]) == 64


def test_gate_refuses_a_margin_loosened_after_the_run_started(project, cli, gated):
    server, run_dir = gated
    first = cli("gate", str(run_dir))
    assert first.exit_code == EXIT_INCONCLUSIVE, first.output
    inconclusive = (run_dir / "gate.json").read_text()

    _write_suite(project, server, margin=0.5)
    refused = cli("gate", str(run_dir))
    assert refused.exit_code == EXIT_BAD_INPUT, refused.output
    assert "gate.primary.0.margin: 0.02 when the run started, 0.5 now" in refused.output
    assert "--policy-changed" in refused.output
    assert (run_dir / "gate.json").read_text() == inconclusive  # nothing written

    passed = cli("gate", str(run_dir), "--policy-changed", "margin agreed with the product owner")
    assert passed.exit_code == EXIT_PASS, passed.output
    record = _json(run_dir / "gate.json")
    assert record["policy_changed"] == "margin agreed with the product owner"
    assert record["run_policy_fingerprint"] == _json(run_dir / "manifest.json")["gate_policy"]["fingerprint"]
    assert record["run_policy_fingerprint"] != record["policy_fingerprint"]
    assert any("gate.primary.0.margin: 0.02 when the run started, 0.5 now" in note and
               "margin agreed with the product owner" in note for note in record["notes"])

    # Both decisions are kept, in order; gate.json is the latest.
    history = sorted((run_dir / "gates").glob("*.json"))
    assert [p.name for p in history] == ["0001.json", "0002.json"]
    assert history[0].read_text() == inconclusive
    assert _json(history[1]) == record

    # Promotion reads the latest decision, accepts it (the policy is the suite's now) and reports the change.
    promoted = cli("promote", str(project.suite_path), "--run", run_dir.name)
    assert promoted.exit_code == 0, promoted.output
    promotion = _json(project.root / "baselines" / "demo" / "promoted.json")
    assert promotion["policy_changed"] == "margin agreed with the product owner"


def test_an_unchanged_policy_gates_without_a_reason_and_keeps_every_decision(cli, gated):
    _, run_dir = gated
    for _ in range(3):
        assert cli("gate", str(run_dir)).exit_code == EXIT_INCONCLUSIVE
    history = [_json(p) for p in sorted((run_dir / "gates").glob("*.json"))]
    assert len(history) == 3 and history[-1] == _json(run_dir / "gate.json")
    assert all(record["policy_changed"] is None for record in history)


def test_a_gate_json_from_before_the_history_is_kept_when_the_run_is_gated_again(cli, gated):
    _, run_dir = gated
    assert cli("gate", str(run_dir)).exit_code == EXIT_INCONCLUSIVE
    old = (run_dir / "gate.json").read_text()
    for path in (run_dir / "gates").glob("*"):  # as a gate from before the history left it
        path.unlink()
    (run_dir / "gates").rmdir()
    assert cli("gate", str(run_dir)).exit_code == EXIT_INCONCLUSIVE
    history = sorted((run_dir / "gates").glob("*.json"))
    assert len(history) == 2 and history[0].read_text() == old


def test_a_run_that_did_not_record_its_policy_is_gated_with_a_note(project, cli, gated):
    server, run_dir = gated
    manifest = _json(run_dir / "manifest.json")
    del manifest["gate_policy"]  # a run started before runs recorded their policy
    (run_dir / "manifest.json").write_text(json.dumps(manifest, indent=2))
    _write_suite(project, server, margin=0.5)
    result = cli("gate", str(run_dir))
    assert result.exit_code == EXIT_PASS, result.output
    record = _json(run_dir / "gate.json")
    assert record["run_policy_fingerprint"] is None and record["policy_changed"] is None
    assert any("the run did not record its policy" in note for note in record["notes"])
    assert "the run did not record its policy" in result.output


def test_a_blank_policy_change_reason_is_refused(project, cli, gated):
    server, run_dir = gated
    _write_suite(project, server, margin=0.5)
    result = cli("gate", str(run_dir), "--policy-changed", "  ")
    assert result.exit_code == EXIT_BAD_INPUT and "needs a reason" in result.output
    assert not (run_dir / "gate.json").exists()
