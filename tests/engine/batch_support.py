"""What the batch-mode tests share: suites in batch mode against the fake server, and the run
results they compare with a realtime run of the same suite."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.conftest import base_suite

FAST_POLL = {"poll_s": 0.01}
PRICED_MODELS = {"openai": "gpt-4o-mini", "anthropic": "claude-haiku-4-5"}
"""Models with a list price in the shipped price table, per provider."""


def batch_suite(server_url: str, provider: str = "openai", **batch: Any) -> dict[str, Any]:
    suite = base_suite(server_url, provider)
    suite["targets"][0]["mode"] = "batch"
    suite["engine"]["batch"] = {**FAST_POLL, **batch}
    return suite


def realtime_suite(server_url: str, provider: str = "openai") -> dict[str, Any]:
    return base_suite(server_url, provider)


def only_run(reports: Path, suite: str = "demo") -> Path:
    [run_dir] = [p for p in (reports / suite).glob("*/") if p.is_dir()]
    return run_dir


def results(run_dir: Path) -> dict[str, tuple]:
    """request_id -> what a run's result says, without what differs between modes by design
    (latency, attempts, cost: batch price vs realtime price)."""
    lines = [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()]
    return {line["request_id"]: (line["item_id"], line["state"], line["output"], line["input_tokens"],
                                 line["output_tokens"], json.dumps(line["scores"], sort_keys=True))
            for line in lines}


def store_rows(run_dir: Path, query: str, args: tuple = ()) -> list[tuple]:
    db = sqlite3.connect(f"file:{run_dir / 'run.sqlite'}?mode=ro", uri=True)
    try:
        return [tuple(row) for row in db.execute(query, args)]
    finally:
        db.close()


def states(run_dir: Path) -> dict[str, str]:
    return dict(store_rows(run_dir, "SELECT request_id, state FROM requests"))  # type: ignore[arg-type]


def per_request(counts: dict[str, int]) -> list[int]:
    """A fake-server count per custom_id, summed per request (an Anthropic custom_id is the
    request ID, "_" and a per-chunk tag), sorted."""
    summed: dict[str, int] = {}
    for custom_id, times in counts.items():
        summed[custom_id.split("_")[0]] = summed.get(custom_id.split("_")[0], 0) + times
    return sorted(summed.values())


def by_item(lines: dict[str, tuple]) -> dict[str, tuple]:
    """results() keyed by item (request IDs differ between base URLs, e.g. through a proxy)."""
    return {line[0]: line[1:] for line in lines.values()}


# -- real `evalbatch` processes, for the tests that kill them ---------------------------------
def start(*args: str) -> subprocess.Popen:
    """`evalbatch ARGS` in a new process: no developer keys; a placeholder Anthropic key for the fake server."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "ANTHROPIC_"))}
    env["ANTHROPIC_API_KEY"] = "test-key"
    env["PYTHONFAULTHANDLER"] = "1"  # a process that hangs can be made to show where (`stuck`)
    return subprocess.Popen([sys.executable, "-m", "harness.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def communicate_or_show(process: subprocess.Popen, timeout: float) -> tuple[str, str]:
    """process.communicate; a process still running after `timeout` is made to dump every
    thread's stack (faulthandler, on SIGABRT) and the test fails with it."""
    try:
        return process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGABRT)
        out, err = process.communicate(timeout=30)
        raise AssertionError(f"still running after {timeout:g} s; its stacks:\n{err[-6000:]}\n{out[-2000:]}") from None


def finish(*args: str) -> str:
    process = start(*args)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, out + err
    return out


def wait_until(process: subprocess.Popen, ready, what: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        if ready():
            return
        time.sleep(0.02)
    raise AssertionError(f"never reached: {what}")


def kill(process: subprocess.Popen) -> None:
    process.kill()
    process.wait(timeout=10)
