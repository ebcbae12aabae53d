"""SIGKILL a real `evalbatch run` in batch mode at seeded random moments (planning, uploading,
creating, polling, collecting), resuming each time: every chunk's batch is created exactly once,
every request is answered exactly once, and the results equal a realtime run's."""

from __future__ import annotations

import json
import random
import time

from harness.testing.fake_batch_lifecycle import BatchScript
from tests.conftest import write_records
from tests.engine.batch_support import (
    batch_suite,
    by_item,
    finish,
    kill,
    only_run,
    per_request,
    realtime_suite,
    results,
    start,
    store_rows,
)

ITEMS = 40
SEED = 11


def test_random_kills_in_batch_mode_create_each_batch_once(project, cli, fake_server):
    records = [{"id": f"k{i:03d}", "text": f"I was billed twice, ticket {i}", "label": "billing"}
               for i in range(ITEMS)]
    write_records(project.root / "suites" / "data" / "tickets.jsonl", records)
    project.write_suite(realtime_suite(fake_server.base_url))
    assert cli("run", str(project.suite_path), "--reports-dir", str(project.root / "realtime")).exit_code == 0
    reference = by_item(results(only_run(project.root / "realtime")))

    fake_server.batches.script = BatchScript(in_progress_polls=3)
    project.write_suite(batch_suite(fake_server.base_url, max_requests=10, poll_s=0.02))
    rng = random.Random(SEED)
    seen_at_kills = []
    for _ in range(6):
        process = start("run", str(project.suite_path))
        # Imports and planning take a while: the random moment is counted from when the process
        # began working on the run (its session row).
        _wait_for_session(process, project, len(seen_at_kills))
        time.sleep(rng.uniform(0.0, 1.0))
        if process.poll() is not None:
            break
        kill(process)
        found = project.run_dirs()
        seen_at_kills.append(sorted(store_rows(found[0], "SELECT status FROM provider_batches")) if found else [])
        if found and _complete(found[0]):  # killed just after it finished: another `run` would start anew
            break
    # The kills landed at different steps: before any batch, and with batches planned or live.
    assert len({tuple(seen) for seen in seen_at_kills}) >= 2, seen_at_kills
    [run_dir] = project.run_dirs()
    if not _complete(run_dir):  # a kill can come just after
        finish("run", str(project.suite_path), "--resume", run_dir.name)
    run_dir = only_run(project.root / "reports")
    assert by_item(results(run_dir)) == reference
    chunks = store_rows(run_dir, "SELECT batch_id, total, collected FROM provider_batches WHERE total > 0")
    assert len(chunks) == 4 and all(batch_id and total == 10 and collected for batch_id, total, collected in chunks)
    assert fake_server.batches.log.creations["openai"] == 4
    assert per_request(fake_server.batches.log.answered) == [1] * ITEMS


def _complete(run_dir) -> bool:
    manifest = run_dir / "manifest.json"
    return manifest.exists() and json.loads(manifest.read_text())["status"] == "complete"


def _wait_for_session(process, project, earlier: int) -> None:
    """Until the process has begun its session on the run (or has already finished it)."""
    deadline = time.monotonic() + 60
    while process.poll() is None and _sessions(project) <= earlier:
        assert time.monotonic() < deadline, "the process never began working on the run"
        time.sleep(0.02)


def _sessions(project) -> int:
    found = project.run_dirs()
    try:
        return store_rows(found[0], "SELECT COUNT(*) FROM sessions")[0][0] if found else 0
    except Exception:  # the store is being created
        return 0
