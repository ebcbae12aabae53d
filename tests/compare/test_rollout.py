"""Pre-rollout samples (stratified, group-sequential early stop), promotion and the validated
full run, through the CLI against the fake server."""

from __future__ import annotations

import json
import re
from collections import Counter

import pytest
from scipy import stats

from harness.testing.fake_server import FakeLLMServer
from tests.conftest import base_suite, write_records

LABELS = ["billing", "bug", "feature request", "account access", "cancellation"]
N = 300


def _records():
    return [{"id": f"s{n:03d}", "text": f"ticket {n} about {LABELS[n % 5]}", "label": LABELS[n % 5]} for n in range(N)]


def _echo_label(prompt: str) -> str:
    """Answers the team named in the ticket, except that the v2 prompt's wording makes it say 'bug'."""
    if "Route" in prompt:
        return "bug"
    return next(label for label in LABELS if label in prompt)


def _setup(project, server, **gate):
    write_records(project.root / "suites" / "data" / "tickets.jsonl", _records())
    (project.root / "prompts" / "route" / "v2.j2").write_text("Route: {{ text }}\nTeam:")
    suite = base_suite(server.base_url)
    suite["gate"] = {"primary": [{"metric": "accuracy", "margin": 0.02}], **gate}
    project.write_suite(suite)


def _run_id(output: str) -> str:
    return re.search(r"run (\S+): (complete|stopped_early|incomplete)", output).group(1)


def test_sequential_sample_stops_early_on_a_clear_failure(project, cli):
    with FakeLLMServer(_echo_label) as server:
        _setup(project, server, sample={"stratify_by": "label", "sequential": True, "looks": 3, "seed": 1})
        baseline = _run_id(cli("run", str(project.suite_path)).output)
        assert cli("baseline", "set", str(project.suite_path), "--from", baseline).exit_code == 0
        server.log.reset()
        result = cli("run", str(project.suite_path), "--sample", "150", "--prompt-version", "v2")
    assert result.exit_code == 0, result.output
    assert "look 1/3 at 50 items: FAILURE" in result.output
    # The bound the statistic crossed is the failure bound, printed with its sign.
    assert re.search(r"accuracy z=-\d+\.\d\d <= failure bound -3\.710", result.output), result.output
    assert server.log.total == 50  # two thirds of the sample were never sent
    run_id = _run_id(result.output)
    manifest = json.loads((project.root / "reports" / "demo" / run_id / "manifest.json").read_text())
    assert manifest["status"] == "stopped_early" and manifest["dataset"]["sample"] == 150
    assert manifest["looks"][0]["decision"] == "FAILURE" and manifest["looks"][0]["metrics"][0]["z"] < -3.71
    gate = cli("gate", run_id, "--reports-dir", str(project.root / "reports"))
    assert gate.exit_code == 1 and "stopped early at look 1/3" in gate.output


def test_sample_is_stratified_and_a_passing_sample_runs_every_look(project, cli):
    with FakeLLMServer(_echo_label) as server:
        _setup(project, server, sample={"stratify_by": "label", "sequential": True, "looks": 3, "seed": 1})
        baseline = _run_id(cli("run", str(project.suite_path)).output)
        cli("baseline", "set", str(project.suite_path), "--from", baseline)
        result = cli("run", str(project.suite_path), "--sample", "100")
    assert result.exit_code == 0, result.output
    run_dir = project.root / "reports" / "demo" / _run_id(result.output)
    lines = [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()]
    assert Counter(line["fields"]["label"] for line in lines) == {label: 20 for label in LABELS}
    looks = json.loads((run_dir / "manifest.json").read_text())["looks"]
    assert [look["decision"] for look in looks] == ["CONTINUE", "CONTINUE", "FINAL"]
    assert "between the bounds -3.710 and 3.710" in result.output

    # The last look is judged at the design's final bound (1.993 for three looks), not 1.96.
    gate = cli("gate", str(run_dir))
    record = json.loads((run_dir / "gate.json").read_text())
    assert gate.exit_code in (0, 3), gate.output
    assert any("final O'Brien-Fleming bound z = 1.993" in note for note in record["notes"]), record["notes"]
    metric = record["metrics"][0]
    assert metric["ci_method"] == "Tango score"
    assert metric["ci_level"] == pytest.approx(1 - 2 * stats.norm.sf(1.993), abs=1e-3)
    assert "final O'Brien-Fleming bound z = 1.993" in " ".join(gate.output.split())


def test_promotion_needs_a_passing_gate_and_full_run_sorts_outputs(project, cli):
    def flaky_format(prompt: str) -> str:
        # Every seventh ticket gets an answer that is no team at all: it must go to review.
        number = int(re.search(r"ticket (\d+)", prompt).group(1))
        return "no idea" if number % 7 == 0 else _echo_label(prompt)

    with FakeLLMServer(flaky_format) as server:
        _setup(project, server)
        baseline = _run_id(cli("run", str(project.suite_path)).output)
        cli("baseline", "set", str(project.suite_path), "--from", baseline)
        not_gated = cli("promote", str(project.suite_path), "--run", baseline)
        assert not_gated.exit_code == 1 and "no gate verdict" in not_gated.output
        candidate = _run_id(cli("run", str(project.suite_path), "--new").output)
        assert cli("gate", candidate, "--reports-dir", str(project.root / "reports")).exit_code == 0
        server.log.reset()
        result = cli("promote", str(project.suite_path), "--run", candidate, "--full")
    assert result.exit_code == 0, result.output
    assert server.log.total == N
    promoted = json.loads((project.root / "baselines" / "demo" / "promoted.json").read_text())
    assert promoted["run_id"] == candidate and promoted["verdict"] == "PASS"
    full_dir = project.root / "reports" / "demo" / re.search(r"full run (\S+):", result.output).group(1)
    valid = (full_dir / "validated.jsonl").read_text().splitlines()
    review = [json.loads(line) for line in (full_dir / "needs_review.jsonl").read_text().splitlines()]
    assert len(review) == len([n for n in range(N) if n % 7 == 0]) and len(valid) + len(review) == N
    assert all(line["output"] == "no idea" for line in review)


def test_unknown_validator_is_bad_input(project, cli):
    suite = base_suite()
    suite["gate"] = {"validators": ["acuracy"]}
    project.write_suite(suite)
    result = cli("validate", str(project.suite_path))
    assert result.exit_code == 2 and "gate.validators.0" in result.output and "unknown validator 'acuracy'" in result.output
