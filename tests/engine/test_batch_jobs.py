"""Batch mode's job control and scale: split over (lowered) per-batch limits and reassembled,
`evalbatch cancel` part-way (with a process watching, and with none), `status` listing the
provider batches, and `promote --full --mode batch` against the fake server."""

from __future__ import annotations

import json
import time

import pytest

from harness.testing.fake_batch_lifecycle import BatchLimits, BatchScript
from harness.testing.fake_server import FakeLLMServer
from tests.conftest import base_suite, write_records
from tests.engine.batch_support import (
    batch_suite,
    only_run,
    per_request,
    realtime_suite,
    results,
    start,
    states,
    store_rows,
)


@pytest.fixture
def reference(project, cli, fake_server) -> dict[str, tuple]:
    project.write_suite(realtime_suite(fake_server.base_url))
    reports = project.root / "realtime"
    assert cli("run", str(project.suite_path), "--reports-dir", str(reports)).exit_code == 0
    return results(only_run(reports))


@pytest.mark.parametrize(("limit", "sizes"), [({"max_requests": 2}, [2, 2, 2]), ({"max_bytes": 500}, [2, 2, 2])])
def test_a_job_over_the_per_batch_limits_is_split_and_reassembled(project, cli, fake_server, reference, limit,
                                                                  sizes):
    # The server refuses more lines per file than that: an unsplit job would fail validation.
    fake_server.batches.limits = BatchLimits(openai_requests=max(sizes))
    project.write_suite(batch_suite(fake_server.base_url, **limit))
    result = cli("run", str(project.suite_path))
    assert result.exit_code == 0, result.output
    run_dir = only_run(project.root / "reports")
    assert results(run_dir) == reference
    chunks = store_rows(run_dir, "SELECT total FROM provider_batches ORDER BY chunk")
    assert [total for (total,) in chunks] == sizes
    assert fake_server.batches.log.creations["openai"] == len(sizes)
    # Every request in exactly one batch.
    members = store_rows(run_dir, "SELECT request_id, COUNT(*) FROM batch_members GROUP BY request_id")
    assert len(members) == 6 and {count for _, count in members} == {1}


def _wait_for_batch(project, process, status: str):
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        found = [p for p in (project.root / "reports" / "demo").glob("*/") if (p / "run.sqlite").exists()]
        if found:
            try:
                rows = store_rows(found[0], "SELECT status FROM provider_batches")
            except Exception:  # the tables are not there yet
                rows = []
            if any(row[0] == status for row in rows):
                return found[0]
        time.sleep(0.02)
    raise AssertionError(f"no batch reached {status}")


@pytest.mark.parametrize("watched", [True, False])
def test_cancel_part_way_records_what_completed_and_retry_sends_the_rest(project, cli, fake_server, reference,
                                                                         watched):
    fake_server.batches.script = BatchScript(in_progress_polls=10**6, done_lines=2)  # runs until cancelled
    project.write_suite(batch_suite(fake_server.base_url, poll_s=0.05))
    process = start("run", str(project.suite_path))
    run_dir = _wait_for_batch(project, process, "in_progress")
    if not watched:  # the process is gone: cancel itself collects what the batch completed
        process.kill()
        process.wait(timeout=10)
    cancelled = cli("cancel", run_dir.name, "--reports-dir", str(project.root / "reports"))
    assert cancelled.exit_code == 0, cancelled.output
    assert "cancel requested at the provider: batch batch_" in cancelled.output
    if watched:  # the running process sees the batch cancelled, collects it and stops
        out, err = process.communicate(timeout=60)
        assert process.returncode == 1, out + err
    assert json.loads((run_dir / "manifest.json").read_text())["status"] == "cancelled"
    got = states(run_dir)
    assert sorted(got.values()) == ["failed_retryable"] * 4 + ["succeeded"] * 2
    assert all(results(run_dir)[rid] == reference[rid] for rid, state in got.items() if state == "succeeded")
    errors = {error for (error,) in store_rows(run_dir, "SELECT error FROM requests WHERE state = 'failed_retryable'")}
    assert len(errors) == 1 and errors.pop().startswith("batch_cancelled: ")
    [(status, collected)] = store_rows(run_dir, "SELECT status, collected FROM provider_batches")
    assert (status, collected) == ("cancelled", 1)

    fake_server.batches.script = BatchScript()
    retried = cli("retry", run_dir.name, "--failed", "--reports-dir", str(project.root / "reports"))
    assert retried.exit_code == 0, retried.output
    assert results(run_dir) == reference
    assert per_request(fake_server.batches.log.answered) == [1] * 6


def test_status_lists_each_provider_batch_and_retry_can_go_realtime(project, cli, fake_server, reference):
    fake_server.batches.script = BatchScript(outcome="expired", done_lines=3)
    project.write_suite(batch_suite(fake_server.base_url))
    assert cli("run", str(project.suite_path)).exit_code == 1
    run_dir = only_run(project.root / "reports")
    shown = cli("status", run_dir.name, "--reports-dir", str(project.root / "reports"))
    assert shown.exit_code == 0, shown.output
    [line] = [line for line in shown.output.splitlines() if line.startswith("batch ")]
    assert "(openai, target fake): expired, 3/6 done, 3 failed, age " in line and "collected" in line
    assert "at the batch price" in shown.output
    as_json = json.loads(cli("status", run_dir.name, "--reports-dir", str(project.root / "reports"),
                             "--json").output)
    assert [b["status"] for b in as_json["batches"]] == ["expired"]

    answered_realtime = sum(fake_server.log.successes.values())
    retried = cli("retry", run_dir.name, "--failed", "--mode", "realtime", "--reports-dir",
                  str(project.root / "reports"))
    assert retried.exit_code == 0, retried.output
    assert results(run_dir) == reference
    assert fake_server.batches.log.creations["openai"] == 1  # no new batch: the 3 went realtime
    assert sum(fake_server.log.successes.values()) - answered_realtime == 3


LABELS = ["billing", "bug", "feature request", "account access", "cancellation"]


def _echo_label(prompt: str) -> str:
    return next((label for label in LABELS if label in prompt), "no idea")


def test_promote_full_in_batch_mode(project, cli):
    """The README's example: a gated candidate promoted with its full run sent as a provider batch."""
    records = [{"id": f"s{n:03d}", "text": f"ticket {n} about {LABELS[n % 5]}", "label": LABELS[n % 5]}
               for n in range(300)]
    write_records(project.root / "suites" / "data" / "tickets.jsonl", records)
    with FakeLLMServer(_echo_label) as server:
        _promote_in_batch_mode(project, cli, server)


def _promote_in_batch_mode(project, cli, fake_server) -> None:
    suite = base_suite(fake_server.base_url)
    suite["gate"] = {"primary": [{"metric": "accuracy", "margin": 0.02}]}
    project.write_suite(suite)
    assert cli("run", str(project.suite_path)).exit_code == 0
    [baseline] = project.run_dirs()
    assert cli("baseline", "set", str(project.suite_path), "--from", baseline.name).exit_code == 0
    suite["engine"]["batch"] = {"poll_s": 0.01}
    project.write_suite(suite)
    assert cli("run", str(project.suite_path), "--new").exit_code == 0
    candidate = project.run_dirs()[-1]
    assert cli("gate", candidate.name, "--reports-dir", str(project.root / "reports")).exit_code == 0

    promoted = cli("promote", str(project.suite_path), "--run", candidate.name, "--full", "--mode", "batch")
    assert promoted.exit_code == 0, promoted.output
    assert "submitted batch batch_" in promoted.output and "collected batch" in promoted.output
    [full] = [p for p in project.run_dirs() if p not in (baseline, candidate)]
    manifest = json.loads((full / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["options"]["mode"] == "batch"
    assert manifest["options"]["full_promotion"] is True
    assert fake_server.batches.log.creations["openai"] == 1
    assert results(full) == results(candidate)
    assert (full / "validated.jsonl").exists()
