"""The run store: one SQLite file (WAL) per run, one row per request.

Every state change is its own committed transaction before anyone is told about it, so a
run killed at any instant resumes from exactly what the file says. WAL with
synchronous=NORMAL survives a killed process (only an OS crash can lose the last commits).
Schema changes are plain migration scripts applied in order (PRAGMA user_version); old
stores open and migrate.

Transitions are guarded in SQL: an attempt only ends the request's state if it is the
attempt in flight, and a succeeded request never changes again, whatever another process
or a stale task tries.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
from collections.abc import Collection, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.engine.providers.base import Completion
from harness.engine.states import FINAL_STATES, AttemptOutcome, RequestState
from harness.engine.store_schema import MIGRATIONS
from harness.errors import UserError

# Kept for modules that import the names; RequestState is the one definition.
QUEUED, PROCESSING, SUCCEEDED = RequestState.QUEUED, RequestState.PROCESSING, RequestState.SUCCEEDED
FAILED_RETRYABLE, FAILED_TERMINAL = RequestState.FAILED_RETRYABLE, RequestState.FAILED_TERMINAL
STATES = tuple(RequestState)

_STORE_DAMAGED_HINT = ("restore run.sqlite from a backup and rerun, or start over with `--new` "
                       "(a new run re-sends every request)")


@dataclass(frozen=True)
class StoredRequest:
    request_id: str
    item_id: str
    target: str
    sample_index: int
    state: RequestState
    attempts: int
    payload: dict[str, Any]
    output: str | None
    latency_ms: float | None
    input_tokens: int | None
    output_tokens: int | None
    finish_reason: str | None
    error: str | None
    cost_usd: float | None = None
    origin: str = "sent"
    """sent, cache (the shared response cache) or duplicate (another request of the run, same body)."""


@dataclass(frozen=True)
class NewRequest:
    request_id: str
    item_id: str
    target: str
    sample_index: int
    payload: dict[str, Any]


@dataclass(frozen=True)
class StoredItem:
    """An item as the run saw it: every field whole, its slices and cluster."""

    item_id: str
    location: str
    slices: tuple[str, ...]
    cluster: str | None
    fields: dict[str, Any]


@dataclass(frozen=True)
class Attempt:
    """An attempt in flight: `number` grows for the request's whole life, `in_round` restarts
    with each --retry-failed round and is what the retry budget counts."""

    request_id: str
    number: int
    in_round: int
    retry_round: int


@dataclass(frozen=True)
class TerminalFailure:
    """A failed_terminal request's last attempt: its HTTP status (None: no HTTP reply) and error,
    and how many attempts its last retry round made."""

    request_id: str
    status: int | None
    error: str | None
    round_attempts: int


ScoreRow = tuple[str, str, float, "bool | None", dict[str, Any]]


class RunStore:
    FILENAME = "run.sqlite"
    _in_batch = False

    def __init__(self, path: Path, *, must_exist: bool = False) -> None:
        """Opens (creating it unless must_exist) and migrates the store; a file SQLite cannot
        read is a UserError naming it."""
        self.path = path
        uri = f"file:{path}?mode=rw" if must_exist else f"file:{path}"
        try:
            self.db = _connect(uri)
        except sqlite3.DatabaseError as exc:
            raise _damaged(path, exc) from None
        try:
            if must_exist:
                _check_intact(self.db, path)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self._migrate()
        except (sqlite3.DatabaseError, UserError) as exc:
            self.db.close()
            raise exc if isinstance(exc, UserError) else _damaged(path, exc) from None

    @classmethod
    def in_folder(cls, folder: Path) -> RunStore:
        return cls(folder / cls.FILENAME)

    @classmethod
    def existing(cls, folder: Path) -> RunStore:
        """The store of a run being resumed: missing, empty or unreadable is a UserError."""
        path = folder / cls.FILENAME
        if not path.is_file():
            raise UserError("the run store is missing: it held which requests were sent and their results",
                            file=str(path), hint=_STORE_DAMAGED_HINT)
        return cls(path, must_exist=True)

    @classmethod
    def read_only(cls, path: Path) -> RunStore:
        """For readers (comparisons): no migration, no write, no lock on a run another process writes."""
        store = cls.__new__(cls)
        store.path = path
        try:
            store.db = _connect(f"file:{path}?mode=ro")
            store.db.execute("PRAGMA query_only=1")
            store.db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
        except sqlite3.DatabaseError as exc:
            raise _damaged(path, exc) from None
        return store

    def close(self) -> None:
        self.db.close()

    def _migrate(self) -> None:
        current = self.db.execute("PRAGMA user_version").fetchone()[0]
        for number, script in enumerate(MIGRATIONS[current:], start=current + 1):
            # executescript commits on its own, so BEGIN/COMMIT are part of the script.
            self.db.executescript(f"BEGIN IMMEDIATE; {script}; PRAGMA user_version={number}; COMMIT;")

    def _transaction(self):
        return _Transaction(self.db, joined=self._in_batch)

    @contextmanager
    def batch(self) -> Iterator[None]:
        """One transaction for several changes (a group commit): the methods called inside join it,
        and all are committed when it ends, or none. Nobody may be told of any before it ends."""
        with self._transaction():
            self._in_batch = True
            try:
                yield
            finally:
                self._in_batch = False

    @contextmanager
    def reading(self) -> Iterator[None]:
        """Reads inside see one committed state of the store, however many queries they make,
        while another process goes on writing it (a snapshot of a run in progress)."""
        if self.db.in_transaction:
            yield
            return
        self.db.execute("BEGIN")
        try:
            yield
        finally:
            self.db.execute("COMMIT")

    def has_table(self, name: str) -> bool:
        return self.db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                               (name,)).fetchone() is not None

    # -- metadata -------------------------------------------------------------------------
    def set_meta(self, key: str, value: Any) -> None:
        with self._transaction():
            self.db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, json.dumps(value)))

    def get_meta(self, key: str, default: Any = None) -> Any:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    def request_cancel(self) -> None:
        """Asks the process running this run (if any) to stop sending: `evalbatch cancel`."""
        self.set_meta("cancel_requested", time.time())

    def cancel_requested(self) -> bool:
        return self.get_meta("cancel_requested") is not None

    def clear_cancel(self) -> None:
        with self._transaction():
            self.db.execute("DELETE FROM meta WHERE key = 'cancel_requested'")

    # -- requests -------------------------------------------------------------------------
    def add_requests(self, requests: Iterable[NewRequest], items: Iterable[StoredItem] = ()) -> int:
        """Inserts requests not stored yet as queued, with their items, in one transaction;
        returns how many requests were new."""
        now = time.time()
        with self._transaction():
            self.db.executemany(
                "INSERT OR IGNORE INTO items(item_id, location, slices, cluster, fields) VALUES (?, ?, ?, ?, ?)",
                [(i.item_id, i.location, json.dumps(list(i.slices)), i.cluster, json.dumps(i.fields, default=str))
                 for i in items])
            before = self.db.total_changes
            self.db.executemany(
                "INSERT OR IGNORE INTO requests(request_id, item_id, target, sample_index, payload, state, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(r.request_id, r.item_id, r.target, r.sample_index, json.dumps(r.payload), QUEUED, now)
                 for r in requests])
            return self.db.total_changes - before

    def start_attempt(self, request_id: str) -> Attempt | None:
        """queued/failed_retryable -> processing. None when the request is in no state to be
        sent (it finished, or is in flight elsewhere): the caller must not send it."""
        now = time.time()
        with self._transaction():
            row = self.db.execute(
                "UPDATE requests SET state = ?, attempts = attempts + 1, round_attempts = round_attempts + 1,"
                " updated_at = ? WHERE request_id = ? AND state IN (?, ?)"
                " RETURNING attempts, round_attempts, retry_round",
                (PROCESSING, now, request_id, QUEUED, FAILED_RETRYABLE)).fetchone()
            if row is None:
                return None
            # A plain INSERT: an attempt number is never reused, so an old row is never overwritten.
            self.db.execute("INSERT INTO attempts(request_id, attempt, retry_round, started_at) VALUES (?, ?, ?, ?)",
                            (request_id, row[0], row[2], now))
        return Attempt(request_id, row[0], row[1], row[2])

    def succeed(self, request_id: str, attempt: int, completion: Completion, latency_ms: float,
                scores: Iterable[ScoreRow] = (), cost_usd: float | None = None) -> bool:
        """Applies only to the attempt in flight; False (and nothing changed) otherwise.
        Scores are committed with the output, so a run killed afterwards can still be compared."""
        now = time.time()
        with self._transaction():
            changed = self.db.execute(
                "UPDATE requests SET state = ?, output = ?, latency_ms = ?, input_tokens = ?, output_tokens = ?,"
                " finish_reason = ?, error = NULL, cost_usd = ?, origin = 'sent', updated_at = ?"
                " WHERE request_id = ? AND state = ? AND attempts = ?",
                (SUCCEEDED, completion.text, latency_ms, completion.input_tokens, completion.output_tokens,
                 completion.finish_reason, cost_usd, now, request_id, PROCESSING, attempt)).rowcount
            if changed:
                self._end_attempt(request_id, attempt, AttemptOutcome.SUCCEEDED, None, None, now)
                self._save_scores(scores)
        return bool(changed)

    def reuse(self, request_id: str, completion: Completion, origin: str, scores: Iterable[ScoreRow] = (),
              cost_usd: float | None = 0.0) -> bool:
        """A request answered without sending it (origin 'cache' or 'duplicate'): queued ->
        succeeded, costing nothing (cost_usd None: the target's price is unknown, so its spend stays
        unknown rather than $0). False (nothing changed) when it is not waiting to be sent."""
        with self._transaction():
            changed = self.db.execute(
                "UPDATE requests SET state = ?, output = ?, input_tokens = ?, output_tokens = ?, finish_reason = ?,"
                " error = NULL, cost_usd = ?, origin = ?, updated_at = ? WHERE request_id = ? AND state IN (?, ?)",
                (SUCCEEDED, completion.text, completion.input_tokens, completion.output_tokens,
                 completion.finish_reason, cost_usd, origin, time.time(), request_id, QUEUED, FAILED_RETRYABLE)).rowcount
            if changed:
                self._save_scores(scores)
        return bool(changed)

    def fail(self, request_id: str, attempt: int, *, final: bool, error: str, status: int | None) -> bool:
        """final=False: failed_retryable (another attempt will follow); True: failed_terminal.
        Applies only to the attempt in flight; False (and nothing changed) otherwise."""
        state = FAILED_TERMINAL if final else FAILED_RETRYABLE
        now = time.time()
        with self._transaction():
            changed = self.db.execute(
                "UPDATE requests SET state = ?, error = ?, updated_at = ?"
                " WHERE request_id = ? AND state = ? AND attempts = ?",
                (state, error, now, request_id, PROCESSING, attempt)).rowcount
            if changed:
                self._end_attempt(request_id, attempt, AttemptOutcome(state), status, error, now)
        return bool(changed)

    def requeue_unfinished(self) -> int:
        """processing rows were in flight when the run stopped: queue them again, and give
        their attempts the outcome 'abandoned' (with the time they were found). An abandoned
        attempt got no answer to judge, so it is given back to the round's retry budget."""
        now = time.time()
        with self._transaction():
            requeued = self.db.execute(
                "UPDATE requests SET state = ?, updated_at = ?, round_attempts = MAX(0, round_attempts - ("
                "SELECT COUNT(*) FROM attempts a WHERE a.request_id = requests.request_id"
                " AND a.retry_round = requests.retry_round AND a.ended_at IS NULL)) WHERE state = ?",
                (QUEUED, now, PROCESSING)).rowcount
            self.db.execute("UPDATE attempts SET ended_at = ?, outcome = ? WHERE ended_at IS NULL",
                            (now, AttemptOutcome.ABANDONED))
            return requeued

    def requeue_failed(self, only: Collection[str] | None = None) -> int:
        """For --retry-failed: terminal failures (or those of them in `only`) are queued in a new
        retry round, with a fresh retry budget; their earlier attempts stay, and the round is recorded."""
        now = time.time()
        with self._transaction():
            retry_round = self.db.execute("SELECT COALESCE(MAX(retry_round), 1) + 1 FROM retry_rounds").fetchone()[0]
            update = "UPDATE requests SET state = ?, retry_round = ?, round_attempts = 0, updated_at = ? WHERE state = ?"
            values = (QUEUED, retry_round, now, FAILED_TERMINAL)
            if only is None:
                requeued = self.db.execute(update, values).rowcount
            else:
                requeued = sum(self.db.execute(f"{update} AND request_id IN ({','.join('?' * len(chunk))})",
                                               (*values, *chunk)).rowcount for chunk in _chunks(list(only), 500))
            if requeued:
                self.db.execute("INSERT INTO retry_rounds(retry_round, started_at, requeued) VALUES (?, ?, ?)",
                                (retry_round, now, requeued))
        return requeued

    def _end_attempt(self, request_id: str, attempt: int, outcome: str, status: int | None,
                     error: str | None, now: float) -> None:
        self.db.execute("UPDATE attempts SET ended_at = ?, outcome = ?, status = ?, error = ?"
                        " WHERE request_id = ? AND attempt = ?", (now, outcome, status, error, request_id, attempt))

    def rate_limited_attempts(self, request_id: str) -> int:
        """Attempts of the request's current round answered 429 for pace (they spend no retry budget)."""
        return self.db.execute(
            "SELECT COUNT(*) FROM attempts a JOIN requests r ON r.request_id = a.request_id"
            " WHERE a.request_id = ? AND a.retry_round = r.retry_round AND a.status = 429 AND a.outcome = ?",
            (request_id, AttemptOutcome.FAILED_RETRYABLE)).fetchone()[0]

    def unfinished_ids(self) -> set[str]:
        rows = self.db.execute("SELECT request_id FROM requests WHERE state NOT IN (?, ?)", tuple(FINAL_STATES))
        return {row[0] for row in rows}

    def state_counts(self) -> dict[RequestState, int]:
        counts = dict.fromkeys(RequestState, 0)
        for state, count in self.db.execute("SELECT state, COUNT(*) FROM requests GROUP BY state"):
            counts[RequestState(state)] = count
        return counts

    def terminal_failures(self) -> list[TerminalFailure]:
        rows = self.db.execute(
            "SELECT r.request_id, a.status, r.error, r.round_attempts FROM requests r LEFT JOIN attempts a"
            " ON a.request_id = r.request_id AND a.attempt = r.attempts WHERE r.state = ? ORDER BY r.rowid",
            (FAILED_TERMINAL,))
        return [TerminalFailure(row[0], row[1], row[2], row[3]) for row in rows]

    def token_totals(self) -> tuple[int, int]:
        row = self.db.execute("SELECT COALESCE(SUM(input_tokens), 0), COALESCE(SUM(output_tokens), 0)"
                              " FROM requests").fetchone()
        return int(row[0]), int(row[1])

    def requests(self, state: RequestState | None = None) -> Iterator[StoredRequest]:
        query = "SELECT * FROM requests" + (" WHERE state = ?" if state else "") + " ORDER BY rowid"
        for row in self.db.execute(query, (state,) if state else ()):
            yield _stored(row)

    def items(self) -> dict[str, StoredItem]:
        return {row["item_id"]: StoredItem(row["item_id"], row["location"], tuple(json.loads(row["slices"])),
                                           row["cluster"], json.loads(row["fields"]))
                for row in self.db.execute("SELECT * FROM items")}

    # -- sessions: who worked on the run, for how long ---------------------------------------
    def begin_session(self) -> int:
        """Records this process as working on the run. A session left open was killed: it is
        closed at its last recorded activity, so its time still counts and its gap does not."""
        now = time.time()
        with self._transaction():
            for session, started in self.db.execute(
                    "SELECT session, started_at FROM sessions WHERE ended_at IS NULL").fetchall():
                last = self.db.execute(
                    "SELECT MAX(MAX(started_at, COALESCE(ended_at, started_at))) FROM attempts"
                    " WHERE started_at >= ? AND (outcome IS NULL OR outcome != ?)",
                    (started, AttemptOutcome.ABANDONED)).fetchone()[0]
                self.db.execute("UPDATE sessions SET ended_at = ? WHERE session = ?", (last or started, session))
            return self.db.execute("INSERT INTO sessions(pid, host, started_at) VALUES (?, ?, ?) RETURNING session",
                                   (os.getpid(), socket.gethostname(), now)).fetchone()[0]

    def end_session(self, session: int) -> None:
        with self._transaction():
            self.db.execute("UPDATE sessions SET ended_at = ? WHERE session = ?", (time.time(), session))

    def active_time_s(self) -> float:
        """The summed active time of every process that worked on the run (open ones up to now)."""
        row = self.db.execute("SELECT COALESCE(SUM(COALESCE(ended_at, ?) - started_at), 0) FROM sessions",
                              (time.time(),)).fetchone()
        return float(row[0])

    # -- scores ---------------------------------------------------------------------------
    def save_scores(self, rows: Iterable[ScoreRow]) -> None:
        with self._transaction():
            self._save_scores(rows)

    def _save_scores(self, rows: Iterable[ScoreRow]) -> None:
        self.db.executemany(
            "INSERT OR REPLACE INTO scores(request_id, scorer, value, passed, detail) VALUES (?, ?, ?, ?, ?)",
            [(rid, scorer, value, None if passed is None else int(passed), json.dumps(detail, default=str))
             for rid, scorer, value, passed, detail in rows])

    def scores_by_request(self) -> dict[str, dict[str, dict[str, Any]]]:
        result: dict[str, dict[str, dict[str, Any]]] = {}
        for row in self.db.execute("SELECT * FROM scores"):
            passed = None if row["passed"] is None else bool(row["passed"])
            result.setdefault(row["request_id"], {})[row["scorer"]] = {
                "value": row["value"], "passed": passed, "detail": json.loads(row["detail"] or "{}")}
        return result

    # -- reads in bounded batches: a run's size must not set the reader's memory ----------------
    def request_batches(self, size: int = 2000, state: RequestState | None = None,
                        target: str | None = None, unscored: bool = False) -> Iterator[list[StoredRequest]]:
        """The requests in insertion order, `size` at a time (optionally of one state or target,
        or only those without a score)."""
        where = [clause for clause, value in (("state = ?", state), ("target = ?", target)) if value is not None]
        if unscored:
            where.append("NOT EXISTS (SELECT 1 FROM scores WHERE scores.request_id = requests.request_id)")
        query = "SELECT * FROM requests" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY rowid"
        cursor = self.db.execute(query, tuple(v for v in (state, target) if v is not None))
        while rows := cursor.fetchmany(size):
            yield [_stored(row) for row in rows]

    def items_of(self, item_ids: Iterable[str]) -> dict[str, StoredItem]:
        """The stored items among `item_ids` (a batch's, not the run's)."""
        found: dict[str, StoredItem] = {}
        for chunk in _chunks(list(dict.fromkeys(item_ids)), 500):
            for row in self.db.execute(f"SELECT * FROM items WHERE item_id IN ({','.join('?' * len(chunk))})",
                                       chunk):
                found[row["item_id"]] = StoredItem(row["item_id"], row["location"], tuple(json.loads(row["slices"])),
                                                   row["cluster"], json.loads(row["fields"]))
        return found

    def scores_of(self, request_ids: Iterable[str]) -> dict[str, dict[str, dict[str, Any]]]:
        """scores_by_request for the given requests only."""
        result: dict[str, dict[str, dict[str, Any]]] = {}
        for chunk in _chunks(list(request_ids), 500):
            for row in self.db.execute(
                    f"SELECT * FROM scores WHERE request_id IN ({','.join('?' * len(chunk))})", chunk):
                passed = None if row["passed"] is None else bool(row["passed"])
                result.setdefault(row["request_id"], {})[row["scorer"]] = {
                    "value": row["value"], "passed": passed, "detail": json.loads(row["detail"] or "{}")}
        return result


def _chunks(values: list[str], size: int) -> Iterator[list[str]]:
    """SQLite limits the parameters of one statement (999 in older builds)."""
    for start in range(0, len(values), size):
        yield values[start:start + size]


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT (ROLLBACK on an error); inside `RunStore.batch` nothing: the
    batch's transaction commits or rolls back everything."""

    def __init__(self, db: sqlite3.Connection, joined: bool = False) -> None:
        self.db, self.joined = db, joined

    def __enter__(self) -> None:
        if not self.joined:
            self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type, exc, tb) -> None:
        if not self.joined:
            self.db.execute("ROLLBACK" if exc_type else "COMMIT")


def _connect(uri: str) -> sqlite3.Connection:
    # isolation_level=None: we issue BEGIN/COMMIT ourselves, so nothing is left uncommitted.
    db = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
    db.row_factory = sqlite3.Row
    db.execute("PRAGMA busy_timeout=5000")
    return db


def _check_intact(db: sqlite3.Connection, path: Path) -> None:
    """An existing store must be one we wrote and whole: a truncated or overwritten file would
    otherwise look like an empty run, and resuming it would re-send everything."""
    if db.execute("PRAGMA user_version").fetchone()[0] == 0:
        raise UserError("the run store is empty or was overwritten (it has no run tables)", file=str(path),
                        hint=_STORE_DAMAGED_HINT)
    problems = [row[0] for row in db.execute("PRAGMA quick_check(5)")]
    if problems != ["ok"]:
        raise sqlite3.DatabaseError("; ".join(problems))


def _damaged(path: Path, exc: sqlite3.DatabaseError) -> UserError:
    return UserError(f"the run store cannot be read ({exc}); it is damaged or not a run store", file=str(path),
                     hint=_STORE_DAMAGED_HINT)


def _stored(row: sqlite3.Row) -> StoredRequest:
    return StoredRequest(
        request_id=row["request_id"], item_id=row["item_id"], target=row["target"],
        sample_index=row["sample_index"], state=RequestState(row["state"]), attempts=row["attempts"],
        payload=json.loads(row["payload"]), output=row["output"], latency_ms=row["latency_ms"],
        input_tokens=row["input_tokens"], output_tokens=row["output_tokens"],
        finish_reason=row["finish_reason"], error=row["error"],
        cost_usd=row["cost_usd"] if "cost_usd" in row.keys() else None,
        origin=row["origin"] if "origin" in row.keys() else "sent")
