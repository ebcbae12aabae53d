"""Editing a record between an interrupt and the rerun makes different work: the rerun starts a
new run instead of mixing outputs of the old text with the new one, and resuming the old run by
its ID is refused."""

from __future__ import annotations

import json
import signal

import pytest

from harness.testing.fake_server import FakeLLMServer, keyword_replier
from tests.conftest import base_suite, write_records
from tests.runs.processes import ITEMS, many_tickets, start, wait_for_progress


@pytest.fixture
def slow_server():
    with FakeLLMServer(keyword_replier({}, default="billing"), latency_s=0.05) as server:
        yield server


def test_an_edited_record_is_new_work_and_the_old_run_cannot_be_resumed(project, cli, slow_server):
    many_tickets(project)
    project.write_suite(base_suite(slow_server.base_url))
    process = start("run", str(project.suite_path))
    old_run = wait_for_progress(project.root / "reports" / "demo", process, at_least=10)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130, out + err

    data = project.root / "suites" / "data" / "tickets.jsonl"
    records = [json.loads(line) for line in data.read_text().splitlines()]
    records[0]["text"] = "an edited ticket: I was billed twice"
    write_records(data, records)

    refused = cli("run", str(project.suite_path), "--resume", old_run.name)
    assert refused.exit_code == 2, refused.output
    assert "started with different requests" in refused.output

    slow_server.log.reset()
    rerun = cli("run", str(project.suite_path))
    assert rerun.exit_code == 0, rerun.output
    [new_run] = [p for p in project.run_dirs() if p != old_run]
    assert len(project.run_dirs()) == 2
    assert len(slow_server.log.attempts) == ITEMS  # the new run sends everything, none of the old outputs mixed in
    lines = [json.loads(line) for line in (new_run / "results.jsonl").read_text().splitlines()]
    assert any("an edited ticket" in (line["prompt"] or "") for line in lines)
    assert json.loads((old_run / "manifest.json").read_text())["status"] == "interrupted"
