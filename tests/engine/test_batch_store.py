"""The run store's batch records: a request joins at most one live batch, opening a run never
re-queues what sits in one, collecting applies each line once, and an old store migrates."""

from __future__ import annotations

import sqlite3

from harness.engine.batch.base import BatchInfo, LineResult
from harness.engine.batch.batch_store import BatchStore, Settled
from harness.engine.providers.base import Completion
from harness.engine.states import RequestState
from harness.engine.store import NewRequest, RunStore
from harness.engine.store_schema import MIGRATIONS


def _store(tmp_path) -> RunStore:
    store = RunStore(tmp_path / "run.sqlite")
    store.add_requests(NewRequest(f"r{n}", f"i{n}", "fake", 0, {"prompt": f"p{n}"}) for n in range(4))
    return store


def _info(batch_id: str = "batch_1", status: str = "completed") -> BatchInfo:
    return BatchInfo(batch_id, status, ended=status == "completed", total=2, completed=2)


def test_a_request_joins_at_most_one_live_batch(tmp_path):
    store = _store(tmp_path)
    batches = BatchStore(store)
    first, joined = batches.plan("openai", "fake", [("r0", "r0"), ("r1", "r1")])
    second, joined_again = batches.plan("openai", "fake", [("r1", "r1"), ("r2", "r2")])
    assert joined == [("r0", "r0"), ("r1", "r1")]
    assert joined_again == [("r2", "r2")]  # r1 sits in the first chunk
    assert [request.request_id for _, request in batches.sendable("fake")] == ["r3"]
    assert store.state_counts()[RequestState.IN_BATCH] == 3


def test_opening_a_run_again_never_requeues_requests_in_a_live_batch(tmp_path):
    store = _store(tmp_path)
    batches = BatchStore(store)
    chunk_id, _ = batches.plan("openai", "fake", [("r0", "r0")])
    batches.record_file(batches.chunk(chunk_id), "file-1", 100)
    batches.record_batch(batches.chunk(chunk_id), _info(status="in_progress"))
    store.close()
    reopened = RunStore.existing(tmp_path)
    assert reopened.requeue_unfinished() == 0  # what a resume does first
    assert reopened.start_attempt("r0") is None  # the realtime engine cannot send it either
    [chunk] = BatchStore(reopened).chunks(open_only=True)
    assert (chunk.input_file_id, chunk.batch_id, chunk.status) == ("file-1", "batch_1", "in_progress")
    assert dict(reopened.db.execute("SELECT request_id, state FROM requests"))["r0"] == RequestState.IN_BATCH


def test_collecting_applies_each_line_once_and_leaves_unanswered_members_retryable(tmp_path):
    store = _store(tmp_path)
    batches = BatchStore(store)
    chunk_id, _ = batches.plan("openai", "fake", [("r0", "c0"), ("r1", "c1"), ("r2", "c2")])
    batches.record_batch(batches.chunk(chunk_id), _info())
    answer = LineResult("c0", completion=Completion("billing", 10, 1, "stop"))
    refused = LineResult("c1", error="HTTP 400: bad", status=400, final=True)
    settled = [Settled("r0", answer, [("r0", "accuracy", 1.0, True, {})], 0.25),
               Settled("r0", answer, [], 9.0),  # the same line twice: the second changes nothing
               Settled("r1", refused, [], None)]
    counts = batches.collect(batches.chunk(chunk_id), settled, "batch batch_1 expired with no result")
    assert counts == {RequestState.SUCCEEDED: 1, RequestState.FAILED_TERMINAL: 1, RequestState.FAILED_RETRYABLE: 1}
    rows = {row["request_id"]: row for row in store.db.execute("SELECT * FROM requests")}
    assert (rows["r0"]["state"], rows["r0"]["output"], rows["r0"]["cost_usd"]) == ("succeeded", "billing", 0.25)
    assert (rows["r1"]["state"], rows["r2"]["state"]) == ("failed_terminal", "failed_retryable")
    assert rows["r2"]["error"] == "batch batch_1 expired with no result"
    assert store.scores_by_request()["r0"]["accuracy"]["value"] == 1.0
    attempts = store.db.execute("SELECT request_id, status, outcome FROM attempts ORDER BY request_id").fetchall()
    assert [tuple(row) for row in attempts] == [("r0", 200, "succeeded"), ("r1", 400, "failed_terminal"),
                                                ("r2", None, "failed_retryable")]
    assert BatchStore(store).chunks(open_only=True) == []
    # A failed_retryable request can go into a new batch; a succeeded one never.
    _, joined = batches.plan("openai", "fake", [("r0", "r0"), ("r2", "r2")])
    assert joined == [("r2", "r2")]


def test_a_store_of_schema_5_gains_the_batch_tables(tmp_path):
    path = tmp_path / "run.sqlite"
    old = sqlite3.connect(path)
    old.executescript("".join(MIGRATIONS[:5]) + "PRAGMA user_version=5;")
    old.close()
    store = RunStore(path)
    assert store.has_table("provider_batches") and store.has_table("batch_members")
    assert store.has_table("provider_files")
    assert store.db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
