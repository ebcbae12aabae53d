"""Real `evalbatch` processes for tests that kill, interrupt or race them."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import write_records

ITEMS = 120


def many_tickets(project, count: int = ITEMS) -> None:
    records = [{"id": f"x{i:03d}", "text": f"ticket number {i}", "label": "billing"} for i in range(count)]
    write_records(project.root / "suites" / "data" / "tickets.jsonl", records)


def start(*args: str) -> subprocess.Popen:
    """`evalbatch ARGS` in a new process, without the developer's API keys."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "ANTHROPIC_"))}
    return subprocess.Popen([sys.executable, "-m", "harness.cli", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def succeeded_ids(run_dir: Path) -> set[str]:
    db = sqlite3.connect(f"file:{run_dir / 'run.sqlite'}?mode=ro", uri=True)
    try:
        return {row[0] for row in db.execute("SELECT request_id FROM requests WHERE state = 'succeeded'")}
    except sqlite3.OperationalError:  # the table is not created yet
        return set()
    finally:
        db.close()


def wait_for_progress(runs_dir: Path, process: subprocess.Popen, at_least: int, ignore: tuple[Path, ...] = ()) -> Path:
    """The run folder under runs_dir (other than `ignore`), once at least `at_least` requests succeeded in it."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        runs = sorted(p for p in runs_dir.glob("*/") if (p / "run.sqlite").exists() and p not in ignore)
        if runs and len(succeeded_ids(runs[-1])) >= at_least:
            return runs[-1]
        time.sleep(0.05)
    raise AssertionError("the run made no progress")
