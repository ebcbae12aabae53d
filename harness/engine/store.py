"""The run store: one SQLite file (WAL) per run, one row per request.

Every state change is its own committed transaction before anyone is told about it, so a
run killed at any instant resumes from exactly what the file says. WAL with
synchronous=NORMAL survives a killed process (only an OS crash can lose the last commits).
Schema changes are plain migration functions applied in order (PRAGMA user_version).
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

from harness.engine.providers.base import Completion

QUEUED, PROCESSING, SUCCEEDED = "queued", "processing", "succeeded"
FAILED_RETRYABLE, FAILED_TERMINAL = "failed_retryable", "failed_terminal"
STATES = (QUEUED, PROCESSING, SUCCEEDED, FAILED_RETRYABLE, FAILED_TERMINAL)
FINAL_STATES = (SUCCEEDED, FAILED_TERMINAL)


# Each migration is a SQL script; it runs in one transaction together with the version bump.
_MIGRATION_1 = """
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE requests (
            request_id TEXT PRIMARY KEY,
            item_id TEXT NOT NULL,
            target TEXT NOT NULL,
            sample_index INTEGER NOT NULL,
            payload TEXT NOT NULL,
            state TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            latency_ms REAL,
            input_tokens INTEGER,
            output_tokens INTEGER,
            output TEXT,
            finish_reason TEXT,
            error TEXT,
            updated_at REAL NOT NULL
        );
        CREATE INDEX requests_by_state ON requests(state);
        CREATE TABLE attempts (
            request_id TEXT NOT NULL,
            attempt INTEGER NOT NULL,
            started_at REAL NOT NULL,
            ended_at REAL,
            outcome TEXT,
            status INTEGER,
            error TEXT,
            PRIMARY KEY (request_id, attempt)
        );
        CREATE TABLE scores (
            request_id TEXT NOT NULL,
            scorer TEXT NOT NULL,
            value REAL,
            passed INTEGER,
            detail TEXT,
            PRIMARY KEY (request_id, scorer)
        );
"""

MIGRATIONS: list[str] = [_MIGRATION_1]


@dataclass(frozen=True)
class StoredRequest:
    request_id: str
    item_id: str
    target: str
    sample_index: int
    state: str
    attempts: int
    payload: dict[str, Any]
    output: str | None
    latency_ms: float | None
    input_tokens: int | None
    output_tokens: int | None
    finish_reason: str | None
    error: str | None


@dataclass(frozen=True)
class NewRequest:
    request_id: str
    item_id: str
    target: str
    sample_index: int
    payload: dict[str, Any]


class RunStore:
    FILENAME = "run.sqlite"

    def __init__(self, path: Path) -> None:
        self.path = path
        # isolation_level=None: we issue BEGIN/COMMIT ourselves, so nothing is left uncommitted.
        self.db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("PRAGMA busy_timeout=5000")
        self._migrate()

    @classmethod
    def in_folder(cls, folder: Path) -> "RunStore":
        return cls(folder / cls.FILENAME)

    def close(self) -> None:
        self.db.close()

    def _migrate(self) -> None:
        current = self.db.execute("PRAGMA user_version").fetchone()[0]
        for number, script in enumerate(MIGRATIONS[current:], start=current + 1):
            # executescript commits on its own, so BEGIN/COMMIT are part of the script.
            self.db.executescript(f"BEGIN IMMEDIATE; {script}; PRAGMA user_version={number}; COMMIT;")

    def _transaction(self):
        return _Transaction(self.db)

    # -- metadata -------------------------------------------------------------------------
    def set_meta(self, key: str, value: Any) -> None:
        with self._transaction():
            self.db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, json.dumps(value)))

    def get_meta(self, key: str, default: Any = None) -> Any:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    # -- requests -------------------------------------------------------------------------
    def add_requests(self, requests: Iterable[NewRequest]) -> int:
        """Inserts requests not stored yet as queued; returns how many were new."""
        now = time.time()
        with self._transaction():
            before = self.db.total_changes
            self.db.executemany(
                "INSERT OR IGNORE INTO requests(request_id, item_id, target, sample_index, payload, state, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(r.request_id, r.item_id, r.target, r.sample_index, json.dumps(r.payload), QUEUED, now)
                 for r in requests])
            return self.db.total_changes - before

    def start_attempt(self, request_id: str) -> int:
        """queued/failed_retryable -> processing; returns the attempt number (1-based)."""
        now = time.time()
        with self._transaction():
            attempt = self.db.execute(
                "UPDATE requests SET state = ?, attempts = attempts + 1, updated_at = ? WHERE request_id = ?"
                " RETURNING attempts", (PROCESSING, now, request_id)).fetchone()[0]
            self.db.execute("INSERT OR REPLACE INTO attempts(request_id, attempt, started_at) VALUES (?, ?, ?)",
                            (request_id, attempt, now))
        return attempt

    def succeed(self, request_id: str, attempt: int, completion: Completion, latency_ms: float) -> None:
        now = time.time()
        with self._transaction():
            self.db.execute(
                "UPDATE requests SET state = ?, output = ?, latency_ms = ?, input_tokens = ?, output_tokens = ?,"
                " finish_reason = ?, error = NULL, updated_at = ? WHERE request_id = ?",
                (SUCCEEDED, completion.text, latency_ms, completion.input_tokens, completion.output_tokens,
                 completion.finish_reason, now, request_id))
            self._end_attempt(request_id, attempt, SUCCEEDED, None, None, now)

    def fail(self, request_id: str, attempt: int, *, final: bool, error: str, status: int | None) -> None:
        """final=False: failed_retryable (another attempt will follow); True: failed_terminal."""
        state = FAILED_TERMINAL if final else FAILED_RETRYABLE
        now = time.time()
        with self._transaction():
            self.db.execute("UPDATE requests SET state = ?, error = ?, updated_at = ? WHERE request_id = ?",
                            (state, error, now, request_id))
            self._end_attempt(request_id, attempt, state, status, error, now)

    def requeue_unfinished(self) -> int:
        """processing rows were in flight when the run stopped: queue them again."""
        with self._transaction():
            return self.db.execute("UPDATE requests SET state = ?, updated_at = ? WHERE state = ?",
                                   (QUEUED, time.time(), PROCESSING)).rowcount

    def requeue_failed(self) -> int:
        """For --retry-failed: terminal failures get a fresh set of attempts."""
        with self._transaction():
            return self.db.execute("UPDATE requests SET state = ?, attempts = 0, updated_at = ? WHERE state = ?",
                                   (QUEUED, time.time(), FAILED_TERMINAL)).rowcount

    def _end_attempt(self, request_id: str, attempt: int, outcome: str, status: int | None,
                     error: str | None, now: float) -> None:
        self.db.execute("UPDATE attempts SET ended_at = ?, outcome = ?, status = ?, error = ?"
                        " WHERE request_id = ? AND attempt = ?", (now, outcome, status, error, request_id, attempt))

    def unfinished_ids(self) -> set[str]:
        rows = self.db.execute("SELECT request_id FROM requests WHERE state NOT IN (?, ?)", FINAL_STATES)
        return {row[0] for row in rows}

    def state_counts(self) -> dict[str, int]:
        counts = dict.fromkeys(STATES, 0)
        for state, count in self.db.execute("SELECT state, COUNT(*) FROM requests GROUP BY state"):
            counts[state] = count
        return counts

    def token_totals(self) -> tuple[int, int]:
        row = self.db.execute("SELECT COALESCE(SUM(input_tokens), 0), COALESCE(SUM(output_tokens), 0)"
                              " FROM requests").fetchone()
        return int(row[0]), int(row[1])

    def requests(self, state: str | None = None) -> Iterator[StoredRequest]:
        query = "SELECT * FROM requests" + (" WHERE state = ?" if state else "") + " ORDER BY rowid"
        for row in self.db.execute(query, (state,) if state else ()):
            yield _stored(row)

    # -- scores ---------------------------------------------------------------------------
    def save_scores(self, rows: Iterable[tuple[str, str, float, bool | None, dict[str, Any]]]) -> None:
        with self._transaction():
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


class _Transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type, exc, tb) -> None:
        self.db.execute("ROLLBACK" if exc_type else "COMMIT")


def _stored(row: sqlite3.Row) -> StoredRequest:
    return StoredRequest(
        request_id=row["request_id"], item_id=row["item_id"], target=row["target"],
        sample_index=row["sample_index"], state=row["state"], attempts=row["attempts"],
        payload=json.loads(row["payload"]), output=row["output"], latency_ms=row["latency_ms"],
        input_tokens=row["input_tokens"], output_tokens=row["output_tokens"],
        finish_reason=row["finish_reason"], error=row["error"])
