"""The response cache and in-run dedupe, with a real run store and the real openai and anthropic
clients against the fake server: fewer requests reach the server, and what was not sent is
marked as such."""

from __future__ import annotations

import asyncio
import itertools
import json
import sqlite3
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from harness.engine.cache import CACHE_DIR_ENV, ResponseCache, cache_key, default_cache_path
from harness.engine.providers.base import Completion, ProviderError, ProviderRequest
from harness.engine.providers.registry import create_provider
from harness.engine.requests import WorkRequest
from harness.engine.reuse import Reuse
from harness.engine.states import RequestState
from harness.engine.store import NewRequest, RunStore, ScoreRow, StoredItem, StoredRequest
from harness.plan import RunPlan, plan_run
from harness.testing.fake_server import FakeLLMServer, FaultRule, keyword_replier
from tests.conftest import COPIES, TICKET_REPLIES, TICKETS, base_suite, write_records


@pytest.fixture(autouse=True)
def _cache_dir(tmp_path, monkeypatch):
    """Every test gets its own cache folder: nothing is read from or written to ~/.cache."""
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path / "cache"))


@pytest.fixture(params=["openai", "anthropic"])
def provider(request, monkeypatch):
    if request.param == "anthropic":
        monkeypatch.setenv("ANTHROPIC_API_KEY", "fake-anthropic-key-for-tests")
    return request.param


def _plan(project, server: FakeLLMServer, records=TICKETS, provider: str = "openai", params=None,
          epochs: int = 1, **engine) -> RunPlan:
    write_records(project.root / "suites" / "data" / "tickets.jsonl", records)
    suite = base_suite(server.base_url, provider)
    suite["targets"][0]["params"].update(params or {})
    suite["engine"].update(engine)
    suite["epochs"] = epochs
    project.write_suite(suite)
    return plan_run(project.suite_path)


def _store(path: Path, plan: RunPlan) -> RunStore:
    store = RunStore(path)
    store.add_requests(
        (NewRequest(r.request_id, r.item.id, r.target.label, r.sample_index, r.payload()) for r in plan.requests()),
        (StoredItem(i.id, i.location, tuple(i.slices), i.cluster, i.fields) for i in plan.items()))
    return store


def _scorer(plan: RunPlan) -> Callable[[WorkRequest, str], list[ScoreRow]]:
    def score(request: WorkRequest, output: str) -> list[ScoreRow]:
        results = [(scorer, scorer.score(output, request.item.fields)) for scorer in plan.scorers]
        return [(request.request_id, s.name, r.value, r.passed, r.detail) for s, r in results]

    return score


def _send(plan: RunPlan, store: RunStore, requests: list[WorkRequest] | None = None, concurrency: int = 4,
          cache: ResponseCache | None = None, on_failure: Callable[[], None] | None = None) -> Reuse:
    """One process's work on the run, making the calls the engine makes: `answered` before
    sending, `record` after a stored success, `failed` after a terminal failure (every failure is
    terminal here). Bounded in time: a follower left waiting fails the test instead of hanging it."""
    providers = {target.label: create_provider(target) for target in plan.suite.spec.targets}
    reuse = Reuse(store, providers, plan.suite.spec.engine, _scorer(plan), cache)
    queue = list(plan.requests() if requests is None else requests)

    async def worker() -> None:
        while queue:
            request = queue.pop(0)
            if await reuse.answered(request):
                continue
            attempt = store.start_attempt(request.request_id)
            if attempt is None:
                continue
            try:
                completion = await providers[request.target.label].complete(
                    ProviderRequest(request.request_id, request.prompt.text, request.prompt.messages, timeout_s=5))
            except ProviderError as error:
                store.fail(request.request_id, attempt.number, final=True, error=error.describe(), status=error.status)
                if on_failure is not None:
                    on_failure()
                reuse.failed(request)
                continue
            if store.succeed(request.request_id, attempt.number, completion, 1.0,
                             _scorer(plan)(request, completion.text)):
                reuse.record(request, completion)

    async def work() -> None:
        try:
            await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(concurrency))), timeout=30)
        finally:
            for provider in providers.values():
                await provider.close()

    asyncio.run(work())
    reuse.close()
    return reuse


def _by_item(store: RunStore) -> dict[str, StoredRequest]:
    return {row.item_id: row for row in store.requests()}


def _origins(store: RunStore) -> Counter[str]:
    return Counter(row.origin for row in store.requests() if row.state == RequestState.SUCCEEDED)


# -- in-run dedupe -----------------------------------------------------------------------------
def test_identical_requests_of_a_run_are_sent_once(project, tmp_path, provider):
    # Replies take a while, so copies arrive while their original is in flight and wait for it.
    with FakeLLMServer(keyword_replier(TICKET_REPLIES), latency_s=0.2) as server:
        plan = _plan(project, server, TICKETS + COPIES, provider)
        store = _store(tmp_path / "run.sqlite", plan)
        reuse = _send(plan, store)
    assert server.log.total == 6  # 10 requests, 6 different bodies
    rows = _by_item(store)
    assert {row.state for row in rows.values()} == {RequestState.SUCCEEDED}
    assert _origins(store) == {"sent": 6, "duplicate": 4} and reuse.counts == {"duplicate": 4}
    assert rows["copy0"].output == rows["a1"].output == "billing" and rows["copy1"].output == "bug"
    assert rows["copy0"].cost_usd == 0 and rows["copy0"].attempts == 0  # nothing was sent for it
    scores = store.scores_by_request()
    assert scores[rows["copy0"].request_id]["accuracy"]["value"] == 1.0


def test_a_follower_is_sent_when_its_leader_fails_for_good(project, tmp_path):
    same = [TICKETS[0]] + [{**TICKETS[0], "id": f"again{n}"} for n in range(3)]
    with FakeLLMServer(keyword_replier(TICKET_REPLIES), [FaultRule(status=400, times=1, match="billed")]) as server:
        plan = _plan(project, server, same)
        store = _store(tmp_path / "run.sqlite", plan)
        # The endpoint recovers after the first failure: the next identical request succeeds.
        _send(plan, store, on_failure=server.faults.clear)
    states = Counter((row.state, row.origin) for row in store.requests())
    assert states == {(RequestState.FAILED_TERMINAL, "sent"): 1, (RequestState.SUCCEEDED, "sent"): 1,
                      (RequestState.SUCCEEDED, "duplicate"): 2}
    assert server.log.total == 2


@pytest.mark.parametrize("concurrency", [1, 4])
def test_a_leader_that_ends_without_an_answer_does_not_hold_up_its_followers(project, tmp_path, concurrency):
    same = [TICKETS[0]] + [{**TICKETS[0], "id": f"again{n}"} for n in range(3)]
    with FakeLLMServer(keyword_replier(TICKET_REPLIES)) as server:
        plan = _plan(project, server, same)
        store = _store(tmp_path / "run.sqlite", plan)
        first = next(plan.requests()).request_id
        store.start_attempt(first)  # in flight in another process: this one must not send it
        _send(plan, store, concurrency=concurrency)
    rows = _by_item(store)
    assert rows["a1"].state == RequestState.PROCESSING
    assert Counter(rows[f"again{n}"].origin for n in range(3)) == {"sent": 1, "duplicate": 2}
    assert server.log.total == 1


def test_a_resumed_run_reuses_answers_an_earlier_process_got(project, tmp_path):
    with FakeLLMServer(keyword_replier(TICKET_REPLIES)) as server:
        plan = _plan(project, server, TICKETS + COPIES)
        store = _store(tmp_path / "run.sqlite", plan)
        originals = [r for r in plan.requests() if not r.item.id.startswith("copy")]
        _send(plan, store, originals)
        assert server.log.total == 6
        resumed = RunStore(tmp_path / "run.sqlite")  # a new process: nothing in memory
        _send(plan, resumed, [r for r in plan.requests() if r.item.id.startswith("copy")])
    assert server.log.total == 6
    assert _origins(resumed) == {"sent": 6, "duplicate": 4}


def test_samples_of_a_sampled_target_are_never_shared(project, tmp_path):
    with FakeLLMServer(keyword_replier(TICKET_REPLIES)) as server:
        plan = _plan(project, server, TICKETS + COPIES, params={"temperature": 0.8}, epochs=2)
        store = _store(tmp_path / "run.sqlite", plan)
        _send(plan, store)
    assert server.log.total == 20  # 10 items x 2 samples, identical texts included
    assert _origins(store) == {"sent": 20}


def test_requests_that_leave_the_temperature_to_the_api_are_not_shared(project, tmp_path, monkeypatch):
    """Anthropic's default temperature is 1: a target that sets none samples."""
    monkeypatch.setenv("ANTHROPIC_API_KEY", "fake-anthropic-key-for-tests")
    with FakeLLMServer(keyword_replier(TICKET_REPLIES)) as server:
        write_records(project.root / "suites" / "data" / "tickets.jsonl", TICKETS + COPIES)
        suite = base_suite(server.base_url, "anthropic")
        del suite["targets"][0]["params"]["temperature"]
        project.write_suite(suite)
        plan = plan_run(project.suite_path)
        store = _store(tmp_path / "run.sqlite", plan)
        _send(plan, store)
    assert server.log.total == 10 and _origins(store) == {"sent": 10}


# -- the response cache ------------------------------------------------------------------------
def test_a_rerun_with_the_cache_sends_nothing(project, tmp_path, provider):
    with FakeLLMServer(keyword_replier(TICKET_REPLIES)) as server:
        plan = _plan(project, server, TICKETS, provider, cache=True)
        first = _store(tmp_path / "first.sqlite", plan)
        _send(plan, first)
        assert server.log.total == 6
        second = _store(tmp_path / "second.sqlite", plan)
        reuse = _send(plan, second)
    assert server.log.total == 6
    assert _origins(second) == {"cache": 6} and reuse.counts == {"cache": 6}
    before, after = _by_item(first), _by_item(second)
    assert {i: (r.output, r.input_tokens, r.finish_reason) for i, r in before.items()} == \
           {i: (r.output, r.input_tokens, r.finish_reason) for i, r in after.items()}
    assert all(row.cost_usd == 0 for row in after.values())
    assert len(second.scores_by_request()) == 6


def test_without_the_cache_a_rerun_sends_again(project, tmp_path):
    with FakeLLMServer(keyword_replier(TICKET_REPLIES)) as server:
        plan = _plan(project, server)
        _send(plan, _store(tmp_path / "first.sqlite", plan))
        _send(plan, _store(tmp_path / "second.sqlite", plan))
    assert server.log.total == 12
    assert not default_cache_path().exists()  # engine.cache is off by default: no file either


def test_sampled_answers_are_cached_only_when_asked_and_per_sample(project, tmp_path):
    counter = itertools.count()
    with FakeLLMServer(lambda prompt: f"answer {next(counter)}") as server:
        plan = _plan(project, server, params={"temperature": 0.8}, epochs=2, cache=True)
        _send(plan, _store(tmp_path / "first.sqlite", plan))
        _send(plan, _store(tmp_path / "second.sqlite", plan))
        assert server.log.total == 24  # cache on, but not for sampled requests
        plan = _plan(project, server, params={"temperature": 0.8}, epochs=2, cache=True, cache_sampled=True)
        third = _store(tmp_path / "third.sqlite", plan)
        _send(plan, third)
        fourth = _store(tmp_path / "fourth.sqlite", plan)
        _send(plan, fourth)
    assert server.log.total == 36
    assert _origins(fourth) == {"cache": 12}
    sent = {(r.item_id, r.sample_index): r.output for r in third.requests()}
    cached = {(r.item_id, r.sample_index): r.output for r in fourth.requests()}
    assert cached == sent
    assert all(cached[(item, 0)] != cached[(item, 1)] for item, _ in cached)  # each sample its own answer


def test_the_cache_holds_answers_never_keys_or_headers(project, tmp_path, monkeypatch):
    secret = "sk-test-never-store-this-key-0123456789"
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    with FakeLLMServer(keyword_replier(TICKET_REPLIES)) as server:
        plan = _plan(project, server, cache=True)
        _send(plan, _store(tmp_path / "run.sqlite", plan))
    folder = default_cache_path().parent
    stored = b"".join(path.read_bytes() for path in folder.iterdir())
    assert secret.encode() not in stored
    assert b"x-evalbatch-request-id" not in stored.lower() and b"authorization" not in stored.lower()
    db = sqlite3.connect(default_cache_path())
    columns = [row[1] for row in db.execute("PRAGMA table_info(responses)")]
    rows = db.execute("SELECT text, input_tokens, output_tokens, finish_reason FROM responses").fetchall()
    db.close()
    assert columns == ["key", "text", "input_tokens", "output_tokens", "finish_reason", "created_at"]
    assert len(rows) == 6 and "billing" in {row[0] for row in rows}


@pytest.mark.parametrize("damage", [b"this is not a database" * 100, b"SQLite format 3\x00" + b"\xff" * 4000])
def test_a_damaged_cache_file_is_reported_once_and_the_run_goes_on(project, tmp_path, damage):
    path = default_cache_path()
    path.parent.mkdir(parents=True)
    path.write_bytes(damage)
    warnings: list[str] = []
    with FakeLLMServer(keyword_replier(TICKET_REPLIES)) as server:
        plan = _plan(project, server, TICKETS + COPIES, cache=True)
        store = _store(tmp_path / "run.sqlite", plan)
        _send(plan, store, cache=ResponseCache(warn=warnings.append))
    assert _origins(store) == {"sent": 6, "duplicate": 4}  # dedupe does not need the cache
    assert len(warnings) == 1 and str(path) in warnings[0] and "without it" in warnings[0]


def test_a_cache_of_a_newer_format_is_left_alone(tmp_path):
    path = tmp_path / "responses.sqlite"
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version=99")
    db.close()
    warnings: list[str] = []
    cache = ResponseCache(path, warn=warnings.append)
    cache.put("k", Completion("text"))
    assert cache.get("k") is None and not cache.enabled
    assert len(warnings) == 1 and "format 99" in warnings[0]


def test_cache_keys_ignore_field_order_and_name_the_sample():
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": 0}
    reordered = dict(reversed(list(body.items())))
    assert cache_key("openai", "http://x/v1", body) == cache_key("openai", "http://x/v1", reordered)
    assert cache_key("openai", "http://x/v1", body) != cache_key("openai", "http://y/v1", body)
    assert cache_key("openai", "u", body) != cache_key("anthropic", "u", body)
    assert cache_key("openai", "u", body, 0) != cache_key("openai", "u", body, 1) != cache_key("openai", "u", body)


_WRITER = """
import sys
from harness.engine.cache import ResponseCache
from harness.engine.providers.base import Completion
warnings = []
cache = ResponseCache(warn=warnings.append)
name, count = sys.argv[1], int(sys.argv[2])
for n in range(count):
    cache.put(f"{name}-{n}", Completion(f"{name} {n}", 1, 1, "stop"))
    cache.get(f"other-{n}")
print(len(warnings), cache.stored)
"""


def test_two_processes_write_one_cache_at_once(tmp_path):
    processes = [subprocess.Popen([sys.executable, "-c", _WRITER, name, "400"], stdout=subprocess.PIPE, text=True)
                 for name in ("one", "two")]
    outputs = [process.communicate(timeout=120)[0].split() for process in processes]
    assert all(process.returncode == 0 for process in processes)
    assert outputs == [["0", "400"], ["0", "400"]]  # no warnings: every put landed
    cache = ResponseCache()
    assert cache.get("one-399") == Completion("one 399", 1, 1, "stop") and cache.get("two-0") is not None
    count = cache.db.execute("SELECT COUNT(*) FROM responses").fetchone()[0] if cache.db else None
    assert count == 800


# -- end to end: `evalbatch run` --------------------------------------------------------------


def _lines(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()]


def test_cli_rerun_with_cache_sends_nothing_and_marks_results(project, cli, fake_server):
    project.write_suite(base_suite(fake_server.base_url))
    first = cli("run", str(project.suite_path), "--cache")
    assert first.exit_code == 0, first.output
    assert fake_server.log.total == 6
    second = cli("run", str(project.suite_path), "--cache")
    assert second.exit_code == 0, second.output
    assert fake_server.log.total == 6
    # Run IDs of the same second need not sort in order: tell the runs apart by their lines.
    runs = sorted((_lines(run_dir) for run_dir in project.run_dirs()), key=lambda lines: lines[0]["origin"])
    assert [{line["origin"] for line in lines} for lines in runs] == [{"cache"}, {"sent"}]
    lines = runs[0]
    assert {line["state"] for line in lines} == {"succeeded"}
    assert {line["item_id"]: line["output"] for line in lines}["a1"] == "billing"
    assert all(line["scores"]["accuracy"]["value"] in (0.0, 1.0) for line in lines)


def test_cli_no_cache_wins_over_the_suite(project, cli, fake_server):
    suite = base_suite(fake_server.base_url)
    suite["engine"]["cache"] = True
    project.write_suite(suite)
    assert cli("run", str(project.suite_path)).exit_code == 0
    assert cli("run", str(project.suite_path), "--no-cache").exit_code == 0
    assert fake_server.log.total == 12
    assert cli("run", str(project.suite_path)).exit_code == 0
    assert fake_server.log.total == 12


def test_cli_run_sends_identical_requests_once(project, cli, fake_server):
    write_records(project.root / "suites" / "data" / "tickets.jsonl", TICKETS + COPIES)
    project.write_suite(base_suite(fake_server.base_url))
    result = cli("run", str(project.suite_path))
    assert result.exit_code == 0, result.output
    assert fake_server.log.total == 6
    [run_dir] = project.run_dirs()
    origins = {line["item_id"]: line["origin"] for line in _lines(run_dir)}
    assert Counter(origins.values()) == {"sent": 6, "duplicate": 4}
    assert {origins[f"copy{n}"] for n in range(4)} == {"duplicate"}


def test_the_plan_finds_whether_any_two_requests_share_a_prompt(project, fake_server):
    """Only then does the engine keep track of identical requests: a plan that says none do must
    be right, or copies would be sent twice."""
    assert not _plan(project, fake_server).tally.shared_payloads
    assert _plan(project, fake_server, TICKETS + COPIES[:1]).tally.shared_payloads
    assert _plan(project, fake_server, epochs=2).tally.shared_payloads  # temperature 0: samples alike
    # Two targets render the same prompts: whether their bodies match is the engine's to find.
    suite = base_suite(fake_server.base_url)
    suite["targets"].append(dict(suite["targets"][0], name="again", base_url=fake_server.base_url + "/v1/"))
    project.write_suite(suite)
    assert plan_run(project.suite_path).tally.shared_payloads


def _twins(server, provider: str, first: dict, second: dict) -> dict:
    suite = base_suite(server.base_url, provider)
    [target] = suite["targets"]
    twins = [dict(target, params=dict(target["params"])), dict(target, name="twin", params=dict(target["params"]))]
    for twin, changes in zip(twins, (first, second), strict=True):
        for key, value in changes.items():
            if key == "params":
                twin["params"].update(value)
            elif value is None:
                twin.pop(key, None)
            else:
                twin[key] = value
    suite["targets"] = twins
    return suite


@pytest.mark.parametrize("twins", ["trailing slash", "seed anthropic does not send", "base URL from the environment"])
def test_targets_whose_bodies_match_share_answers(project, cli, twins, monkeypatch):
    """Targets that differ only where the provider body does not (found by an adversarial review:
    the plan once compared the suite's settings instead, and sent these twice)."""
    monkeypatch.setenv("ANTHROPIC_API_KEY", "fake-anthropic-key-for-tests")
    with FakeLLMServer(keyword_replier(TICKET_REPLIES), latency_s=0.1) as server:
        url = server.base_url + "/v1"
        if twins == "trailing slash":
            suite = _twins(server, "openai", {"base_url": url}, {"base_url": url + "/"})
        elif twins == "seed anthropic does not send":
            suite = _twins(server, "anthropic", {"params": {"seed": 1}}, {"params": {"seed": 2}})
        else:
            monkeypatch.setenv("OPENAI_BASE_URL", url)
            suite = _twins(server, "openai", {"base_url": url}, {"base_url": None})
        project.write_suite(suite)
        result = cli("run", str(project.suite_path))
        assert result.exit_code == 0, result.output
        assert server.log.total == len(TICKETS)
    [run_dir] = project.run_dirs()
    assert Counter(line["origin"] for line in _lines(run_dir)) == {"sent": len(TICKETS), "duplicate": len(TICKETS)}


def test_cli_run_without_copies_sends_each_request_once(project, cli, fake_server):
    write_records(project.root / "suites" / "data" / "tickets.jsonl", TICKETS)
    project.write_suite(base_suite(fake_server.base_url))
    result = cli("run", str(project.suite_path))
    assert result.exit_code == 0, result.output
    assert fake_server.log.total == len(TICKETS)
    [run_dir] = project.run_dirs()
    assert Counter(line["origin"] for line in _lines(run_dir)) == {"sent": len(TICKETS)}


def test_cli_run_with_a_damaged_cache_warns_and_completes(project, cli, fake_server):
    path = default_cache_path()
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a database at all" * 200)
    project.write_suite(base_suite(fake_server.base_url))
    result = cli("run", str(project.suite_path), "--cache")
    assert result.exit_code == 0, result.output
    assert "warning: the response cache" in result.output and result.output.count("warning: the response cache") == 1
    assert fake_server.log.total == 6
