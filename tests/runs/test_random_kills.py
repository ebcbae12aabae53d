"""SIGKILL a real `evalbatch run` at several seeded random points, resuming each time: the final
results equal an uninterrupted run's, and the server answered every request exactly once, except
requests in flight at a kill (the store marks their attempts 'abandoned'), which may have been
answered by the server after the client died and are then sent again."""

from __future__ import annotations

import json
import random
import re
import sqlite3
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from harness.testing.fake_server import FakeLLMServer
from tests.conftest import base_suite, write_records
from tests.runs.processes import start, succeeded_ids, wait_for_progress

ITEMS = 200
LABELS = ["billing", "bug", "feature request", "account access", "cancellation"]
SEED = 2026


def _reply(prompt: str) -> str:
    """Different answers for different tickets, right for about a fifth of them."""
    number = int(re.search(r"ticket number (\d+)", prompt).group(1))  # type: ignore[union-attr]
    return LABELS[number * 7 % len(LABELS)]


@pytest.fixture
def server():
    with FakeLLMServer(_reply, latency_s=0.05) as running:
        yield running


@pytest.fixture
def suite_path(project, server) -> Path:
    records = [{"id": f"k{i:03d}", "text": f"ticket number {i}", "label": LABELS[i % len(LABELS)]}
               for i in range(ITEMS)]
    write_records(project.root / "suites" / "data" / "tickets.jsonl", records)
    return project.write_suite(base_suite(server.base_url))


def _finish(*args: str) -> None:
    process = start(*args)
    out, err = process.communicate(timeout=180)
    assert process.returncode == 0, out + err


def _results(run_dir: Path) -> dict[str, tuple]:
    lines = [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()]
    return {line["request_id"]: (line["item_id"], line["state"], line["output"], line["scores"]) for line in lines}


def _kill(process: subprocess.Popen) -> None:
    process.kill()
    process.wait(timeout=10)


def test_results_after_random_kills_equal_an_uninterrupted_run(project, server, suite_path):
    reference_dir = project.root / "reference"
    _finish("run", str(suite_path), "--reports-dir", str(reference_dir))
    [reference_run] = [p for p in (reference_dir / "demo").glob("*/") if p.is_dir()]
    reference = _results(reference_run)
    assert len(reference) == ITEMS and {state for _, state, _, _ in reference.values()} == {"succeeded"}
    server.log.reset()

    rng = random.Random(SEED)
    runs_dir = project.root / "reports" / "demo"
    # First a kill at a random moment (it may land in start-up, before the run folder exists),
    # then kills once the store holds a random number of successes.
    process = start("run", str(suite_path))
    time.sleep(rng.uniform(0.5, 2.5))
    if process.poll() is None:
        _kill(process)
    done = 0
    for threshold in sorted(rng.sample(range(20, ITEMS - 20), 3)):
        process = start("run", str(suite_path))
        run_dir = wait_for_progress(runs_dir, process, at_least=max(threshold, done + 5))
        _kill(process)
        done = len(succeeded_ids(run_dir))
        assert done < ITEMS, "the run finished before it could be killed"
    _finish("run", str(suite_path))

    [run_dir] = project.run_dirs()  # every resume continued the same run
    assert _results(run_dir) == reference
    assert json.loads((run_dir / "manifest.json").read_text())["status"] == "complete"

    db = sqlite3.connect(f"file:{run_dir / 'run.sqlite'}?mode=ro", uri=True)
    abandoned = Counter(row[0] for row in db.execute("SELECT request_id FROM attempts WHERE outcome = 'abandoned'"))
    db.close()
    answers = server.log.successes
    assert set(answers) == set(reference)  # every request was answered
    answered_twice = {request_id for request_id, count in answers.items() if count > 1}
    # Only a request in flight at a kill can have been answered again, once per kill that cut it off.
    assert answered_twice <= set(abandoned)
    assert all(answers[request_id] <= 1 + abandoned[request_id] for request_id in answers)
    assert len(answered_twice) <= sum(abandoned.values())
    assert sum(abandoned.values()) > 0  # the kills did land while requests were in flight
