"""The run store's state machine, its guarded transitions and its schema migrations."""

from __future__ import annotations

import sqlite3

import pytest

from harness.engine.providers.base import Completion, ProviderError
from harness.engine.retry import RetryPolicy
from harness.engine.states import RequestState
from harness.engine.store import NewRequest, RunStore, StoredItem
from harness.engine.store_schema import _MIGRATION_1, MIGRATIONS
from harness.errors import UserError


def _store(tmp_path) -> RunStore:
    store = RunStore(tmp_path / "run.sqlite")
    store.add_requests([NewRequest(f"r{n}", f"i{n}", "t", 0, {"prompt": "p"}) for n in range(3)])
    return store


def _attempts(store: RunStore, request_id: str) -> list[tuple]:
    return [tuple(row) for row in store.db.execute(
        "SELECT attempt, retry_round, outcome, status FROM attempts WHERE request_id = ? ORDER BY attempt",
        (request_id,))]


def test_transitions_are_committed_and_visible_to_another_connection(tmp_path):
    store = _store(tmp_path)
    attempt = store.start_attempt("r0")
    other = RunStore(tmp_path / "run.sqlite")  # a second reader sees committed state only
    assert attempt.number == 1 and other.state_counts()[RequestState.PROCESSING] == 1
    assert store.fail("r0", attempt.number, final=False, error="HTTP 429", status=429)
    assert other.state_counts()[RequestState.FAILED_RETRYABLE] == 1
    attempt = store.start_attempt("r0")
    assert store.succeed("r0", attempt.number, Completion("out", 10, 2), 12.5)
    [row] = [r for r in other.requests() if r.request_id == "r0"]
    assert (row.state, row.attempts, row.output, row.input_tokens) == ("succeeded", 2, "out", 10)
    assert other.db.execute("SELECT COUNT(*) FROM attempts WHERE request_id='r0'").fetchone()[0] == 2


def test_a_succeeded_request_never_changes_again(tmp_path):
    store = _store(tmp_path)
    first = store.start_attempt("r0")
    assert store.succeed("r0", first.number, Completion("right"), 1.0)
    # A second process (or a stale task) that still thinks it owns an attempt changes nothing.
    assert not store.fail("r0", first.number, final=True, error="HTTP 500", status=500)
    assert not store.succeed("r0", first.number, Completion("other"), 1.0)
    assert store.start_attempt("r0") is None  # and it cannot be sent again
    assert store.requeue_unfinished() == 0 and store.requeue_failed() == 0
    [row] = [r for r in store.requests() if r.request_id == "r0"]
    assert (row.state, row.output, row.attempts) == (RequestState.SUCCEEDED, "right", 1)
    assert _attempts(store, "r0") == [(1, 1, "succeeded", None)]


def test_only_the_attempt_in_flight_may_settle_a_request(tmp_path):
    store = _store(tmp_path)
    stale = store.start_attempt("r1")
    store.requeue_unfinished()  # the process holding it stopped: the attempt is abandoned
    current = store.start_attempt("r1")
    assert current.number == 2
    assert not store.succeed("r1", stale.number, Completion("late"), 1.0)
    assert store.unfinished_ids() == {"r0", "r1", "r2"}
    assert store.fail("r1", current.number, final=True, error="HTTP 400", status=400)
    assert _attempts(store, "r1") == [(1, 1, "abandoned", None), (2, 1, "failed_terminal", 400)]


def test_requeue_unfinished_only_touches_requests_in_flight(tmp_path):
    store = _store(tmp_path)
    store.start_attempt("r0")
    store.fail("r1", store.start_attempt("r1").number, final=True, error="HTTP 400", status=400)
    assert store.requeue_unfinished() == 1
    counts = store.state_counts()
    assert (counts[RequestState.QUEUED], counts[RequestState.FAILED_TERMINAL]) == (2, 1)
    assert store.db.execute("SELECT COUNT(*) FROM attempts WHERE ended_at IS NULL").fetchone()[0] == 0


def test_retry_rounds_keep_every_attempt_and_a_fresh_budget(tmp_path):
    store = _store(tmp_path)
    for _ in range(3):
        attempt = store.start_attempt("r0")
        store.fail("r0", attempt.number, final=attempt.in_round == 3, error="HTTP 503", status=503)
    assert store.requeue_failed() == 1
    again = store.start_attempt("r0")
    assert (again.number, again.in_round, again.retry_round) == (4, 1, 2)
    store.succeed("r0", again.number, Completion("ok"), 1.0)
    assert _attempts(store, "r0") == [(1, 1, "failed_retryable", 503), (2, 1, "failed_retryable", 503),
                                      (3, 1, "failed_terminal", 503), (4, 2, "succeeded", None)]
    [(retry_round, requeued)] = store.db.execute("SELECT retry_round, requeued FROM retry_rounds").fetchall()
    assert (retry_round, requeued) == (2, 1)


def test_a_store_of_the_first_schema_migrates_and_keeps_numbering(tmp_path):
    path = tmp_path / "run.sqlite"
    old = sqlite3.connect(path)
    old.executescript(_MIGRATION_1 + "PRAGMA user_version=1;")
    # The old --retry-failed reset `attempts` to 0 and then overwrote attempt 1: 2 and 3 remain.
    old.execute("INSERT INTO requests(request_id, item_id, target, sample_index, payload, state, attempts, updated_at)"
                " VALUES ('r0', 'i0', 't', 0, '{}', 'failed_terminal', 1, 0)")
    old.executemany("INSERT INTO attempts(request_id, attempt, started_at, ended_at, outcome) VALUES ('r0', ?, 0, 0,"
                    " 'failed_terminal')", [(1,), (2,), (3,)])
    old.commit()
    old.close()
    store = RunStore(path)
    assert store.db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    store.requeue_failed()
    assert store.start_attempt("r0").number == 4  # never reuses a stored attempt number
    assert store.items() == {}


def test_items_are_stored_whole_with_the_requests(tmp_path):
    store = RunStore(tmp_path / "run.sqlite")
    long_text = "x" * 500
    store.add_requests([NewRequest("r0", "i0", "t", 0, {})],
                       [StoredItem("i0", "data.jsonl:1", ("all", "hard"), "c1", {"text": long_text, "n": 3})])
    reader = RunStore.read_only(tmp_path / "run.sqlite")
    assert reader.items()["i0"] == StoredItem("i0", "data.jsonl:1", ("all", "hard"), "c1", {"text": long_text, "n": 3})


def test_migrations_run_once(tmp_path):
    _store(tmp_path).close()
    reopened = RunStore(tmp_path / "run.sqlite")
    assert reopened.db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    assert reopened.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert len(list(reopened.requests())) == 3


@pytest.mark.parametrize("damage", ["garbage", "empty", "missing"])
def test_a_damaged_store_is_a_user_error_naming_it(tmp_path, damage):
    _store(tmp_path).close()
    path = tmp_path / "run.sqlite"
    if damage == "garbage":
        path.write_bytes(b"this is not a database" * 100)
    elif damage == "empty":
        path.write_bytes(b"")
    else:
        path.unlink()
    with pytest.raises(UserError) as raised:
        RunStore.existing(tmp_path)
    assert str(path) in str(raised.value) and "--new" in str(raised.value)
    assert damage == "missing" or path.stat().st_size < 3000  # nothing was written into it


def test_an_abandoned_attempt_does_not_use_up_the_retry_budget(tmp_path):
    """An attempt cut off by a kill got no answer: the request still has all its retries."""
    max_retries = 2
    policy = RetryPolicy(max_retries=max_retries, base_s=0.01, max_s=0.05)
    RunStore(tmp_path / "run.sqlite").add_requests([NewRequest("r0", "i0", "t", 0, {"prompt": "p"})])
    store = RunStore(tmp_path / "run.sqlite")
    assert store.start_attempt("r0").in_round == 1
    store.close()  # killed with the attempt in flight
    store = RunStore(tmp_path / "run.sqlite")
    assert store.requeue_unfinished() == 1
    transient = ProviderError("HTTP 500", kind="transient", status=500)
    for n in range(1, max_retries + 1):  # the allowed retries fail transiently: each is retried again
        attempt = store.start_attempt("r0")
        assert attempt.in_round == n
        retry = policy.should_retry(transient, attempt.in_round)
        assert retry
        assert store.fail("r0", attempt.number, final=not retry, error="HTTP 500", status=500)
        assert store.state_counts()[RequestState.FAILED_RETRYABLE] == 1
    last = store.start_attempt("r0")  # the budget's last attempt is still sent
    assert (last.number, last.in_round) == (max_retries + 2, max_retries + 1)
    assert not policy.should_retry(transient, last.in_round)
    assert [a[2] for a in _attempts(store, "r0")] == ["abandoned"] + ["failed_retryable"] * max_retries + [None]


def test_rate_limited_attempts_of_the_round_are_counted_for_the_budget(tmp_path):
    """A resumed request's earlier 429s for pace spent no retry budget: the store counts them."""
    store = RunStore.in_folder(tmp_path)
    store.add_requests([NewRequest("r0", "i0", "t", 0, {})])
    for status, final in ((429, False), (429, False), (503, False)):
        attempt = store.start_attempt("r0")
        store.fail("r0", attempt.number, final=final, error=f"HTTP {status}", status=status)
    assert store.rate_limited_attempts("r0") == 2
    attempt = store.start_attempt("r0")
    store.fail("r0", attempt.number, final=True, error="HTTP 429: insufficient_quota", status=429)
    store.requeue_failed()  # a new round starts from zero
    assert store.rate_limited_attempts("r0") == 0
