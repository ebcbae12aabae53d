"""Proof under faults: 2,000 requests through the real openai client while a quarter of all
attempts fail in every way the fake server knows (429, 500, 502, 503, 529, dropped connections,
replies past the timeout, malformed JSON). Every request must succeed, none may be answered
twice, every attempt must be in the store, and no request may spend more than its retry budget."""

from __future__ import annotations

import json
import sqlite3
from collections import Counter

import pytest

from harness.testing.fake_limits import FAULT_KINDS
from harness.testing.fake_server import FakeLLMServer, keyword_replier
from tests.conftest import base_suite
from tests.runs.processes import many_tickets

REQUESTS = 2000
FAULT_RATE = 0.25
MAX_RETRIES = 8  # 0.25^9 per request: no request should run out of tries by chance
TIMEOUT_S = 1.0


@pytest.fixture
def faulty_server():
    server = FakeLLMServer(keyword_replier({}, default="billing"), fault_rate=FAULT_RATE, fault_seed=11,
                           slow_s=TIMEOUT_S + 0.5)
    with server:
        yield server


@pytest.mark.parametrize(("provider", "requests"), [("openai", REQUESTS), ("anthropic", 400)])
def test_every_request_succeeds_once_through_every_kind_of_fault(project, cli, faulty_server, monkeypatch,
                                                                 provider, requests):
    """The issue's 2,000 through the openai client; a shorter run through the anthropic client."""
    if provider == "anthropic":
        monkeypatch.setenv("ANTHROPIC_API_KEY", "fake-anthropic-key-for-tests")
    many_tickets(project, requests)
    suite = base_suite(faulty_server.base_url, provider)
    suite["engine"].update(concurrency=64, max_retries=MAX_RETRIES, timeout_s=TIMEOUT_S)
    project.write_suite(suite)

    result = cli("run", str(project.suite_path))

    assert result.exit_code == 0, result.output
    log = faulty_server.log
    assert sum(log.faults.values()) >= 0.2 * log.total, log.faults
    assert set(log.faults) == set(FAULT_KINDS)  # every kind was met
    [run_dir] = project.run_dirs()
    results = [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()]
    assert len(results) == requests and {r["state"] for r in results} == {"succeeded"}
    assert {r["output"] for r in results} == {"billing"}
    # Answered exactly once each: no success was thrown away and asked for again.
    assert len(log.successes) == requests and set(log.successes.values()) == {1}

    db = sqlite3.connect(f"file:{run_dir / 'run.sqlite'}?mode=ro", uri=True)
    rows = db.execute("SELECT request_id, status, outcome, error FROM attempts").fetchall()
    db.close()
    # Every attempt the server saw is in the store. A few more may be: a kept-alive connection the
    # server had just closed (the reset fault) fails in the client before the server reads it.
    unseen = Counter(request_id for request_id, _, _, _ in rows) - log.attempts
    assert not log.attempts - Counter(request_id for request_id, _, _, _ in rows)
    never_reached = Counter(request_id for request_id, status, _, error in rows
                            if status is None and (error or "").startswith("connection error"))
    assert not unseen - never_reached
    assert Counter(outcome for _, _, outcome, _ in rows)["succeeded"] == requests
    # 429s for pace do not spend the retry budget; everything else does.
    spent = Counter(request_id for request_id, status, _, _ in rows if status != 429)
    assert max(spent.values()) <= MAX_RETRIES + 1
