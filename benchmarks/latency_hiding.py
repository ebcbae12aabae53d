"""Latency hiding: with slow replies, does a run keep as many requests in flight as a bare loop?

The fake server (its own process) takes 500 ms per reply. Each round sends 2,000 requests at
concurrency 200 three ways, alternating: a bare asyncio loop of the `openai` client, the
evalbatch engine (`execute`: every state change committed, progress, scoring, results.jsonl;
planning excluded, as in engine_throughput.py) and a whole `evalbatch run` process (imports,
planning and all). With 2,000 / 200 x 0.5 s = 5 s of pure waiting, the client's CPU decides the
rest (on 2 cores it shares them with the server). Target: engine wall <= 1.1x the bare loop's.

    python benchmarks/latency_hiding.py [--requests 2000] [--concurrency 200] [--latency 0.5] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import run_evalbatch, start_fake_server, write_project  # noqa: E402
from benchmarks.engine_throughput import bare_loop, engine_run  # noqa: E402

RATIO_TARGET = 1.1


def process_run(base_url: str, count: int, concurrency: int, root: Path) -> float:
    """The same suite as engine_run's, as a user runs it: `evalbatch run` in its own process."""
    records = [{"id": f"b{n:06d}", "text": f"benchmark ticket {n}", "label": "billing"} for n in range(count)]
    suite = {
        "name": "bench", "dataset": {"path": "data.jsonl"}, "slices": [{"name": "all"}],
        "prompt": {"name": "bench", "version": "v1"},
        "targets": [{"provider": "openai", "model": "fake", "base_url": base_url + "/v1",
                     "params": {"max_tokens": 5, "temperature": 0}}],
        "scorers": [{"type": "exact_match", "target": "label"}],
        "engine": {"concurrency": concurrency, "timeout_s": 60},
    }
    wall, done = run_evalbatch("run", str(write_project(root, suite, records, "Ticket: {{ text }}\nTeam:")))
    if done.returncode != 0:
        raise SystemExit(done.stdout[-2000:] + done.stderr[-2000:])
    return wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--latency", type=float, default=0.5)
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds; medians are reported")
    args = parser.parse_args()
    server, base_url = start_fake_server("billing", "--latency", str(args.latency))
    bare_times: list[float] = []
    engine_times: list[float] = []
    process_times: list[float] = []
    try:
        prompts = [f"Ticket: benchmark ticket {n}\nTeam:" for n in range(args.requests)]
        asyncio.run(bare_loop(base_url, prompts[:args.concurrency], args.concurrency))  # warm-up
        for _ in range(args.rounds):
            # Alternating, so drift in the machine or the server affects every side alike.
            bare_times.append(asyncio.run(bare_loop(base_url, prompts, args.concurrency)))
            with tempfile.TemporaryDirectory() as tmp:
                engine_times.append(engine_run(base_url, args.requests, args.concurrency, Path(tmp)))
            with tempfile.TemporaryDirectory() as tmp:
                process_times.append(process_run(base_url, args.requests, args.concurrency, Path(tmp)))
    finally:
        server.terminate()
        server.wait(timeout=10)
    bare, engine, process = (statistics.median(t) for t in (bare_times, engine_times, process_times))
    floor = args.requests / args.concurrency * args.latency
    print(f"requests: {args.requests}, concurrency: {args.concurrency}, latency {args.latency:g} s "
          f"(pure waiting {floor:.2f} s), rounds: {args.rounds} (medians)")
    for name, value, times in (("bare asyncio loop", bare, bare_times), ("evalbatch engine", engine, engine_times),
                               ("evalbatch run process", process, process_times)):
        print(f"{name:22}: {value:6.2f} s (rounds {', '.join(f'{t:.2f}' for t in times)})")
    print(f"ratio engine/bare wall : {engine / bare:.2f} (target <= {RATIO_TARGET})")
    print(f"ratio process/bare wall: {process / bare:.2f} (imports and planning included)")


if __name__ == "__main__":
    main()
