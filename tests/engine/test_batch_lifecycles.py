"""A suite in batch mode through the real openai and anthropic clients against the fake
server's batch endpoints, for each scripted lifecycle: the store and the scores equal a
realtime run of the same suite on the same fake model wherever a line was answered, and the
lines a batch did not answer are left retryable."""

from __future__ import annotations

import pytest

from harness.testing.fake_batch_lifecycle import BatchScript
from tests.engine.batch_support import batch_suite, only_run, per_request, realtime_suite, results, states, store_rows


@pytest.fixture(params=["openai", "anthropic"])
def provider(request, monkeypatch) -> str:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
    return request.param


def _realtime(project, cli, server, provider) -> dict[str, tuple]:
    project.write_suite(realtime_suite(server.base_url, provider))
    reports = project.root / "realtime"
    result = cli("run", str(project.suite_path), "--reports-dir", str(reports))
    assert result.exit_code == 0, result.output
    return results(only_run(reports))


def _batch(project, cli, server, provider, *args: str, **batch):
    project.write_suite(batch_suite(server.base_url, provider, **batch))
    reports = project.root / "batch"
    result = cli("run", str(project.suite_path), "--reports-dir", str(reports), *args)
    return result, only_run(reports)


def test_a_completed_batch_equals_a_realtime_run(project, cli, fake_server, provider):
    reference = _realtime(project, cli, fake_server, provider)
    fake_server.batches.script = BatchScript(shuffle_seed=7)  # results out of order
    result, run_dir = _batch(project, cli, fake_server, provider)
    assert result.exit_code == 0, result.output
    assert results(run_dir) == reference
    assert fake_server.batches.log.creations[provider] == 1
    [(status, total, collected)] = store_rows(run_dir, "SELECT status, total, collected FROM provider_batches")
    assert (status, total, collected) == ("completed" if provider == "openai" else "ended", 6, 1)
    # Sent once each, and priced at the batch price (half the realtime price of the suite's pricing).
    assert per_request(fake_server.batches.log.submitted) == [1] * 6
    assert "requests 0/0" not in result.output and "collected batch" in result.output  # no empty realtime line


def test_an_expired_batch_keeps_its_answered_lines_and_leaves_the_rest_retryable(project, cli, fake_server, provider):
    reference = _realtime(project, cli, fake_server, provider)
    fake_server.batches.script = BatchScript(outcome="expired", done_lines=2)
    result, run_dir = _batch(project, cli, fake_server, provider)
    assert result.exit_code == 1, result.output
    got = results(run_dir)
    done = {rid for rid, line in got.items() if line[1] == "succeeded"}
    assert len(done) == 2 and all(got[rid] == reference[rid] for rid in done)
    assert sorted(states(run_dir).values()).count("failed_retryable") == 4
    # retry --failed sends only those, as a new batch, and the run then equals the realtime one.
    fake_server.batches.script = BatchScript()
    retried = cli("retry", run_dir.name, "--failed", "--reports-dir", str(run_dir.parent.parent))
    assert retried.exit_code == 0, retried.output
    assert results(run_dir) == reference
    assert fake_server.batches.log.creations[provider] == 2
    # The answered lines were never submitted again; every request was answered exactly once.
    assert per_request(fake_server.batches.log.submitted) == [1, 1, 2, 2, 2, 2]
    assert per_request(fake_server.batches.log.answered) == [1] * 6


def test_a_batch_that_fails_validation_leaves_every_request_retryable(project, cli, fake_server):
    fake_server.batches.script = BatchScript(outcome="failed")
    result, run_dir = _batch(project, cli, fake_server, "openai")
    assert result.exit_code == 1, result.output
    assert set(states(run_dir).values()) == {"failed_retryable"}
    [(error,)] = set(store_rows(run_dir, "SELECT error FROM requests"))
    assert "failed" in error and "no result" in error


def test_line_failures_from_the_error_file_are_classified_by_their_http_status(project, cli, fake_server, provider):
    reference = _realtime(project, cli, fake_server, provider)
    # "dark mode" (a3) is refused as a bad request (terminal); "crashes" (a2) meets a server error (retryable).
    fake_server.batches.script = BatchScript(line_errors={"dark mode": 400, "crashes": 500})
    result, run_dir = _batch(project, cli, fake_server, provider)
    assert result.exit_code == 1, result.output
    got = states(run_dir)
    by_item = dict(store_rows(run_dir, "SELECT item_id, request_id FROM requests"))
    assert got[by_item["a3"]] == "failed_terminal"
    assert got[by_item["a2"]] == "failed_retryable"
    statuses = dict(store_rows(run_dir, "SELECT request_id, status FROM attempts"))
    assert statuses[by_item["a3"]] == 400 and statuses[by_item["a2"]] == 500
    lines = results(run_dir)
    assert all(lines[rid] == reference[rid] for rid, state in got.items() if state == "succeeded")
