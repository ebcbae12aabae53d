"""The run store's state machine and its schema migrations."""

from __future__ import annotations

from harness.engine.providers.base import Completion
from harness.engine.store import MIGRATIONS, NewRequest, RunStore


def _store(tmp_path) -> RunStore:
    store = RunStore(tmp_path / "run.sqlite")
    store.add_requests([NewRequest(f"r{n}", f"i{n}", "t", 0, {"prompt": "p"}) for n in range(3)])
    return store


def test_transitions_are_committed_and_visible_to_another_connection(tmp_path):
    store = _store(tmp_path)
    attempt = store.start_attempt("r0")
    other = RunStore(tmp_path / "run.sqlite")  # a second reader sees committed state only
    assert attempt == 1 and other.state_counts()["processing"] == 1
    store.fail("r0", attempt, final=False, error="HTTP 429", status=429)
    assert other.state_counts()["failed_retryable"] == 1
    attempt = store.start_attempt("r0")
    store.succeed("r0", attempt, Completion("out", 10, 2), 12.5)
    [row] = [r for r in other.requests() if r.request_id == "r0"]
    assert (row.state, row.attempts, row.output, row.input_tokens) == ("succeeded", 2, "out", 10)
    assert other.db.execute("SELECT COUNT(*) FROM attempts WHERE request_id='r0'").fetchone()[0] == 2


def test_adding_the_same_requests_again_changes_nothing(tmp_path):
    store = _store(tmp_path)
    store.succeed("r1", store.start_attempt("r1"), Completion("x"), 1.0)
    assert store.add_requests([NewRequest("r1", "i1", "t", 0, {})]) == 0
    assert store.state_counts()["succeeded"] == 1


def test_requeue_unfinished_and_failed(tmp_path):
    store = _store(tmp_path)
    store.start_attempt("r0")
    store.fail("r1", store.start_attempt("r1"), final=True, error="HTTP 400", status=400)
    assert store.requeue_unfinished() == 1
    assert store.unfinished_ids() == {"r0", "r2"}
    assert store.requeue_failed() == 1
    assert store.unfinished_ids() == {"r0", "r1", "r2"}


def test_migrations_run_once(tmp_path):
    _store(tmp_path).close()
    reopened = RunStore(tmp_path / "run.sqlite")
    assert reopened.db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    assert reopened.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert len(list(reopened.requests())) == 3
