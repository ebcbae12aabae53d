"""A target whose endpoint is wrong (closed port, wrong path, bad key) stops within seconds with
one clear error naming the URL, instead of trying every request; the run stays resumable."""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from harness.engine.breaker import CircuitBreaker
from harness.engine.providers.base import ProviderError
from harness.engine.store import RunStore
from harness.testing.fake_server import FakeLLMServer, FaultRule, keyword_replier
from tests.conftest import base_suite, write_records

ITEMS = 300


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed again when the block ends: nothing listens there


def _many_items(project) -> None:
    write_records(project.root / "suites" / "data" / "tickets.jsonl",
                  [{"id": f"t{i}", "text": f"ticket {i}", "label": "bug"} for i in range(ITEMS)])


def _suite(project, base_url: str, **engine) -> None:
    suite = base_suite()
    suite["targets"][0]["base_url"] = base_url
    suite["engine"].update({"concurrency": 8, "max_retries": 4, "breaker_failures": 10, **engine})
    project.write_suite(suite)


def _store(project) -> RunStore:
    [run_dir] = project.run_dirs()
    return RunStore.read_only(run_dir / "run.sqlite")


def test_a_closed_port_stops_the_target_naming_the_url(project, cli):
    _many_items(project)
    url = f"http://127.0.0.1:{_closed_port()}/v1"
    _suite(project, url)
    result = cli("run", str(project.suite_path))
    assert result.exit_code == 1
    assert "Target fake was stopped early" in result.output and url in result.output
    assert "Connect call failed" in result.output or "refused" in result.output.lower()
    store = _store(project)
    attempts = store.db.execute("SELECT COUNT(*) FROM attempts").fetchone()[0]
    assert attempts < 60  # not ITEMS x 5
    counts = store.state_counts()
    assert counts["succeeded"] == 0 and counts["queued"] + counts["failed_retryable"] >= ITEMS - 20
    errors = {row[0] for row in store.db.execute("SELECT error FROM attempts WHERE error IS NOT NULL")}
    assert all(f"POST {url}/chat/completions" in error for error in errors)


def test_the_stopped_run_resumes_once_the_endpoint_works(project, cli):
    _many_items(project)
    with FakeLLMServer(keyword_replier({}, default="bug")) as server:
        _suite(project, f"http://127.0.0.1:{_closed_port()}/v1")
        assert cli("run", str(project.suite_path)).exit_code == 1
        suite = base_suite(server.base_url)
        suite["engine"].update({"concurrency": 8, "max_retries": 4, "breaker_failures": 10})
        project.write_suite(suite)
        # The target's URL is part of each request's identity, so fixing it makes new work: the
        # old run stays as it was, and the new one completes.
        result = cli("run", str(project.suite_path))
        assert result.exit_code == 0, result.output
        assert server.log.total == ITEMS


class _EmptyNotFound(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 - the http.server interface
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(404)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def empty_404_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _EmptyNotFound)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_an_empty_404_says_what_and_where(project, cli, empty_404_server):
    _many_items(project)
    _suite(project, empty_404_server)  # the /v1 is missing, as users often forget
    result = cli("run", str(project.suite_path))
    assert result.exit_code == 1
    assert "HTTP 404: Not Found with an empty reply from POST " + empty_404_server + "/chat/completions" in result.output
    assert "end in /v1" in result.output
    assert _store(project).db.execute("SELECT COUNT(*) FROM attempts").fetchone()[0] < 60


def test_a_bad_key_for_every_request_stops_the_target(project, cli):
    _many_items(project)
    body = {"error": {"message": "Incorrect API key provided", "type": "invalid_request_error",
                      "code": "invalid_api_key"}}
    with FakeLLMServer(faults=[FaultRule(status=401, times=99, error_body=body)]) as server:
        _suite(project, server.base_url + "/v1")
        result = cli("run", str(project.suite_path))
        assert result.exit_code == 1
        assert "Incorrect API key provided" in result.output and "stopped early" in result.output
        assert server.log.total < 60


def test_rate_limits_and_request_specific_errors_do_not_trip_it():
    breaker = CircuitBreaker(3)
    for _ in range(10):
        breaker.failed(ProviderError("slow down", kind="transient", status=429))
        breaker.failed(ProviderError("prompt is too long", kind="terminal", status=400))
    assert not breaker.open
    for _ in range(2):
        breaker.failed(ProviderError("boom", kind="transient", status=502))
    breaker.succeeded()
    breaker.failed(ProviderError("boom", kind="transient", status=502))
    assert not breaker.open  # a success in between resets the count
    breaker.failed(ProviderError("insufficient_quota", kind="terminal", status=429))
    breaker.failed(ProviderError("down", kind="transient"))
    assert breaker.open and "3 consecutive" in breaker.reason


def test_errors_are_json_readable_in_results(project, cli):
    """The stopped run's results.jsonl still lists every item (queued ones without output)."""
    _many_items(project)
    _suite(project, f"http://127.0.0.1:{_closed_port()}/v1")
    cli("run", str(project.suite_path))
    [run_dir] = project.run_dirs()
    lines = [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()]
    assert len(lines) == ITEMS
