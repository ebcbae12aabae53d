"""Run metrics against what the fake server saw and what the run's own files say."""

from __future__ import annotations

import json
import sqlite3

import numpy as np
import pytest

from harness.cost.money import format_usd
from harness.engine.metrics import RunMetrics, run_metrics
from harness.engine.providers.base import Completion
from harness.engine.store import NewRequest, RunStore
from harness.runs.manifest import read_manifest
from harness.testing.fake_server import FakeLLMServer, FaultRule, keyword_replier
from tests.conftest import TICKET_REPLIES, base_suite

PRICES = {"input_per_mtok": 1.5, "output_per_mtok": 4.0}


def _suite_with_prices(url: str) -> dict:
    suite = base_suite(url)
    suite["targets"][0]["pricing"] = PRICES
    return suite


def test_metrics_of_a_run_match_the_server_log_and_the_results(project, cli):
    faults = [FaultRule(status=503, times=1, match="billed"),            # a1: one retry
              FaultRule(status=429, times=2, match="dark mode", retry_after=0.05),  # a3: two 429s
              FaultRule(status=400, times=9, match="Cancel")]            # a5: fails for good at once
    with FakeLLMServer(keyword_replier(TICKET_REPLIES), faults=faults) as server:
        project.write_suite(_suite_with_prices(server.base_url))
        result = cli("run", str(project.suite_path))
    assert result.exit_code == 1, result.output
    [run_dir] = project.run_dirs()
    metrics = read_manifest(run_dir).metrics
    assert metrics is not None

    lines = [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()]
    succeeded = [line for line in lines if line["state"] == "succeeded"]
    assert (metrics.submitted, metrics.sent, metrics.completed) == (6, 6, 6)
    assert (metrics.succeeded, metrics.failed_terminal) == (len(succeeded), 1) == (5, 1)
    assert metrics.success_rate == pytest.approx(5 / 6) and metrics.terminal_failure_rate == pytest.approx(1 / 6)
    # Every attempt the server answered is one the store counts, and nothing else.
    assert metrics.attempts == server.log.total == 6 + 1 + 2
    assert metrics.retry_rate == pytest.approx((server.log.total - 6) / 6)
    assert metrics.rate_limited == 2
    db = sqlite3.connect(run_dir / "run.sqlite")
    paused = json.loads(db.execute("SELECT value FROM meta WHERE key = 'rate_limit_paused_s'").fetchone()[0])
    assert paused > 0 and metrics.rate_limit_paused_s == pytest.approx(paused, abs=1e-3)

    tokens_in = sum(line["input_tokens"] for line in succeeded)
    tokens_out = sum(line["output_tokens"] for line in succeeded)
    assert metrics.input_tokens_per_item == pytest.approx(tokens_in / 5)
    assert metrics.output_tokens_per_item == pytest.approx(tokens_out / 5)
    latencies = [line["latency_ms"] for line in succeeded]
    assert metrics.latency_p50_ms == pytest.approx(float(np.percentile(latencies, 50)))
    assert metrics.latency_p95_ms == pytest.approx(float(np.percentile(latencies, 95)))
    cost = (tokens_in * PRICES["input_per_mtok"] + tokens_out * PRICES["output_per_mtok"]) / 1e6
    assert metrics.cost_usd == pytest.approx(cost)
    assert metrics.cost_per_item_usd == pytest.approx(cost / 6)
    assert metrics.cost_per_success_usd == pytest.approx(cost / 5)
    assert (metrics.from_cache, metrics.duplicates) == (0, 0)
    # Printed after the run, from the same numbers.
    assert "metrics: 6 submitted, 6 sent, 6 completed: 83.3% succeeded, 16.7% failed terminally" in result.output
    assert "2 answered 429" in result.output and f"cost {format_usd(cost)}" in result.output


def _store_with(tmp_path, count: int) -> RunStore:
    store = RunStore.in_folder(tmp_path)
    store.add_requests(NewRequest(f"r{i}", f"i{i}", "t", 0, {}) for i in range(count))
    return store


def _answer(store: RunStore, request_id: str, latency_ms: float, cost: float | None, tokens=(10, 2)) -> None:
    attempt = store.start_attempt(request_id)
    assert attempt is not None
    assert store.succeed(request_id, attempt.number, Completion("ok", *tokens, "stop"), latency_ms, cost_usd=cost)


def test_percentiles_costs_and_reuse_from_a_store(tmp_path):
    store = _store_with(tmp_path, 8)
    latencies = [120.0, 80.0, 95.5, 300.0, 42.0]
    for i, latency in enumerate(latencies):
        _answer(store, f"r{i}", latency, cost=0.002 if i % 2 else None)
    # r5 from the shared cache, r6 as a duplicate of an identical request: no attempt, no latency.
    assert store.reuse("r5", Completion("ok", 10, 2, "stop"), "cache")
    assert store.reuse("r6", Completion("ok", 10, 2, "stop"), "duplicate")
    attempt = store.start_attempt("r7")
    assert attempt is not None and store.fail("r7", attempt.number, final=False, error="HTTP 429", status=429)
    metrics = run_metrics(store)
    assert (metrics.submitted, metrics.sent, metrics.succeeded, metrics.completed) == (8, 6, 7, 7)
    assert (metrics.from_cache, metrics.duplicates, metrics.rate_limited, metrics.attempts) == (1, 1, 1, 6)
    assert metrics.retry_rate == 0.0  # six requests sent, each once
    assert metrics.latency_p50_ms == pytest.approx(float(np.percentile(latencies, 50)))
    assert metrics.latency_p95_ms == pytest.approx(float(np.percentile(latencies, 95)))
    # Requests reused cost 0 (known), so they count among the costed ones.
    assert metrics.cost_usd == pytest.approx(0.004)
    assert metrics.cost_per_success_usd == pytest.approx(0.004 / 7)
    assert metrics.input_tokens_per_item == pytest.approx(10.0)
    store.close()


def test_a_store_without_answers_or_prices_has_no_rates(tmp_path):
    store = _store_with(tmp_path, 3)
    _answer(store, "r0", 50.0, cost=None)
    metrics = run_metrics(store)
    assert metrics.cost_usd is None and metrics.cost_per_item_usd is None and metrics.cost_per_success_usd is None
    assert metrics.latency_p50_ms == metrics.latency_p95_ms == 50.0
    store.close()
    (tmp_path / "empty").mkdir()
    empty = _store_with(tmp_path / "empty", 0)
    nothing = run_metrics(empty)
    assert nothing.success_rate is None and nothing.retry_rate is None and nothing.latency_p50_ms is None
    assert nothing.rate_limit_paused_s == 0.0
    empty.close()


def test_an_old_manifest_without_metrics_still_loads(project, fake_server, cli):
    project.write_suite(base_suite(fake_server.base_url))
    assert cli("run", str(project.suite_path)).exit_code == 0
    [run_dir] = project.run_dirs()
    data = json.loads((run_dir / "manifest.json").read_text())
    assert RunMetrics.model_validate(data.pop("metrics")).submitted == 6
    (run_dir / "manifest.json").write_text(json.dumps(data))
    assert read_manifest(run_dir).metrics is None
