"""The real openai and anthropic clients against the fake server on 127.0.0.1, through the engine:
retries on 429/5xx/529/timeouts/malformed bodies, none on 4xx, Retry-After honoured."""

from __future__ import annotations

import json
import sqlite3

import pytest

from harness.testing.fake_server import FakeLLMServer, FaultRule, keyword_replier
from tests.conftest import TICKET_REPLIES, base_suite


def _results(project) -> dict[str, dict]:
    [run_dir] = project.run_dirs()
    lines = [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()]
    return {line["item_id"]: line for line in lines}


@pytest.fixture(params=["openai", "anthropic"])
def provider(request, monkeypatch):
    if request.param == "anthropic":
        monkeypatch.setenv("ANTHROPIC_API_KEY", "fake-anthropic-key-for-tests")
    return request.param


def _run_against(project, cli, provider, *faults: FaultRule, **engine):
    """Runs the demo suite against a fake server with these faults; returns the CLI result and the server."""
    server = FakeLLMServer(keyword_replier(TICKET_REPLIES), list(faults)).start()
    try:
        suite = base_suite(server.base_url, provider)
        suite["engine"].update(engine)
        project.write_suite(suite)
        return cli("run", str(project.suite_path)), server
    finally:
        server.stop()


def test_clean_run_scores_every_item(project, cli, provider):
    result, server = _run_against(project, cli, provider)
    assert result.exit_code == 0, result.output
    results = _results(project)
    assert {r["state"] for r in results.values()} == {"succeeded"}
    assert results["a1"]["output"] == "billing"
    assert results["a1"]["scores"]["accuracy"]["value"] == 1.0
    assert results["a6"]["scores"]["accuracy"]["value"] == 0.0  # the server answers "bug"
    assert results["a1"]["input_tokens"] > 0
    assert "accuracy" in result.output and "0.833" in result.output
    assert server.log.total == 6


@pytest.mark.parametrize("status", [429, 500, 503, 529])
def test_transient_statuses_are_retried(project, cli, provider, status):
    result, server = _run_against(project, cli, provider,
                                  FaultRule(status=status, times=2, match="billed", retry_after=0.05))
    assert result.exit_code == 0, result.output
    item = _results(project)["a1"]
    assert item["state"] == "succeeded" and item["attempts"] == 3
    assert sum(server.log.attempts.values()) == 8  # 5 clean items + 3 attempts for a1


def test_retry_after_is_honoured(project, cli, provider):
    result, _ = _run_against(project, cli, provider, FaultRule(status=429, times=1, match="billed", retry_after=1.0))
    assert result.exit_code == 0, result.output
    assert _results(project)["a1"]["attempts"] == 2
    [run_dir] = project.run_dirs()
    db = sqlite3.connect(run_dir / "run.sqlite")
    rows = db.execute("SELECT a.attempt, a.started_at, a.ended_at, a.status FROM attempts a "
                      "JOIN requests r USING (request_id) WHERE r.item_id = 'a1' ORDER BY a.attempt").fetchall()
    db.close()
    (_, _, first_end, status), (_, second_start, _, _) = rows
    # backoff_max_s is 0.05 in the suite: only the server's Retry-After explains the recorded gap.
    assert status == 429 and second_start - first_end >= 1.0


@pytest.mark.parametrize("status", [400, 401, 403, 404])
def test_client_errors_are_terminal(project, cli, provider, status):
    result, _ = _run_against(project, cli, provider, FaultRule(status=status, times=99, match="billed"))
    assert result.exit_code == 1, result.output
    item = _results(project)["a1"]
    assert item["state"] == "failed_terminal" and item["attempts"] == 1
    assert f"HTTP {status}" in item["error"]
    if status in (401, 403, 404):  # fix the key, model or base_url, then the same requests may succeed
        assert "check the API key" in result.output and "--retry-failed" in result.output
    else:  # re-sending the same request fails the same way
        assert "a retry will not fix" in result.output and "--retry-failed" not in result.output


def test_context_length_and_quota_errors_are_not_retried(project, cli, provider):
    _run_against(
        project, cli, provider,
        FaultRule(status=400, times=99, match="billed",
                  error_body={"error": {"message": "maximum context length exceeded", "code": "context_length_exceeded"}}),
        FaultRule(status=429, times=99, match="crashes",
                  error_body={"error": {"message": "You exceeded your quota", "code": "insufficient_quota"}}))
    results = _results(project)
    assert results["a1"]["state"] == results["a2"]["state"] == "failed_terminal"
    assert results["a1"]["attempts"] == results["a2"]["attempts"] == 1


def test_retries_stop_at_the_cap(project, cli, provider):
    result, server = _run_against(project, cli, provider, FaultRule(status=503, times=99, match="billed"))
    assert result.exit_code == 1
    item = _results(project)["a1"]
    assert item["state"] == "failed_terminal" and item["attempts"] == 3  # 1 + max_retries 2
    assert server.log.attempts and max(server.log.attempts.values()) == 3


def test_slow_reply_times_out_and_is_retried(project, cli, provider):
    result, _ = _run_against(project, cli, provider, FaultRule(delay_s=3.0, times=1, match="billed"), timeout_s=0.5)
    assert result.exit_code == 0, result.output
    item = _results(project)["a1"]
    assert item["state"] == "succeeded" and item["attempts"] == 2


def test_malformed_body_is_retried(project, cli, provider):
    result, _ = _run_against(project, cli, provider, FaultRule(malformed=True, times=1, match="billed"))
    assert result.exit_code == 0, result.output
    assert _results(project)["a1"]["attempts"] == 2


def test_connection_refused_is_transient_then_terminal(project, cli, provider):
    project.write_suite(base_suite("http://127.0.0.1:9", provider))  # nothing listens on port 9
    result = cli("run", str(project.suite_path))
    assert result.exit_code == 1
    item = _results(project)["a1"]
    assert item["state"] == "failed_terminal" and item["attempts"] == 3
    assert "connection error" in item["error"]
