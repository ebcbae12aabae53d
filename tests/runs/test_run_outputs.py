"""What a run leaves behind: manifest.json, results.jsonl and the run store, and no secrets."""

from __future__ import annotations

import json
import re

from harness.runs.manifest import Manifest
from harness.runs.results import ResultLine
from tests.conftest import base_suite


def test_manifest_and_results_describe_the_run(project, cli, fake_server):
    project.write_suite(base_suite(fake_server.base_url))
    result = cli("run", str(project.suite_path))
    assert result.exit_code == 0, result.output
    [run_dir] = project.run_dirs()
    manifest = Manifest.model_validate_json((run_dir / "manifest.json").read_text())
    assert manifest.status == "complete" and manifest.request_count == 6
    assert manifest.prompt.name == "route" and manifest.prompt.version == "v1" and len(manifest.prompt.fingerprint) == 64
    assert manifest.targets[0].model == "fake-model" and manifest.targets[0].params["max_tokens"] == 5
    assert manifest.dataset.item_count == 6 and manifest.dataset.evaluated == ["all"]
    assert manifest.started_at <= manifest.ended_at and manifest.harness_version
    lines = [ResultLine.model_validate_json(line) for line in (run_dir / "results.jsonl").read_text().splitlines()]
    assert {line.item_id for line in lines} == {f"a{n}" for n in range(1, 7)}
    assert all(line.state == "succeeded" and line.attempts == 1 for line in lines)
    assert "requests: 6 (succeeded 6)" in result.output and "wall time" in result.output


def test_a_finished_run_is_not_resent(project, cli, fake_server):
    project.write_suite(base_suite(fake_server.base_url))
    assert cli("run", str(project.suite_path)).exit_code == 0
    [run_dir] = project.run_dirs()
    assert cli("run", str(project.suite_path), "--resume", run_dir.name).exit_code == 0
    assert fake_server.log.total == 6  # the resumed complete run had nothing left to send
    assert cli("run", str(project.suite_path)).exit_code == 0  # a plain rerun of complete work starts anew
    assert len(project.run_dirs()) == 2


def test_epochs_multiply_requests_but_not_items(project, cli, fake_server):
    suite = base_suite(fake_server.base_url)
    suite["epochs"] = 3
    suite["targets"][0]["params"]["temperature"] = 0.7
    project.write_suite(suite)
    result = cli("run", str(project.suite_path))
    assert result.exit_code == 0, result.output
    [run_dir] = project.run_dirs()
    lines = [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()]
    assert len(lines) == 18 and len({line["request_id"] for line in lines}) == 18
    assert re.search(r"accuracy\s*│\s*6\s*│", result.output), result.output  # items, not samples


def test_api_keys_are_never_written(project, cli, fake_server, monkeypatch):
    secret = "sk-test-SECRET-0123456789abcdef"
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    project.write_suite(base_suite(fake_server.base_url))
    result = cli("run", str(project.suite_path))
    assert result.exit_code == 0
    assert secret not in result.output
    [run_dir] = project.run_dirs()
    for path in run_dir.iterdir():
        assert secret.encode() not in path.read_bytes(), f"key leaked into {path.name}"


def test_resume_of_changed_work_is_refused(project, cli, fake_server):
    project.write_suite(base_suite(fake_server.base_url))
    assert cli("run", str(project.suite_path)).exit_code == 0
    [run_dir] = project.run_dirs()
    (project.root / "prompts" / "route" / "v1.j2").write_text("Changed {{ text }}")
    result = cli("run", str(project.suite_path), "--resume", run_dir.name)
    assert result.exit_code == 2 and "different requests" in result.output
