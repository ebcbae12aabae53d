"""Helpers shared by the benchmark scripts: a throwaway project and a fake server process."""

from __future__ import annotations

import json
import os
import resource
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent


def write_project(root: Path, suite: dict, records: list[dict], template: str) -> Path:
    (root / "prompts" / "bench").mkdir(parents=True, exist_ok=True)
    (root / "prompts" / "bench" / "v1.j2").write_text(template, encoding="utf-8")
    (root / "suites").mkdir(exist_ok=True)
    (root / "suites" / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    path = root / "suites" / "bench.yaml"
    path.write_text(yaml.safe_dump(suite, sort_keys=False), encoding="utf-8")
    return path


def start_fake_server(reply: str = "billing", *options: str) -> tuple[subprocess.Popen, str]:
    """The server runs in its own process so its work is not counted against the client's loop.
    `options` are the server's own (`--latency 0.5`, `--rpm 1200`, `--fault-rate 0.2`, ...)."""
    process = subprocess.Popen([sys.executable, "-m", "harness.testing.fake_server", "--reply", reply, *options],
                               stdout=subprocess.PIPE, text=True, cwd=REPO)
    base_url = process.stdout.readline().strip()
    if not base_url.startswith("http"):
        process.kill()
        raise RuntimeError("fake server did not start")
    return process, base_url


def server_stats(base_url: str) -> dict:
    """The fake server's log: attempts and successes per request ID, accepted and 429 times."""
    with urllib.request.urlopen(base_url + "/_fake/stats", timeout=30) as reply:
        return json.loads(reply.read())


def reset_server_stats(base_url: str) -> None:
    request = urllib.request.Request(base_url + "/_fake/reset", data=b"", method="POST")
    with urllib.request.urlopen(request, timeout=30):
        pass


def run_evalbatch(*args: str) -> tuple[float, subprocess.CompletedProcess]:
    """A whole `evalbatch` process as a user runs it (imports included): its wall time and result."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "ANTHROPIC_"))}
    started = time.perf_counter()
    # `-m harness` starts the command as the `evalbatch` console script does (harness.entry).
    done = subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True, text=True,
                          cwd=REPO, env=env)
    return time.perf_counter() - started, done


def child_cpu_s() -> float:
    """CPU seconds (user + system) of this process's finished children so far: a process's share
    is the difference around it. Less sensitive than wall time to other work on the machine."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def bare_loop_process(base_url: str, count: int, concurrency: int) -> tuple[float, float]:
    """The reference a run is held against, as a whole process: `benchmarks/bare_loop.py` (the
    `openai` client in a plain asyncio loop, no retries, nothing stored) in an interpreter of its
    own, so its start-up, `import openai` and cold connections count as evalbatch's do. Returns
    the process's wall time (start to exit) and its loop's (first request to last reply)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "ANTHROPIC_"))}
    started = time.perf_counter()
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bare_loop.py"), base_url, str(count),
                           str(concurrency)], capture_output=True, text=True, cwd=REPO, env=env)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"bare loop exited {done.returncode}:\n{done.stderr[-2000:]}")
    return wall, float(done.stdout.split()[-1])


def timed_evalbatch_run(base_url: str, count: int, concurrency: int, root: Path) -> tuple[float, float]:
    """A whole `evalbatch run` process of `count` requests to the fake server: its wall time, and its
    send phase (first attempt's start to last attempt's end) as the run store recorded it."""
    suite = bench_suite(base_url, {"concurrency": concurrency, "timeout_s": 60})
    wall, done = run_evalbatch("run", str(write_project(root, suite, bench_records(count), BENCH_TEMPLATE)), "--new")
    if done.returncode != 0:
        raise SystemExit(f"evalbatch run exited {done.returncode}:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    [store] = (root / "reports" / "bench").glob("*/run.sqlite")
    with sqlite3.connect(store) as db:
        first, last = db.execute("SELECT MIN(started_at), MAX(ended_at) FROM attempts").fetchone()
    return wall, last - first


BENCH_TEMPLATE = "Ticket: {{ text }}\nTeam:"


def bench_records(count: int) -> list[dict]:
    return [{"id": f"b{n:06d}", "text": f"benchmark ticket {n}", "label": "billing"} for n in range(count)]


def bench_suite(base_url: str, engine: dict) -> dict:
    """One target on the fake server, one exact-match scorer: the engine is what is measured."""
    return {
        "name": "bench", "dataset": {"path": "data.jsonl"}, "slices": [{"name": "all"}],
        "prompt": {"name": "bench", "version": "v1"},
        "targets": [{"provider": "openai", "model": "fake", "base_url": base_url + "/v1",
                     "params": {"max_tokens": 5, "temperature": 0}}],
        "scorers": [{"type": "exact_match", "target": "label"}],
        "engine": engine,
    }


def gate_bench_suite(base_url: str, labels: list[str]) -> dict:
    """A suite with clusters, a category field and guardrails: comparisons do all their work."""
    return {
        "version": 1, "name": "bench",
        "dataset": {"path": "data.jsonl", "id_field": "id", "cluster_field": "customer"},
        "slices": [{"name": "all"}], "prompt": {"name": "bench", "version": "v1"},
        "targets": [{"name": "fake", "provider": "openai", "model": "fake", "base_url": base_url + "/v1",
                     "params": {"max_tokens": 5, "temperature": 0}}],
        "scorers": [{"type": "label_in_set", "name": "accuracy", "target": "label", "labels": labels}],
        "engine": {"concurrency": 64, "timeout_s": 60},
        "gate": {"baseline": "production", "category_field": "lang",
                 "guardrails": [{"metric": "empty_output"}, {"metric": "output_length"}]},
    }
