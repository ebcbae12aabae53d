"""A run's memory does not grow with its size: the plan holds no items or requests, a bad record
anywhere in a large file is still reported with every other before anything is created, and the
engine is fed from the store a batch at a time."""

from __future__ import annotations

import gc
import json

import harness.engine.feed as feed_module
import harness.execute as execute_module
from harness.config.datasets import Item
from harness.engine.progress import RichProgress
from harness.engine.requests import WorkRequest
from harness.plan import KeptItems, PlanOptions, plan_run
from tests.conftest import base_suite, write_records

ITEMS = 1500


def _records(count: int) -> list[dict]:
    return [{"id": f"s{n:05d}", "text": f"ticket {n}: my invoice is wrong", "label": "billing",
             "lang": "de" if n % 3 == 0 else "en"} for n in range(count)]


def _live(kind: type) -> int:
    return sum(1 for value in gc.get_objects() if isinstance(value, kind))


def test_a_bad_record_near_the_end_of_a_large_file_is_reported_with_all_others(project, cli, fake_server):
    records = _records(ITEMS)
    records[ITEMS - 2] = {"id": "s00003", "text": "a duplicate of an early ID", "label": "billing"}
    lines = [json.dumps(r) for r in records]
    lines[5] = '{"id": "broken", "text": '
    lines[ITEMS - 1] = json.dumps({"id": "last", "label": "billing"})  # no text for the prompt
    path = project.root / "suites" / "data" / "tickets.jsonl"
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    project.write_suite(base_suite(fake_server.base_url))

    result = cli("run", str(project.suite_path))

    assert result.exit_code == 2, result.output
    assert "3 problems in the input; nothing was sent" in result.output
    assert "line 6: invalid JSON" in result.output
    assert f"duplicate item ID 's00003' (at line 4, line {ITEMS - 1})" in result.output
    assert f"line {ITEMS} (id 'last'): missing text" in result.output
    assert fake_server.log.total == 0
    assert project.run_dirs() == []


def test_a_plan_past_the_kept_bound_holds_no_item_and_no_request(project, monkeypatch):
    write_records(project.root / "suites" / "data" / "tickets.jsonl", _records(ITEMS))
    suite = base_suite()
    suite["epochs"] = 2
    project.write_suite(suite)
    monkeypatch.setattr(KeptItems, "MAX_ITEMS", ITEMS - 1)  # the bound a large run passes
    gc.collect()
    items_before, requests_before = _live(Item), _live(WorkRequest)

    plan = plan_run(project.suite_path, PlanOptions())
    gc.collect()

    assert (plan.item_count, plan.request_count) == (ITEMS, 2 * ITEMS) and plan.kept is None
    assert _live(Item) == items_before and _live(WorkRequest) == requests_before
    # Streamed again on demand, in the order a whole-list plan had them.
    requests = list(plan.requests())
    assert len(requests) == 2 * ITEMS and len({r.request_id for r in requests}) == 2 * ITEMS
    assert [(r.item.id, r.sample_index) for r in requests[:3]] == [("s00000", 0), ("s00000", 1), ("s00001", 0)]


def test_a_small_plan_keeps_its_items_and_makes_the_requests_a_streamed_plan_makes(project, monkeypatch):
    write_records(project.root / "suites" / "data" / "tickets.jsonl", _records(ITEMS))
    suite = base_suite()
    suite["epochs"] = 2
    project.write_suite(suite)
    kept = plan_run(project.suite_path, PlanOptions(sample=200))
    monkeypatch.setattr(KeptItems, "MAX_CHARS", 1000)  # a few items' text: past it nothing is kept
    streamed = plan_run(project.suite_path, PlanOptions(sample=200))

    assert kept.kept is not None and len(kept.kept) == 200 and streamed.kept is None
    assert [i.id for i in kept.items()] == [i.id for i in streamed.items()]
    assert ([(r.request_id, r.item, r.payload()) for r in kept.requests()]
            == [(r.request_id, r.item, r.payload()) for r in streamed.requests()])
    assert kept.work_fingerprint == streamed.work_fingerprint


def test_the_work_fingerprint_ignores_record_order_but_not_record_text(project):
    records = _records(50)
    path = project.root / "suites" / "data" / "tickets.jsonl"
    write_records(path, records)
    first = plan_run(project.suite_path).work_fingerprint
    write_records(path, list(reversed(records)))
    assert plan_run(project.suite_path).work_fingerprint == first
    write_records(path, [dict(records[0], text="edited"), *records[1:]])
    assert plan_run(project.suite_path).work_fingerprint != first


def test_slices_samples_and_limit_pick_from_the_stream_as_from_a_list(project):
    """Counts decide a sample, so streaming picks the items a list-based selection would."""
    from harness.config.datasets import load_dataset_items, sample_items, select_slices
    from harness.config.suite import SliceSpec

    write_records(project.root / "suites" / "data" / "tickets.jsonl", _records(300))
    suite = base_suite()
    suite["slices"] = [{"name": "de", "where": {"lang": "de"}}, {"name": "some", "sample": 40, "seed": 5},
                       {"name": "head", "first_n": 7}]
    suite["evaluate"] = ["de", "some"]
    project.write_suite(suite)
    plan = plan_run(project.suite_path, PlanOptions(sample=30, limit=25))
    streamed = [(item.id, item.slices) for item in plan.items()]

    loaded = project.suite_path.parent / "data" / "tickets.jsonl"
    dataset = load_dataset_items(plan.suite.spec.dataset, lambda rel: loaded)
    chosen = select_slices(dataset, [SliceSpec.model_validate(s) for s in suite["slices"]], ["de", "some"])
    gate_sample = plan.suite.spec.gate.sample
    expected = sample_items(chosen, 30, gate_sample.stratify_by, gate_sample.seed)[:25]
    assert streamed == [(item.id, item.slices) for item in expected]
    assert plan.item_count == 25


def test_a_run_holds_a_batch_of_requests_not_all_of_them(project, cli, fake_server, monkeypatch):
    """Small batches make the bound visible: the engine's workers take their requests from the
    store a batch per target, and the plan is stored a batch at a time. The WorkRequests alive
    are counted on the run's own thread each time a success is reported."""
    monkeypatch.setattr(feed_module, "FEED_BATCH", 40)
    monkeypatch.setattr(execute_module, "_STORE_BATCH", 40)
    live: list[int] = []
    reported = [0]
    report_success = RichProgress.succeeded

    def succeeded(self, completion):
        reported[0] += 1
        if reported[0] % 25 == 0:
            live.append(_live(WorkRequest))
        return report_success(self, completion)

    monkeypatch.setattr(RichProgress, "succeeded", succeeded)
    write_records(project.root / "suites" / "data" / "tickets.jsonl", _records(ITEMS))
    suite = base_suite(fake_server.base_url)
    suite["engine"]["concurrency"] = 8
    project.write_suite(suite)

    result = cli("run", str(project.suite_path))

    assert result.exit_code == 0, result.output
    [run_dir] = project.run_dirs()
    assert len((run_dir / "results.jsonl").read_text().splitlines()) == ITEMS
    assert len(live) >= 10
    assert min(live) >= 1  # the request being reported is alive: the count sees the run's requests
    # A feed batch in the lane's queue plus the requests in flight: never the run's 1,500.
    assert max(live) <= 40 + 8 + 8


def test_a_small_plan_with_large_nested_fields_is_not_kept(project):
    """Fields the prompt does not render count too: their JSON's length (a list of passages kept
    for a scorer, say), so the kept text stays within its bound."""
    records = [{"id": f"r{n}", "text": "short", "label": "bug", "passages": [chr(65 + n % 26) * 1000] * 50}
               for n in range(300)]  # 15M characters in lists
    write_records(project.root / "suites" / "data" / "tickets.jsonl", records)
    project.write_suite(base_suite())
    assert plan_run(project.suite_path).kept is None
    write_records(project.root / "suites" / "data" / "tickets.jsonl", records[:20])  # 1M: kept
    assert len(plan_run(project.suite_path).kept or []) == 20
