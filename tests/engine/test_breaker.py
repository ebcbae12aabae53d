"""A target whose endpoint is wrong (closed port, wrong path, bad key) stops within seconds with
one clear error naming the URL, instead of trying every request; the run stays resumable."""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from harness.engine.breaker import MIN_SPAN_S, NO_SUCCESS_S, CircuitBreaker
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


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_rate_limits_and_request_specific_errors_do_not_trip_it():
    breaker = CircuitBreaker(3, clock=Clock())
    for _ in range(10):
        breaker.failed(ProviderError("slow down", kind="transient", status=429))
        breaker.failed(ProviderError("prompt is too long", kind="terminal", status=400))
    assert not breaker.open


def test_a_bad_key_or_spent_quota_trips_at_once():
    for error in (ProviderError("bad key", kind="terminal", status=401),
                  ProviderError("insufficient_quota", kind="terminal", status=429)):
        breaker = CircuitBreaker(3, clock=Clock())
        pauses = [breaker.failed(error) for _ in range(3)]
        assert pauses == [0.0, 0.0, 0.0] and breaker.open and "3 consecutive" in breaker.reason


def test_a_blip_pauses_the_lane_and_a_success_after_it_resets():
    clock = Clock()
    breaker = CircuitBreaker(3, clock=clock)
    down = ProviderError("bad gateway", kind="transient", status=502)
    assert [breaker.failed(down) for _ in range(2)] == [0.0, 0.0]
    clock.now = 0.5
    assert breaker.failed(down) == pytest.approx(MIN_SPAN_S - 0.5)  # pause, then try again
    assert not breaker.open
    clock.now = MIN_SPAN_S
    breaker.succeeded()  # the server is back
    assert breaker.consecutive == 0 and not breaker.open
    for _ in range(3):
        breaker.failed(down)
    clock.now += MIN_SPAN_S
    breaker.failed(down)  # still down after the pause: stop
    assert breaker.open and "bad gateway" in breaker.reason


def test_nothing_but_429s_for_minutes_stops_the_lane():
    clock = Clock()
    breaker = CircuitBreaker(3, clock=clock)
    limited = ProviderError("rate limited", kind="transient", status=429)
    for _ in range(50):
        breaker.failed(limited)
    assert not breaker.open  # a pause is not an outage
    clock.now = NO_SUCCESS_S
    breaker.failed(limited)
    assert breaker.open and "answered only 429" in breaker.reason


def test_errors_are_json_readable_in_results(project, cli):
    """The stopped run's results.jsonl still lists every item (queued ones without output)."""
    _many_items(project)
    _suite(project, f"http://127.0.0.1:{_closed_port()}/v1")
    cli("run", str(project.suite_path))
    [run_dir] = project.run_dirs()
    lines = [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()]
    assert len(lines) == ITEMS


def test_a_blip_of_server_errors_pauses_but_does_not_stop_the_run(project, cli):
    """The server answers 502 to everything for 0.7 s part-way (a deploy): far more requests than
    the breaker's count fail in a row, the lane pauses, tries again, and everything succeeds."""
    _many_items(project)
    with FakeLLMServer(keyword_replier({}, default="bug"), latency_s=0.02) as server:

        def blip() -> None:
            while server.log.total < 60:
                time.sleep(0.005)
            server.faults = [FaultRule(status=502, times=10**6)]
            time.sleep(0.7)
            server.faults = []

        threading.Thread(target=blip, daemon=True).start()
        _suite(project, server.base_url + "/v1", concurrency=32)
        result = cli("run", str(project.suite_path))
        assert result.exit_code == 0, result.output
        assert "stopped early" not in result.output
        assert sum(server.log.successes.values()) == ITEMS
        assert server.log.total - ITEMS > 10  # the blip did fail requests, more than the breaker's count


def test_a_paced_target_does_not_hold_up_another(project, cli):
    """Each target has its own workers: one limited to 60 requests a minute does not make the
    other wait behind it."""
    write_records(project.root / "suites" / "data" / "tickets.jsonl",
                  [{"id": f"t{i}", "text": f"ticket {i}", "label": "bug"} for i in range(6)])
    with FakeLLMServer(keyword_replier({}, default="bug")) as server:
        suite = base_suite(server.base_url)
        slow = {**suite["targets"][0], "name": "slow", "limits": {"rpm": 60}}
        fast = {**suite["targets"][0], "name": "fast", "model": "other-model"}
        suite["targets"] = [slow, fast]
        project.write_suite(suite)
        assert cli("run", str(project.suite_path)).exit_code == 0
    store = _store(project)
    started = {target: sorted(row[0] for row in store.db.execute(
        "SELECT a.started_at FROM attempts a JOIN requests r USING (request_id) WHERE r.target = ?", (target,)))
        for target in ("slow", "fast")}
    assert len(started["slow"]) == len(started["fast"]) == 6
    assert started["fast"][-1] < started["slow"][2]  # fast was done while slow was still being paced
