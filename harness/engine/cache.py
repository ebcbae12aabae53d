"""The response cache: answers of earlier runs, shared by every run and process on the machine.

One SQLite file (WAL, so readers never wait for a writer, and a busy timeout, so two processes
writing at once take turns instead of failing). A row is keyed by the sha256 of what was sent
(provider, base URL, request body) and holds only the answer: text, token usage, finish reason
and when it was stored. Headers and API keys are never part of a key or a row.

The cache only ever saves money: any problem with it (a damaged file, a full disk, a newer
format) is reported once and the run goes on without it, sending what it would have read.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from harness.engine.providers.base import Completion

CACHE_FORMAT_VERSION: Final = 1
CACHE_DIR_ENV: Final = "EVALBATCH_CACHE_DIR"
CACHE_FILENAME: Final = "responses.sqlite"
# Long enough for another process's commit (a few milliseconds), short enough that a cache held
# locked by a stuck process costs a run little: the lookup is skipped and the request is sent.
_BUSY_TIMEOUT_MS: Final = 250
_BUSY_TOLERATED: Final = 3

_SCHEMA = """
    CREATE TABLE IF NOT EXISTS responses (
        key TEXT PRIMARY KEY,
        text TEXT NOT NULL,
        input_tokens INTEGER,
        output_tokens INTEGER,
        finish_reason TEXT,
        created_at REAL NOT NULL
    )
"""

Warn = Callable[[str], None]


def default_cache_path() -> Path:
    """$EVALBATCH_CACHE_DIR/responses.sqlite, else ~/.cache/evalbatch/responses.sqlite."""
    folder = os.environ.get(CACHE_DIR_ENV)
    base = Path(folder).expanduser() if folder else Path.home() / ".cache" / "evalbatch"
    return base / CACHE_FILENAME


def cache_key(provider: str, base_url: str | None, body: dict[str, Any], sample_index: int | None = None) -> str:
    """The same request to the same endpoint has the same key, whatever the order of its fields.
    A sampled request (temperature > 0) also names its sample: the answers of one prompt's
    samples must stay different answers, in a rerun too."""
    parts: dict[str, Any] = {"provider": provider, "base_url": base_url, "body": body}
    if sample_index is not None:
        parts["sample_index"] = sample_index
    canonical = json.dumps(parts, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    # surrogatepass: a record may hold a lone surrogate (valid JSON, "\ud800"); it must key, not crash.
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()


def _print_warning(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


class ResponseCache:
    """`get` and `put` never raise: after the first problem the cache says so once and is off."""

    def __init__(self, path: Path | None = None, warn: Warn = _print_warning) -> None:
        self.path = path or default_cache_path()
        self._warn = warn
        self.db: sqlite3.Connection | None = None
        self.hits = self.misses = self.stored = 0
        self._busy = 0
        try:
            self.db = self._open()
        except (sqlite3.Error, OSError) as exc:
            self._disable(exc)

    @property
    def enabled(self) -> bool:
        return self.db is not None

    def _open(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: every put is its own short transaction, committed at once.
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                             timeout=_BUSY_TIMEOUT_MS / 1000)
        try:
            db.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > CACHE_FORMAT_VERSION:
                raise sqlite3.DatabaseError(f"it has format {version}; this evalbatch reads {CACHE_FORMAT_VERSION}")
            try:
                db.execute("PRAGMA journal_mode=WAL")
            except sqlite3.OperationalError as exc:
                # Two processes creating the cache at once: the one holding the lock sets WAL.
                if not _is_busy(exc):
                    raise
            # A cache row lost to an OS crash is only a request sent again: no fsync per put.
            db.execute("PRAGMA synchronous=NORMAL")
            if version < CACHE_FORMAT_VERSION:
                db.execute("BEGIN IMMEDIATE")
                db.execute(_SCHEMA)
                db.execute(f"PRAGMA user_version={CACHE_FORMAT_VERSION}")
                db.execute("COMMIT")
            # A file that is SQLite but damaged inside often opens fine: read a row to find out now.
            db.execute("SELECT key FROM responses LIMIT 1").fetchall()
        except BaseException:
            db.close()
            raise
        return db

    def get(self, key: str) -> Completion | None:
        if self.db is None:
            return None
        try:
            row = self.db.execute("SELECT text, input_tokens, output_tokens, finish_reason FROM responses"
                                  " WHERE key = ?", (key,)).fetchone()
        except sqlite3.OperationalError as exc:
            self._disable_unless_passing(exc)  # busy: send this one instead
            return None
        except sqlite3.Error as exc:
            self._disable(exc)
            return None
        if row is None:
            self.misses += 1
            return None
        self.hits += 1
        return Completion(text=row[0], input_tokens=row[1], output_tokens=row[2], finish_reason=row[3])

    def put(self, key: str, completion: Completion) -> None:
        """Keeps the first answer stored for a key: later runs all read the same one."""
        if self.db is None:
            return
        try:
            changed = self.db.execute(
                "INSERT OR IGNORE INTO responses(key, text, input_tokens, output_tokens, finish_reason, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (key, completion.text, completion.input_tokens, completion.output_tokens,
                 completion.finish_reason, time.time())).rowcount
        except sqlite3.OperationalError as exc:
            self._disable_unless_passing(exc)
            return
        except sqlite3.Error as exc:
            self._disable(exc)
            return
        self.stored += changed

    def close(self) -> None:
        if self.db is not None:
            self.db.close()
            self.db = None

    def _disable_unless_passing(self, exc: sqlite3.OperationalError) -> None:
        """A lock another process holds a moment is passing; one held through several waits (a
        stopped process mid-write, a shell in a transaction) would stall every answer of the run
        on the event loop, so the cache is turned off."""
        self._busy += _is_busy(exc)
        if not _is_busy(exc) or self._busy >= _BUSY_TOLERATED:
            self._disable(exc)

    def _disable(self, exc: BaseException) -> None:
        if self.db is not None:
            try:
                self.db.close()
            except sqlite3.Error:
                pass
            self.db = None
        self._warn(f"the response cache {self.path} cannot be used ({exc}); this run goes on without it "
                   "(delete the file to start a new cache)")


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    return "locked" in str(exc) or "busy" in str(exc)
