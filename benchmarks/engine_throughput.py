"""Requests/s through the evalbatch engine vs a bare asyncio loop of the same client, same server.

Both sides use the real `openai` client against the fake server (its own process) on 127.0.0.1
at concurrency 64. The engine side is a whole `evalbatch run` minus planning: run store commits
for every state change, progress bar, scoring and results.jsonl. Prints the ratio engine/bare.

    python benchmarks/engine_throughput.py [--requests 2000] [--concurrency 64]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import openai  # noqa: E402
from rich.console import Console  # noqa: E402

from benchmarks._common import start_fake_server, write_project  # noqa: E402
from harness.execute import RunOptions, execute  # noqa: E402
from harness.plan import plan_run  # noqa: E402


async def bare_loop(base_url: str, prompts: list[str], concurrency: int) -> float:
    client = openai.AsyncOpenAI(api_key="bench", base_url=base_url + "/v1", max_retries=0)
    limit = asyncio.Semaphore(concurrency)

    async def one(prompt: str) -> None:
        async with limit:
            await client.chat.completions.create(model="fake", messages=[{"role": "user", "content": prompt}],
                                                 max_tokens=5, temperature=0)

    started = time.perf_counter()
    await asyncio.gather(*(one(p) for p in prompts))
    elapsed = time.perf_counter() - started
    await client.close()
    return elapsed


def engine_run(base_url: str, count: int, concurrency: int, root: Path) -> float:
    records = [{"id": f"b{n:06d}", "text": f"benchmark ticket {n}", "label": "billing"} for n in range(count)]
    suite = {
        "name": "bench", "dataset": {"path": "data.jsonl"}, "slices": [{"name": "all"}],
        "prompt": {"name": "bench", "version": "v1"},
        "targets": [{"provider": "openai", "model": "fake", "base_url": base_url + "/v1",
                     "params": {"max_tokens": 5, "temperature": 0}}],
        "scorers": [{"type": "exact_match", "target": "label"}],
        "engine": {"concurrency": concurrency, "timeout_s": 60},
    }
    plan = plan_run(write_project(root, suite, records, "Ticket: {{ text }}\nTeam:"))
    console = Console(file=io.StringIO())
    started = time.perf_counter()
    outcome = execute(plan, RunOptions(force_new=True), console)
    elapsed = time.perf_counter() - started
    assert outcome.manifest.status == "complete", outcome.manifest.status
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3, help="alternating bare/engine rounds; medians are reported")
    args = parser.parse_args()
    server, base_url = start_fake_server()
    bare_times, engine_times = [], []
    try:
        prompts = [f"Ticket: benchmark ticket {n}\nTeam:" for n in range(args.requests)]
        asyncio.run(bare_loop(base_url, prompts[:200], args.concurrency))  # warm-up: connections, imports
        for round_number in range(args.rounds):
            # Alternating, so drift in the machine or the server affects both sides alike.
            bare_times.append(asyncio.run(bare_loop(base_url, prompts, args.concurrency)))
            with tempfile.TemporaryDirectory() as tmp:
                engine_times.append(engine_run(base_url, args.requests, args.concurrency, Path(tmp)))
    finally:
        server.terminate()
        server.wait(timeout=10)
    bare, engine = statistics.median(bare_times), statistics.median(engine_times)
    bare_rps, engine_rps = args.requests / bare, args.requests / engine
    print(f"requests: {args.requests}, concurrency: {args.concurrency}, rounds: {args.rounds} (medians)")
    print(f"bare asyncio loop : {bare_rps:8.1f} req/s ({bare:.2f} s; rounds {', '.join(f'{t:.2f}' for t in bare_times)})")
    print(f"evalbatch engine  : {engine_rps:8.1f} req/s ({engine:.2f} s; rounds {', '.join(f'{t:.2f}' for t in engine_times)})")
    print(f"ratio engine/bare : {engine_rps / bare_rps:.2f} (target >= 0.70)")


if __name__ == "__main__":
    main()
