"""Promotion only on a gate that still holds: decided against the suite's own baseline, as that
file still is, under the suite's current policy, for the run as it still is; and a full run only
of the configuration that passed. Through the CLI against the fake server."""

from __future__ import annotations

import json
import re

import pytest

from harness.compare.promotion import load_promotion
from harness.config.loader import load_suite
from harness.testing.fake_server import FakeLLMServer, keyword_replier
from tests.compare.test_gate_cli import V1_OR_V2_REPLIES, flat, reports, run, use_generated_data

EXIT_PASS, EXIT_FAIL, EXIT_REFUSED, EXIT_BAD_INPUT = 0, 1, 1, 2
# 40 identical items clear a 20-point margin (the Wilson bound on unchanged items is 3.84/(n+3.84)).
GATE = {"primary": [{"metric": "accuracy", "margin": 0.2}]}


@pytest.fixture
def server():
    with FakeLLMServer(keyword_replier(V1_OR_V2_REPLIES)) as fake:
        yield fake


def _project_with_baseline(project, cli, server) -> tuple[dict, str]:
    """40 tickets, gate margin 0.2, a production baseline from a v1 run; returns the suite and that run."""
    suite = use_generated_data(project, server.base_url, 40, gate=GATE)
    base_run = run(cli, project.suite_path)
    assert cli("baseline", "set", str(project.suite_path), "--from", base_run).exit_code == 0
    return suite, base_run


def _gate(cli, project, run_id: str, *args: str):
    return cli("gate", run_id, "--reports-dir", reports(project), *args)


def _promote(cli, project, run_id: str, *args: str):
    return cli("promote", str(project.suite_path), "--run", run_id, *args)


def _promoted(project):
    return project.root / "baselines" / "demo" / "promoted.json"


def test_a_gate_against_another_run_does_not_promote(project, cli, server):
    _project_with_baseline(project, cli, server)
    worse = run(cli, project.suite_path, "--prompt-version", "v2")
    also_worse = run(cli, project.suite_path, "--prompt-version", "v2", "--new")
    assert _gate(cli, project, worse).exit_code == EXIT_FAIL  # against production it fails

    passed = _gate(cli, project, worse, "--baseline", also_worse)
    assert passed.exit_code == EXIT_PASS, passed.output  # v2 against v2: no difference
    record = json.loads((project.root / "reports" / "demo" / worse / "gate.json").read_text())
    baseline = record["baseline"]
    assert (baseline["kind"], baseline["name"], baseline["run_id"]) == ("run", None, also_worse)

    refused = _promote(cli, project, worse)
    assert refused.exit_code == EXIT_REFUSED, refused.output
    message = flat(refused.stderr)
    assert f"refused: run {worse} cannot be promoted" in message
    assert f"the gate was decided against run {also_worse}, not the suite's baseline 'production'" in message
    assert not _promoted(project).exists()


def test_a_baseline_changed_after_the_gate_does_not_promote(project, cli, server):
    _, base_run = _project_with_baseline(project, cli, server)
    candidate = run(cli, project.suite_path, "--new")
    assert _gate(cli, project, candidate).exit_code == EXIT_PASS
    # Someone sets production again (here from the candidate itself): the gate compared with another file.
    assert cli("baseline", "set", str(project.suite_path), "--from", candidate).exit_code == 0

    refused = _promote(cli, project, candidate)
    assert refused.exit_code == EXIT_REFUSED, refused.output
    message = flat(refused.stderr)
    assert "the suite's baseline 'production' changed since the gate" in message and "production.json" in message
    assert not _promoted(project).exists()

    assert _gate(cli, project, candidate).exit_code == EXIT_PASS  # decided again against the current file
    promoted = _promote(cli, project, candidate)
    assert promoted.exit_code == 0, promoted.output
    record = json.loads(_promoted(project).read_text())
    assert record["version"] == 2 and record["run_id"] == candidate
    assert record["baseline"]["kind"] == "baseline" and record["baseline"]["name"] == "production"
    assert record["baseline"]["run_id"] == candidate != base_run


def test_a_policy_changed_after_the_gate_does_not_promote(project, cli, server):
    suite, _ = _project_with_baseline(project, cli, server)
    candidate = run(cli, project.suite_path, "--new")
    assert _gate(cli, project, candidate).exit_code == EXIT_PASS
    suite["gate"] = {"primary": [{"metric": "accuracy", "margin": 0.25}]}
    project.write_suite(suite)

    refused = _promote(cli, project, candidate)
    assert refused.exit_code == EXIT_REFUSED, refused.output
    assert "the suite's gate policy changed since the gate" in flat(refused.stderr)
    assert not _promoted(project).exists()


def test_a_run_edited_after_the_gate_does_not_promote(project, cli, server):
    _project_with_baseline(project, cli, server)
    candidate = run(cli, project.suite_path, "--new")
    assert _gate(cli, project, candidate).exit_code == EXIT_PASS
    manifest_path = project.root / "reports" / "demo" / candidate / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["targets"][0]["model"] = "another-model"
    manifest_path.write_text(json.dumps(manifest))

    refused = _promote(cli, project, candidate)
    assert refused.exit_code == EXIT_REFUSED, refused.output
    assert "the run's manifest no longer matches the configuration the gate judged" in flat(refused.stderr)
    assert not _promoted(project).exists()


def test_a_failed_gate_does_not_promote_and_says_why(project, cli, server):
    _project_with_baseline(project, cli, server)
    worse = run(cli, project.suite_path, "--prompt-version", "v2")
    assert _gate(cli, project, worse).exit_code == EXIT_FAIL
    refused = _promote(cli, project, worse)
    assert refused.exit_code == EXIT_REFUSED
    message = flat(refused.stderr)
    assert "its gate is FAIL; only PASS or WARN may be promoted: FAIL: accuracy (slice all)" in message
    assert not _promoted(project).exists()


def test_full_run_of_an_edited_target_is_refused_before_sending(project, cli, server):
    suite, _ = _project_with_baseline(project, cli, server)
    candidate = run(cli, project.suite_path, "--new")
    assert _gate(cli, project, candidate).exit_code == EXIT_PASS
    suite["targets"][0]["model"] = "other-model"
    suite["targets"][0]["params"]["temperature"] = 1.5
    project.write_suite(suite)
    server.log.reset()
    runs_before = sorted(p.name for p in (project.root / "reports" / "demo").iterdir())

    refused = _promote(cli, project, candidate, "--full")
    assert refused.exit_code == EXIT_REFUSED, refused.output
    message = refused.stderr
    assert "the suite no longer matches the configuration that passed the gate" in message
    assert "targets[fake].model: promoted fake-model, suite now other-model" in message
    assert "targets[fake].params.temperature: promoted 0.0, suite now 1.5" in message
    assert server.log.total == 0  # nothing was sent
    assert sorted(p.name for p in (project.root / "reports" / "demo").iterdir()) == runs_before
    assert not _promoted(project).exists()


def test_full_run_of_an_edited_prompt_is_refused(project, cli, server):
    _project_with_baseline(project, cli, server)
    candidate = run(cli, project.suite_path, "--new")
    assert _gate(cli, project, candidate).exit_code == EXIT_PASS
    (project.root / "prompts" / "route" / "v1.j2").write_text("Ticket, reworded: {{ text }}\nTeam:")
    server.log.reset()

    refused = _promote(cli, project, candidate, "--full")
    assert refused.exit_code == EXIT_REFUSED, refused.output
    assert re.search(r"prompt\.fingerprint: promoted \w{12}, suite now \w{12}", refused.stderr)
    assert server.log.total == 0


def test_a_gate_record_of_an_unknown_version_is_bad_input(project, cli, server):
    _project_with_baseline(project, cli, server)
    candidate = run(cli, project.suite_path, "--new")
    assert _gate(cli, project, candidate).exit_code == EXIT_PASS
    gate_file = project.root / "reports" / "demo" / candidate / "gate.json"
    record = json.loads(gate_file.read_text())
    gate_file.write_text(json.dumps(record | {"version": 7}))
    result = _promote(cli, project, candidate)
    assert result.exit_code == EXIT_BAD_INPUT
    assert f"{gate_file}: not a gate record of version 1: version" in flat(result.stderr)

    # gate.json as the first gate wrote it (the raw comparison, no version) is not trusted either
    gate_file.write_text(json.dumps({"gate": {"verdict": "PASS", "reasons": []}}))
    result = _promote(cli, project, candidate)
    assert result.exit_code == EXIT_BAD_INPUT and "not a gate record of version 1" in result.stderr
    assert not _promoted(project).exists()


def test_a_version_1_promotion_is_still_read(project):
    folder = project.root / "baselines" / "demo"
    folder.mkdir(parents=True)
    target = {"label": "fake", "provider": "openai", "model": "fake-model", "base_url": None,
              "params": {"temperature": 0.0, "max_tokens": 5}}
    (folder / "promoted.json").write_text(json.dumps({
        "version": 1, "suite": "demo", "run_id": "r1", "prompt": "route", "prompt_version": "v1",
        "prompt_fingerprint": "ab" * 32, "targets": [target], "verdict": "WARN", "reasons": ["WARN: accuracy"],
        "promoted_at": "2026-01-01T00:00:00+00:00", "promoted_by": "someone"}))
    record = load_promotion(load_suite(project.suite_path))
    assert record.version == 2 and record.verdict == "WARN" and record.baseline is None
    assert record.targets[0].model == "fake-model" and record.targets[0].params["temperature"] == 0.0
