"""Group commit: changes queued in one turn of the event loop share one transaction, and each
worker goes on only once its change is committed (seen by another connection to the file)."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from harness.engine.commits import GroupCommit
from harness.engine.providers.base import Completion
from harness.engine.store import NewRequest, RunStore


def _store(tmp_path: Path, count: int) -> RunStore:
    store = RunStore(tmp_path / RunStore.FILENAME)
    store.add_requests(NewRequest(f"r{n}", f"i{n}", "t", 0, {"prompt": f"p{n}"}) for n in range(count))
    return store


def _committed_state(path: Path, request_id: str) -> str:
    """The request's state as another process would read it: only what was committed."""
    with sqlite3.connect(path) as other:
        return other.execute("SELECT state FROM requests WHERE request_id = ?", (request_id,)).fetchone()[0]


def test_changes_of_one_turn_share_one_commit_and_are_committed_before_the_worker_goes_on(tmp_path):
    store = _store(tmp_path, 8)
    commits: list[str] = []
    store.db.set_trace_callback(lambda sql: commits.append(sql) if sql == "COMMIT" else None)
    group = GroupCommit(store)
    seen: dict[str, str] = {}

    async def worker(request_id: str) -> None:
        attempt = await group.start_attempt(request_id)
        assert attempt is not None and attempt.number == 1
        seen[request_id] = _committed_state(store.path, request_id)  # before it would send
        assert await group.succeed(request_id, attempt.number, Completion("ok", 3, 1, "stop"), 5.0,
                                   [(request_id, "exact", 1.0, True, {})])
        seen[request_id] += " " + _committed_state(store.path, request_id)  # before it would report

    async def run() -> None:
        await asyncio.gather(*(worker(f"r{n}") for n in range(8)))

    asyncio.run(run())
    assert seen == {f"r{n}": "processing succeeded" for n in range(8)}
    assert len(commits) == 2  # eight starts in one transaction, eight successes in another
    assert store.scores_of([f"r{n}" for n in range(8)]).keys() == {f"r{n}" for n in range(8)}
    store.close()


def test_a_request_not_in_a_state_to_send_gets_none_in_a_batch_with_others(tmp_path):
    store = _store(tmp_path, 2)
    first = store.start_attempt("r0")  # in flight elsewhere
    assert first is not None
    group = GroupCommit(store)

    async def run() -> list:
        return await asyncio.gather(group.start_attempt("r0"), group.start_attempt("r1"))

    again, other = asyncio.run(run())
    assert again is None
    assert other is not None and other.number == 1
    store.close()


def test_a_failed_commit_fails_every_change_of_the_batch_and_stores_none(tmp_path):
    store = _store(tmp_path, 2)
    group = GroupCommit(store)
    attempts = [store.start_attempt("r0"), store.start_attempt("r1")]
    # A completion SQLite cannot bind makes the second change, and so the whole batch, fail.
    unbindable = Completion(text=object(), input_tokens=1, output_tokens=1)  # type: ignore[arg-type]

    async def run() -> list:
        return await asyncio.gather(
            group.succeed("r0", attempts[0].number, Completion("ok", 1, 1, "stop"), 1.0),
            group.succeed("r1", attempts[1].number, unbindable, 1.0), return_exceptions=True)

    results = asyncio.run(run())
    assert all(isinstance(result, sqlite3.Error) for result in results)
    assert [_committed_state(store.path, rid) for rid in ("r0", "r1")] == ["processing", "processing"]
    assert not store.db.in_transaction
    store.close()


def test_flush_commits_what_is_queued_when_the_engine_stops(tmp_path):
    store = _store(tmp_path, 1)
    group = GroupCommit(store)
    attempt = store.start_attempt("r0")
    assert attempt is not None

    async def run() -> None:
        waiting = asyncio.ensure_future(group.succeed("r0", attempt.number, Completion("ok"), 1.0))
        await asyncio.sleep(0)  # queued, not yet committed
        group.flush()
        assert await waiting is True

    asyncio.run(run())
    assert _committed_state(store.path, "r0") == "succeeded"
    store.close()


@pytest.mark.parametrize("count", [1, 50])
def test_batches_of_any_size_store_every_change(tmp_path, count):
    store = _store(tmp_path, count)
    group = GroupCommit(store)

    async def one(n: int) -> bool:
        attempt = await group.start_attempt(f"r{n}")
        assert attempt is not None
        return await group.succeed(f"r{n}", attempt.number, Completion(f"out{n}"), 1.0)

    async def run() -> list[bool]:
        return await asyncio.gather(*(one(n) for n in range(count)))

    assert asyncio.run(run()) == [True] * count
    assert store.state_counts()["succeeded"] == count
    store.close()
