"""What a run leaves behind: manifest.json, results.jsonl and the run store, and no secrets."""

from __future__ import annotations

import json
import re

from harness.runs.manifest import Manifest
from harness.runs.results import ResultLine
from tests.conftest import TICKETS, base_suite, write_records


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


def test_results_carry_what_was_sent_and_every_field_whole(project, cli, fake_server):
    long_text = "I was billed twice this month. " + "The second charge is still pending on my card. " * 4
    records = [dict(t) for t in TICKETS]
    records[0] |= {"text": long_text, "priority": 3, "meta": {"channel": "email", "tags": ["vip"]}, "urgent": True}
    write_records(project.root / "suites" / "data" / "tickets.jsonl", records)
    project.write_suite(base_suite(fake_server.base_url))
    assert cli("run", str(project.suite_path)).exit_code == 0
    [run_dir] = project.run_dirs()
    lines = {line["item_id"]: line for line in map(json.loads, (run_dir / "results.jsonl").read_text().splitlines())}
    first = lines["a1"]
    assert first["item"] == records[0]  # whole, with numbers, booleans and objects as JSON values
    assert first["prompt"] == f"Ticket: {long_text}\nTeam:" and first["messages"] is None
    assert lines["a2"]["prompt"] == "Ticket: The export button crashes the app\nTeam:"
    assert ResultLine.model_validate(first).item["meta"]["tags"] == ["vip"]


def test_results_of_a_chat_prompt_carry_its_messages(project, cli, fake_server):
    (project.root / "prompts" / "route" / "v2.chat.yaml").write_text(
        "- {role: system, content: 'Route the ticket to a team.'}\n- {role: user, content: '{{ text }}'}\n")
    project.write_suite(base_suite(fake_server.base_url))
    assert cli("run", str(project.suite_path), "--prompt-version", "v2").exit_code == 0
    [run_dir] = project.run_dirs()
    line = next(json.loads(raw) for raw in (run_dir / "results.jsonl").read_text().splitlines()
                if json.loads(raw)["item_id"] == "a3")
    assert line["prompt"] is None
    assert line["messages"] == [{"role": "system", "content": "Route the ticket to a team."},
                                {"role": "user", "content": "Please add dark mode"}]


def test_result_lines_written_before_the_prompt_was_kept_still_read():
    old = {"version": 1, "request_id": "r1", "item_id": "a1", "target": "fake", "sample_index": 0, "slices": ["all"],
           "cluster": None, "fields": {"label": "billing"}, "state": "succeeded", "attempts": 1, "output": "billing",
           "scores": {}, "input_tokens": 3, "output_tokens": 1, "latency_ms": 2.0, "error": None}
    line = ResultLine.model_validate(old)
    assert line.item == {} and line.prompt is None and line.messages is None
