"""Batch mode answers what it can without a batch line, as realtime does: identical requests of
the run go into a batch once (the copies share the answer), and with `engine.cache` a rerun is
answered from the response cache without creating a batch. Real clients, fake Batch APIs."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from harness.engine.cache import CACHE_DIR_ENV
from harness.testing.fake_batch_lifecycle import BatchScript
from tests.conftest import COPIES, TICKETS, write_records
from tests.engine.batch_support import PRICED_MODELS, batch_suite, per_request, realtime_suite


@pytest.fixture(autouse=True)
def _cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path / "cache"))


@pytest.fixture(params=["openai", "anthropic"])
def provider(request, monkeypatch) -> str:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
    return request.param


def _lines(reports) -> dict[str, dict]:
    [run_dir] = sorted(p for p in (reports / "demo").glob("*/") if p.is_dir())[-1:]
    return {line["item_id"] + f"#{line['sample_index']}": line
            for line in map(json.loads, (run_dir / "results.jsonl").read_text().splitlines())}


def _run(project, cli, suite, reports, *args: str):
    project.write_suite(suite)
    result = cli("run", str(project.suite_path), "--reports-dir", str(project.root / reports), *args)
    return result, _lines(project.root / reports)


def _outcome(lines: dict[str, dict]) -> dict[str, tuple]:
    return {key: (line["state"], line["output"], json.dumps(line["scores"], sort_keys=True))
            for key, line in lines.items()}


def test_identical_requests_go_into_a_batch_once(project, cli, fake_server, provider):
    write_records(project.root / "suites" / "data" / "tickets.jsonl", TICKETS + COPIES)
    realtime_spec, batch_spec = realtime_suite(fake_server.base_url, provider), batch_suite(fake_server.base_url, provider)
    for suite in (realtime_spec, batch_spec):  # a model with a list price: copies cost $0
        suite["targets"][0]["model"] = PRICED_MODELS[provider]
    result, realtime = _run(project, cli, realtime_spec, "realtime")
    assert result.exit_code == 0, result.output
    result, batch = _run(project, cli, batch_spec, "batch")
    assert result.exit_code == 0, result.output
    assert per_request(fake_server.batches.log.submitted) == [1] * len(TICKETS)  # 10 requests, 6 bodies
    assert _outcome(batch) == _outcome(realtime)
    assert Counter(line["origin"] for line in batch.values()) == {"sent": 6, "duplicate": 4}
    assert [batch[f"copy{n}#0"]["cost_usd"] for n in range(4)] == [0.0] * 4
    assert batch["a1#0"]["cost_usd"] == pytest.approx(realtime["a1#0"]["cost_usd"] / 2)  # the batch price
    assert "4 shared with an identical request of the run" in result.output


def test_samples_at_temperature_0_go_into_a_batch_once(project, cli, fake_server):
    suite = batch_suite(fake_server.base_url)
    suite["epochs"] = 3
    result, lines = _run(project, cli, suite, "batch")
    assert result.exit_code == 0, result.output
    assert per_request(fake_server.batches.log.submitted) == [1] * len(TICKETS)
    assert len(lines) == 3 * len(TICKETS)
    assert Counter(line["origin"] for line in lines.values()) == {"sent": 6, "duplicate": 12}


def test_a_rerun_with_the_cache_creates_no_batch(project, cli, fake_server, provider):
    suite = batch_suite(fake_server.base_url, provider)
    suite["engine"]["cache"] = True
    result, first = _run(project, cli, suite, "batch")
    assert result.exit_code == 0, result.output
    assert "6 batch answer(s) added to the response cache" in result.output
    assert fake_server.batches.log.creations[provider] == 1

    result, again = _run(project, cli, suite, "batch", "--new")
    assert result.exit_code == 0, result.output
    assert fake_server.batches.log.creations[provider] == 1  # nothing was sent
    assert {line["origin"] for line in again.values()} == {"cache"}
    assert _outcome(again) == _outcome(first)
    assert "6 from the response cache" in result.output


def test_copies_of_a_request_that_failed_for_good_stay_waiting_and_are_batched_next(project, cli, fake_server):
    write_records(project.root / "suites" / "data" / "tickets.jsonl", TICKETS + COPIES)
    fake_server.batches.script = BatchScript(line_errors={"dark mode": 400})  # a3 has no copies
    result, lines = _run(project, cli, batch_suite(fake_server.base_url), "batch")
    assert result.exit_code == 1 and lines["a3#0"]["state"] == "failed_terminal"
    assert Counter(line["origin"] for line in lines.values() if line["state"] == "succeeded") == \
        {"sent": 5, "duplicate": 4}

    fake_server.batches.script = BatchScript(line_errors={"billed twice": 400})  # a1's text: copy0, copy2
    write_records(project.root / "suites" / "data" / "tickets.jsonl", TICKETS[:1] + COPIES[:1] + COPIES[2:3])
    result, lines = _run(project, cli, batch_suite(fake_server.base_url), "second")
    assert result.exit_code == 1, result.output
    states = {key: line["state"] for key, line in lines.items()}
    # The first of three identical requests failed for good in its batch: the other two were not
    # failed with it, nor given its error; they wait, and the next session batches one of them.
    assert states == {"a1#0": "failed_terminal", "copy0#0": "queued", "copy2#0": "queued"}
    fake_server.batches.script = BatchScript()
    result, lines = _run(project, cli, batch_suite(fake_server.base_url), "second")
    assert result.exit_code == 1, result.output  # a1 stays failed (terminal) until --retry-failed
    assert {key: line["state"] for key, line in lines.items()} == \
        {"a1#0": "failed_terminal", "copy0#0": "succeeded", "copy2#0": "succeeded"}
    assert Counter(line["origin"] for line in lines.values() if line["state"] == "succeeded") == \
        {"sent": 1, "duplicate": 1}
