"""SIGKILL a real `evalbatch run` in batch mode at each step of a submission, then resume: the
run re-attaches, the server counts exactly one batch creation (and one upload) per chunk, and
the results are complete and equal a realtime run's."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from harness.testing.fake_batch_lifecycle import BatchScript
from tests.engine.batch_proxy import HoldingProxy
from tests.engine.batch_support import (
    batch_suite,
    by_item,
    communicate_or_show,
    finish,
    kill,
    only_run,
    per_request,
    realtime_suite,
    results,
    start,
    store_rows,
    wait_until,
)


def _run_dir(reports: Path) -> Path | None:
    found = [p for p in (reports / "demo").glob("*/") if (p / "run.sqlite").exists()]
    return found[0] if found else None


def _chunks(reports: Path) -> list[tuple]:
    run_dir = _run_dir(reports)
    if run_dir is None:
        return []
    try:
        return store_rows(run_dir, "SELECT input_file_id, batch_id, status FROM provider_batches")
    except Exception:  # the table is not created yet
        return []


def _reference(project, cli, fake_server, provider: str = "openai") -> dict[str, tuple]:
    project.write_suite(realtime_suite(fake_server.base_url, provider))
    reports = project.root / f"realtime-{provider}"
    assert cli("run", str(project.suite_path), "--reports-dir", str(reports)).exit_code == 0
    return results(only_run(reports))


@pytest.fixture
def reference(project, cli, fake_server, monkeypatch) -> dict[str, tuple]:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
    return _reference(project, cli, fake_server)


@pytest.mark.parametrize(("provider", "hold"), [("openai", "before"), ("openai", "after"), ("anthropic", "before"),
                                               ("anthropic", "after")])
def test_killed_between_upload_and_recording_the_batch_creates_it_once(project, cli, fake_server, provider, hold,
                                                                         monkeypatch):
    """before: the create never reached the provider, so resuming creates the batch from the file
    already uploaded (no second upload); after: the provider made the batch but the process died
    before recording its ID, so resuming finds it by its input file instead of making another."""
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
    reference = _reference(project, cli, fake_server, provider)
    with HoldingProxy(fake_server.base_url) as proxy:
        proxy.hold = hold
        project.write_suite(batch_suite(proxy.base_url, provider))
        reports = project.root / "reports"
        process = start("run", str(project.suite_path))
        wait_until(process, proxy.held.is_set, "a held batch creation")
        [(file_id, batch_id, status)] = _chunks(reports)
        assert batch_id is None
        if provider == "openai":  # the input file's ID was committed before the create was sent
            assert file_id is not None and status == "uploaded"
        else:  # no file: the members were committed before the create was sent
            assert file_id is None and status == "planned"
        kill(process)
        assert fake_server.batches.log.creations[provider] == (1 if hold == "after" else 0)
        proxy.hold = None
        finish("run", str(project.suite_path))  # resumes the unfinished run of the same work
    run_dir = only_run(reports)
    assert by_item(results(run_dir)) == by_item(reference)
    assert fake_server.batches.log.creations[provider] == 1
    assert fake_server.batches.log.files_uploaded == (1 if provider == "openai" else 0)
    assert per_request(fake_server.batches.log.answered) == [1] * len(reference)


def test_killed_after_create_then_collected_from_another_process(project, cli, fake_server, reference):
    fake_server.batches.script = BatchScript(in_progress_polls=5)
    project.write_suite(batch_suite(fake_server.base_url))
    reports = project.root / "reports"
    process = start("run", str(project.suite_path))
    wait_until(process, lambda: any(batch_id for _, batch_id, _ in _chunks(reports)), "a recorded batch ID")
    kill(process)
    run_dir = _run_dir(reports)
    assert run_dir is not None
    # A new process that merely opens the run must not re-queue what sits in the live batch.
    assert {state for (state,) in store_rows(run_dir, "SELECT state FROM requests")} <= {"in_batch", "succeeded"}
    out = finish("collect", run_dir.name, "--suite", str(project.suite_path))
    assert "Collecting 1 provider batch" in out
    assert results(run_dir) == reference
    assert fake_server.batches.log.creations["openai"] == 1


def test_killed_while_polling_then_resumed(project, fake_server, reference):
    fake_server.batches.script = BatchScript(in_progress_polls=20)
    project.write_suite(batch_suite(fake_server.base_url))
    reports = project.root / "reports"
    process = start("run", str(project.suite_path))
    wait_until(process, lambda: any(status == "in_progress" for _, _, status in _chunks(reports)),
                "a batch in progress")
    kill(process)
    out = finish("run", str(project.suite_path))
    assert "Resuming" in out
    assert results(only_run(reports)) == reference
    assert fake_server.batches.log.creations["openai"] == 1
    assert fake_server.batches.log.files_uploaded == 1


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_while_polling_stops_cleanly_and_collect_finishes(project, fake_server, reference, stop_signal):
    fake_server.batches.script = BatchScript(in_progress_polls=10**6)  # never ends while the first process watches
    project.write_suite(batch_suite(fake_server.base_url, poll_s=0.05))
    reports = project.root / "reports"
    process = start("run", str(project.suite_path))
    wait_until(process, lambda: any(status == "in_progress" for _, _, status in _chunks(reports)),
                "a batch in progress")
    process.send_signal(stop_signal)
    out, err = communicate_or_show(process, timeout=60)
    assert process.returncode == 130, out + err
    assert "Traceback" not in err and "Resume with: evalbatch run" in err
    run_dir = only_run(reports)
    assert json.loads((run_dir / "manifest.json").read_text())["status"] == "interrupted"
    assert {state for (state,) in store_rows(run_dir, "SELECT state FROM requests")} == {"in_batch"}
    [batch] = fake_server.batches.batches()
    batch.script = BatchScript()  # the provider gets on with it meanwhile
    finish("collect", run_dir.name, "--suite", str(project.suite_path))
    assert results(run_dir) == reference
    assert fake_server.batches.log.creations["openai"] == 1
