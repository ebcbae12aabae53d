"""The run store's schema: migration scripts applied in order (PRAGMA user_version); never edit one, append."""

from __future__ import annotations

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

# Attempt numbers never restart: --retry-failed opens a new round, and the retry budget
# counts attempts within the round (round_attempts), not the abandoned ones (cut off by a
# kill). Stores made before this kept only the last round's count in `attempts`: numbering
# continues after the highest attempt stored.
_MIGRATION_2_ATTEMPT_HISTORY = """
        ALTER TABLE requests ADD COLUMN retry_round INTEGER NOT NULL DEFAULT 1;
        ALTER TABLE requests ADD COLUMN round_attempts INTEGER NOT NULL DEFAULT 0;
        UPDATE requests SET round_attempts = attempts;
        UPDATE requests SET attempts = MAX(attempts, COALESCE(
            (SELECT MAX(attempt) FROM attempts WHERE attempts.request_id = requests.request_id), 0));
        ALTER TABLE attempts ADD COLUMN retry_round INTEGER NOT NULL DEFAULT 1;
        CREATE TABLE retry_rounds (
            retry_round INTEGER PRIMARY KEY,
            started_at REAL NOT NULL,
            requeued INTEGER NOT NULL
        );
"""

# What a result line needs besides the request, so a run's store alone can be compared.
_MIGRATION_3_ITEMS = """
        CREATE TABLE items (
            item_id TEXT PRIMARY KEY,
            location TEXT NOT NULL,
            slices TEXT NOT NULL,
            cluster TEXT,
            fields TEXT NOT NULL
        );
"""

# One row per process that worked on the run: their active times add up to its wall time.
_MIGRATION_4_SESSIONS = """
        CREATE TABLE sessions (
            session INTEGER PRIMARY KEY AUTOINCREMENT,
            pid INTEGER NOT NULL,
            host TEXT NOT NULL,
            started_at REAL NOT NULL,
            ended_at REAL
        );
"""

# What each answer cost, and where it came from: sent, the response cache, or a duplicate
# request of the same run whose answer it shares.
_MIGRATION_5_COST_AND_ORIGIN = """
        ALTER TABLE requests ADD COLUMN cost_usd REAL;
        ALTER TABLE requests ADD COLUMN origin TEXT NOT NULL DEFAULT 'sent';
"""

# Provider batches (OpenAI Batch API, Anthropic Message Batches). A batch is planned as a row of
# provider_batches with its members before anything leaves the machine; its input file ID and
# its batch ID are each committed the moment the provider returns them, so a process killed at
# any step finds every file and batch it paid for. batch_id stays NULL until the batch exists.
_MIGRATION_6_PROVIDER_BATCHES = """
        CREATE TABLE provider_files (
            file_id TEXT PRIMARY KEY,
            provider TEXT NOT NULL,
            purpose TEXT NOT NULL,
            target TEXT NOT NULL,
            bytes INTEGER,
            created_at REAL NOT NULL
        );
        CREATE TABLE provider_batches (
            chunk INTEGER PRIMARY KEY AUTOINCREMENT,
            provider TEXT NOT NULL,
            target TEXT NOT NULL,
            planned_at REAL NOT NULL,
            input_file_id TEXT,
            batch_id TEXT UNIQUE,
            status TEXT NOT NULL,
            total INTEGER NOT NULL,
            completed INTEGER NOT NULL DEFAULT 0,
            failed INTEGER NOT NULL DEFAULT 0,
            created_at REAL,
            expires_at REAL,
            output_file_id TEXT,
            error_file_id TEXT,
            collected INTEGER NOT NULL DEFAULT 0,
            updated_at REAL NOT NULL
        );
        CREATE TABLE batch_members (
            chunk INTEGER NOT NULL,
            request_id TEXT NOT NULL,
            custom_id TEXT NOT NULL,
            outcome TEXT,
            PRIMARY KEY (chunk, request_id),
            UNIQUE (chunk, custom_id)
        );
        CREATE INDEX batch_members_by_request ON batch_members(request_id);
"""

MIGRATIONS: list[str] = [_MIGRATION_1, _MIGRATION_2_ATTEMPT_HISTORY, _MIGRATION_3_ITEMS, _MIGRATION_4_SESSIONS,
                         _MIGRATION_5_COST_AND_ORIGIN, _MIGRATION_6_PROVIDER_BATCHES]
