"""The run store's record of provider batches: what was planned, uploaded, created and collected.

Over the run store's own connection (one file, one transaction at a time). The order of commits
is what makes a batch crash-safe:

1. plan: the chunk's row and its members are inserted and the members move to `in_batch`, in
   one transaction, before anything is uploaded: from then on no resume re-queues them and no
   other chunk takes them, so a request is never in two live batches;
2. upload: the input file's ID is committed as soon as the provider returns it;
3. create: the batch ID is committed as soon as the provider returns it;
4. collect: every result line of the batch, the scores, and the members without a line, in one
   transaction; a process killed while collecting collects the batch again from the start.

A chunk whose process died between two steps is finished from the step it reached (see
harness/engine/batch/submit.py), never planned again.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from harness.engine.batch.base import BatchInfo, ChunkKey, LineResult
from harness.engine.states import SENDABLE_STATES, AttemptOutcome, RequestState
from harness.engine.store import RunStore, ScoreRow, StoredRequest, _stored

PLANNED, UPLOADED = "planned", "uploaded"
"""Local chunk statuses before the provider has a batch; after it, the provider's own status."""
UNRESOLVED = "unresolved"
"""A chunk whose create may have reached the provider, with batches that may be its own still
running: waiting to be identified by their results (never adopted, cancelled or created again
until then)."""
ABANDONED = "abandoned"
"""A chunk that could not be made into a batch (its members went back to be sent again)."""


@dataclass(frozen=True)
class Chunk:
    """One planned provider batch (a row of provider_batches)."""

    chunk: int
    provider: str
    target: str
    planned_at: float
    input_file_id: str | None
    batch_id: str | None
    status: str
    total: int
    completed: int
    failed: int
    created_at: float | None
    expires_at: float | None
    output_file_id: str | None
    error_file_id: str | None
    collected: bool


@dataclass(frozen=True)
class Settled:
    """What a collected line did to its request."""

    request_id: str
    line: LineResult
    scores: list[ScoreRow]
    cost_usd: float | None


class BatchStore:
    def __init__(self, store: RunStore) -> None:
        self.store = store
        self.db = store.db

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # -- what is left to put into batches -----------------------------------------------------
    def sendable(self, target: str, after: int = 0, size: int = 2000) -> list[tuple[int, StoredRequest]]:
        """Up to `size` of the target's requests waiting to be sent (queued or failed_retryable),
        in run order after rowid `after`, with their rowids (a page: no cursor is left open)."""
        rows = self.db.execute(
            f"SELECT rowid AS position, * FROM requests WHERE target = ? AND rowid > ?"
            f" AND state IN ({','.join('?' * len(SENDABLE_STATES))}) ORDER BY rowid LIMIT ?",
            (target, after, *SENDABLE_STATES, size)).fetchall()
        return [(row["position"], _stored(row)) for row in rows]

    # -- the steps of a chunk -------------------------------------------------------------------
    def plan(self, provider: str, target: str, members: list[tuple[str, str]]) -> tuple[int, list[tuple[str, str]]]:
        """Records a chunk of (request_id, custom_id) and moves its requests to in_batch, in one
        transaction. Only requests still waiting to be sent join it; returns the chunk and them."""
        now = time.time()
        with self._transaction():
            chunk = self.db.execute(
                "INSERT INTO provider_batches(provider, target, planned_at, status, total, updated_at)"
                " VALUES (?, ?, ?, ?, 0, ?) RETURNING chunk", (provider, target, now, PLANNED, now)).fetchone()[0]
            joined = []
            for request_id, custom_id in members:
                moved = self.db.execute(
                    f"UPDATE requests SET state = ?, updated_at = ? WHERE request_id = ?"
                    f" AND state IN ({','.join('?' * len(SENDABLE_STATES))})",
                    (RequestState.IN_BATCH, now, request_id, *SENDABLE_STATES)).rowcount
                if moved:
                    joined.append((request_id, custom_id))
            self.db.executemany("INSERT INTO batch_members(chunk, request_id, custom_id) VALUES (?, ?, ?)",
                                [(chunk, request_id, custom_id) for request_id, custom_id in joined])
            self.db.execute("UPDATE provider_batches SET total = ? WHERE chunk = ?", (len(joined), chunk))
            if not joined:
                self.db.execute("UPDATE provider_batches SET status = ?, collected = 1 WHERE chunk = ?",
                                (ABANDONED, chunk))
        return chunk, joined

    def record_file(self, chunk: Chunk, file_id: str, size: int) -> None:
        now = time.time()
        with self._transaction():
            self.db.execute("INSERT OR IGNORE INTO provider_files(file_id, provider, purpose, target, bytes, created_at)"
                            " VALUES (?, ?, 'batch', ?, ?, ?)", (file_id, chunk.provider, chunk.target, size, now))
            self.db.execute("UPDATE provider_batches SET input_file_id = ?, status = ?, updated_at = ? WHERE chunk = ?",
                            (file_id, UPLOADED, now, chunk.chunk))

    def mark_unresolved(self, chunk: Chunk) -> None:
        with self._transaction():
            self.db.execute("UPDATE provider_batches SET status = ?, updated_at = ? WHERE chunk = ?",
                            (UNRESOLVED, time.time(), chunk.chunk))

    def key(self, chunk: Chunk) -> ChunkKey:
        """What identifies the chunk's batch at the provider (for `find`)."""
        return ChunkKey(chunk.input_file_id, chunk.planned_at, chunk.total, frozenset(self.members(chunk)),
                        frozenset(self.known_batch_ids()))

    def record_batch(self, chunk: Chunk, info: BatchInfo) -> None:
        """The batch the provider created (or one found made from the chunk's file), or its news."""
        with self._transaction():
            self.db.execute(
                "UPDATE provider_batches SET batch_id = ?, status = ?, completed = ?, failed = ?,"
                " created_at = COALESCE(?, created_at), expires_at = COALESCE(?, expires_at),"
                " output_file_id = COALESCE(?, output_file_id), error_file_id = COALESCE(?, error_file_id),"
                " updated_at = ? WHERE chunk = ?",
                (info.batch_id, info.status, info.completed, info.failed, info.created_at, info.expires_at,
                 info.output_file_id, info.error_file_id, time.time(), chunk.chunk))

    def abandon(self, chunk: Chunk, error: str, final: bool) -> int:
        """A chunk that never became a batch (the provider refused it): its members leave in_batch,
        failed (retryable unless `final`). Returns how many."""
        state = RequestState.FAILED_TERMINAL if final else RequestState.FAILED_RETRYABLE
        now = time.time()
        with self._transaction():
            moved = self.db.execute(
                "UPDATE requests SET state = ?, error = ?, updated_at = ? WHERE state = ? AND request_id IN"
                " (SELECT request_id FROM batch_members WHERE chunk = ?)",
                (state, error, now, RequestState.IN_BATCH, chunk.chunk)).rowcount
            self.db.execute("UPDATE batch_members SET outcome = ? WHERE chunk = ? AND outcome IS NULL",
                            (state, chunk.chunk))
            self.db.execute("UPDATE provider_batches SET status = ?, collected = 1, updated_at = ? WHERE chunk = ?",
                            (ABANDONED if chunk.batch_id is None else chunk.status, now, chunk.chunk))
        return moved

    def collect(self, chunk: Chunk, settled: list[Settled], leftover_error: str, *,
                finish: bool = True) -> dict[str, int]:
        """Every result line of a finished batch in one transaction: succeeded lines with their
        scores and batch-priced cost, failed lines retryable or terminal, and members with no
        line at all (expired, cancelled, a batch that failed) failed_retryable with
        `leftover_error`. Without `finish` (part of the results could not be read) only the
        lines are applied: the others stay in_batch and the chunk stays open, to be collected
        again (lines already applied change nothing). Returns the count of each outcome."""
        now = time.time()
        counts: dict[str, int] = {}
        with self._transaction():
            for done in settled:
                outcome = self._settle(chunk, done, now)
                if outcome is not None:
                    counts[outcome] = counts.get(outcome, 0) + 1
            if not finish:
                return counts
            leftover = [row[0] for row in self.db.execute(
                "SELECT m.request_id FROM batch_members m JOIN requests r ON r.request_id = m.request_id"
                " WHERE m.chunk = ? AND m.outcome IS NULL AND r.state = ?", (chunk.chunk, RequestState.IN_BATCH))]
            for request_id in leftover:
                self._attempt(chunk, request_id, AttemptOutcome.FAILED_RETRYABLE, None, leftover_error, now)
                self.db.execute("UPDATE requests SET state = ?, error = ?, updated_at = ? WHERE request_id = ?",
                                (RequestState.FAILED_RETRYABLE, leftover_error, now, request_id))
                self.db.execute("UPDATE batch_members SET outcome = ? WHERE chunk = ? AND request_id = ?",
                                (RequestState.FAILED_RETRYABLE, chunk.chunk, request_id))
            if leftover:
                counts[RequestState.FAILED_RETRYABLE] = counts.get(RequestState.FAILED_RETRYABLE, 0) + len(leftover)
            self.db.execute("UPDATE provider_batches SET collected = 1, updated_at = ? WHERE chunk = ?",
                            (now, chunk.chunk))
        return counts

    def _settle(self, chunk: Chunk, done: Settled, now: float) -> str | None:
        """One line: applies only to a member of this chunk still in_batch (a line twice, or a
        custom_id the chunk does not hold, changes nothing)."""
        member = self.db.execute(
            "SELECT 1 FROM batch_members m JOIN requests r ON r.request_id = m.request_id WHERE m.chunk = ?"
            " AND m.request_id = ? AND m.outcome IS NULL AND r.state = ?",
            (chunk.chunk, done.request_id, RequestState.IN_BATCH)).fetchone()
        if member is None:
            return None
        line = done.line
        if line.completion is not None:
            completion = line.completion
            self._attempt(chunk, done.request_id, AttemptOutcome.SUCCEEDED, 200, None, now)
            self.db.execute(
                "UPDATE requests SET state = ?, output = ?, latency_ms = NULL, input_tokens = ?, output_tokens = ?,"
                " finish_reason = ?, error = NULL, cost_usd = ?, origin = 'sent', updated_at = ?"
                " WHERE request_id = ?",
                (RequestState.SUCCEEDED, completion.text, completion.input_tokens, completion.output_tokens,
                 completion.finish_reason, done.cost_usd, now, done.request_id))
            self.db.executemany(
                "INSERT OR REPLACE INTO scores(request_id, scorer, value, passed, detail) VALUES (?, ?, ?, ?, ?)",
                [(rid, scorer, value, None if passed is None else int(passed), json.dumps(detail, default=str))
                 for rid, scorer, value, passed, detail in done.scores])
            outcome = RequestState.SUCCEEDED
        else:
            outcome = RequestState.FAILED_TERMINAL if line.final else RequestState.FAILED_RETRYABLE
            self._attempt(chunk, done.request_id, AttemptOutcome(outcome), line.status, line.error, now)
            self.db.execute("UPDATE requests SET state = ?, error = ?, updated_at = ? WHERE request_id = ?",
                            (outcome, line.error, now, done.request_id))
        self.db.execute("UPDATE batch_members SET outcome = ? WHERE chunk = ? AND request_id = ?",
                        (outcome, chunk.chunk, done.request_id))
        return outcome

    def _attempt(self, chunk: Chunk, request_id: str, outcome: str, status: int | None, error: str | None,
                 now: float) -> None:
        """The batch line as an attempt of its request: attempt numbers go on from the realtime ones."""
        row = self.db.execute(
            "UPDATE requests SET attempts = attempts + 1, round_attempts = round_attempts + 1 WHERE request_id = ?"
            " RETURNING attempts, retry_round", (request_id,)).fetchone()
        self.db.execute(
            "INSERT INTO attempts(request_id, attempt, retry_round, started_at, ended_at, outcome, status, error)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (request_id, row[0], row[1], chunk.created_at or chunk.planned_at, now, outcome, status, error))

    # -- reading ---------------------------------------------------------------------------------
    def chunks(self, *, open_only: bool = False) -> list[Chunk]:
        query = "SELECT * FROM provider_batches" + (" WHERE collected = 0" if open_only else "") + " ORDER BY chunk"
        return [_chunk(row) for row in self.db.execute(query)]

    def chunk(self, number: int) -> Chunk:
        return _chunk(self.db.execute("SELECT * FROM provider_batches WHERE chunk = ?", (number,)).fetchone())

    def members(self, chunk: Chunk) -> dict[str, str]:
        """custom_id -> request_id of the chunk's members."""
        return {row[0]: row[1] for row in self.db.execute(
            "SELECT custom_id, request_id FROM batch_members WHERE chunk = ?", (chunk.chunk,))}

    def member_requests(self, chunk: Chunk, size: int = 2000) -> Iterator[list[tuple[str, StoredRequest]]]:
        """(custom_id, request) of the chunk's members, in the order they were planned."""
        cursor = self.db.execute(
            "SELECT m.custom_id, r.* FROM batch_members m JOIN requests r ON r.request_id = m.request_id"
            " WHERE m.chunk = ? ORDER BY m.rowid", (chunk.chunk,))
        while rows := cursor.fetchmany(size):
            yield [(row["custom_id"], _stored(row)) for row in rows]

    def known_batch_ids(self) -> set[str]:
        return {row[0] for row in self.db.execute("SELECT batch_id FROM provider_batches WHERE batch_id IS NOT NULL")}

    def cost_of(self, chunk: Chunk) -> float | None:
        row = self.db.execute(
            "SELECT COUNT(r.cost_usd), COALESCE(SUM(r.cost_usd), 0) FROM batch_members m JOIN requests r"
            " ON r.request_id = m.request_id WHERE m.chunk = ? AND m.outcome = ?",
            (chunk.chunk, RequestState.SUCCEEDED)).fetchone()
        return float(row[1]) if row[0] else None


def has_batches(store: RunStore) -> bool:
    """Whether the store has the batch tables (a store of an older harness has none: no batches)."""
    return store.has_table("provider_batches")


def _chunk(row) -> Chunk:
    return Chunk(chunk=row["chunk"], provider=row["provider"], target=row["target"], planned_at=row["planned_at"],
                 input_file_id=row["input_file_id"], batch_id=row["batch_id"], status=row["status"],
                 total=row["total"], completed=row["completed"], failed=row["failed"], created_at=row["created_at"],
                 expires_at=row["expires_at"], output_file_id=row["output_file_id"],
                 error_file_id=row["error_file_id"], collected=bool(row["collected"]))
