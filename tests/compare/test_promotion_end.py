"""Promotion to the end, through the CLI against the fake server: a second `promote` records
nothing new, the full run prints its scores, `runs` shows what each run became, and
`baseline show` says when the baseline predates the promotion and how to update it."""

from __future__ import annotations

import json
import re

import pytest

from harness.testing.fake_server import FakeLLMServer, keyword_replier
from tests.compare.test_gate_cli import V1_OR_V2_REPLIES, flat, reports, run, use_generated_data
from tests.compare.test_rollout import _echo_label, _run_id, _setup

GATE = {"primary": [{"metric": "accuracy", "margin": 0.2}]}


@pytest.fixture
def server():
    with FakeLLMServer(keyword_replier(V1_OR_V2_REPLIES)) as fake:
        yield fake


def _promotions(project) -> list[dict]:
    log = project.root / "baselines" / "demo" / "promotions.jsonl"
    return [json.loads(line) for line in log.read_text().splitlines()]


def _listed(cli, project) -> dict[str, dict]:
    result = cli("runs", str(project.suite_path), "--json")
    assert result.exit_code == 0, result.output
    return {entry["run_id"]: entry for entry in json.loads(result.output)["runs"]}


def test_promotion_to_the_end(project, cli, server):
    suite_arg = str(project.suite_path)
    use_generated_data(project, server.base_url, 40, gate=GATE)
    base_run = run(cli, project.suite_path)
    assert cli("baseline", "set", suite_arg, "--from", base_run).exit_code == 0
    candidate = run(cli, project.suite_path, "--new")
    assert cli("gate", candidate, "--reports-dir", reports(project)).exit_code == 0

    first = cli("promote", suite_arg, "--run", candidate)
    assert first.exit_code == 0, first.output
    assert f"evalbatch promote {suite_arg} --run {candidate} --full" in flat(first.output)
    promoted_at = _promotions(project)[0]["promoted_at"]

    again = cli("promote", suite_arg, "--run", candidate)
    assert again.exit_code == 0, again.output
    assert f"run {candidate} already promoted at {promoted_at}" in flat(again.output)
    assert len(_promotions(project)) == 1  # no second record

    show = flat(cli("baseline", "show", suite_arg).output)
    assert "still the pre-promotion baseline" in show
    assert f"evalbatch baseline set {suite_arg} --from {candidate}" in show

    server.log.reset()
    full = cli("promote", suite_arg, "--run", candidate, "--full")
    assert full.exit_code == 0, full.output
    assert server.log.total == 40 and len(_promotions(project)) == 1
    output = flat(full.output)
    full_run = re.search(r"full run (\S+): (\d+) validated, (\d+) need review", output)
    assert full_run and int(full_run.group(2)) + int(full_run.group(3)) == 40
    full_id = full_run.group(1)
    assert "Scores (mean over items, 95% CI)" in output and "requests: 40 (succeeded 40)" in output
    assert f"Make it the baseline with: evalbatch baseline set {suite_arg} --from {full_id}" in output

    show = flat(cli("baseline", "show", suite_arg).output)
    assert f"still the pre-promotion baseline: run {candidate} (route@v1) was promoted at {promoted_at}" in show
    assert f"evalbatch baseline set {suite_arg} --from {full_id}" in show  # the full run, once there is one

    listed = _listed(cli, project)
    assert listed[base_run]["marks"] == ["baseline production"]
    assert listed[candidate]["marks"] == ["promoted"]
    assert listed[full_id]["marks"] == ["full run"]
    assert listed[candidate]["metric"] == "accuracy"
    assert listed[candidate]["metric_means"] == {"fake": pytest.approx(0.9)}  # every tenth ticket misrouted
    assert listed[full_id]["planned"] == listed[full_id]["sent"] == 40
    text = cli("runs", suite_arg).output
    line = next(line for line in text.splitlines() if line.split()[:1] == [candidate])
    assert "accuracy 0.900" in line and "[promoted]" in line and "40 requests" in line

    assert cli("baseline", "set", suite_arg, "--from", full_id).exit_code == 0
    show = flat(cli("baseline", "show", suite_arg).output)
    assert "still the pre-promotion baseline" not in show and "up to date with the latest promotion" in show
    assert _listed(cli, project)[full_id]["marks"] == ["baseline production", "full run"]

    # The baseline file changed, so the gate no longer holds; the promotion stands all the same.
    repeat = cli("promote", suite_arg, "--run", candidate)
    assert repeat.exit_code == 0, repeat.output
    assert "already promoted" in repeat.output and len(_promotions(project)) == 1


def test_runs_counts_the_requests_a_stopped_sample_sent(project, cli):
    with FakeLLMServer(_echo_label) as server:
        _setup(project, server, sample={"stratify_by": "label", "sequential": True, "looks": 3, "seed": 1})
        baseline = _run_id(cli("run", str(project.suite_path)).output)
        assert cli("baseline", "set", str(project.suite_path), "--from", baseline).exit_code == 0
        sample = _run_id(cli("run", str(project.suite_path), "--sample", "150", "--prompt-version", "v2").output)
    result = cli("runs", str(project.suite_path))
    assert result.exit_code == 0, result.output
    line = next(line for line in result.output.splitlines() if line.split()[:1] == [sample])
    assert "stopped_early" in line and "150 planned, 50 sent" in line, line
    listed = _listed(cli, project)[sample]
    assert (listed["planned"], listed["sent"], listed["status"]) == (150, 50, "stopped_early")
    assert listed["metric_means"]["fake"] == pytest.approx(0.2)  # v2 answers "bug": right for one team in five
