"""Requests/s of a whole `evalbatch run` process vs a bare asyncio loop of the same client, same server.

Both sides use the real `openai` client against the fake server (its own process) on 127.0.0.1
at zero latency. Each round runs, alternating so that drift in the machine affects both alike:

- bare: a bare asyncio loop of `openai.AsyncOpenAI` (a semaphore, one `create` per request)
  timed around the loop, in this process (its imports and connections warmed up once);
- evalbatch: `evalbatch run SUITE --new` as its own process, timed from its start to its exit:
  interpreter start-up, imports, planning, every state change committed, progress, scoring,
  results.jsonl, the summary. Its send phase (first attempt started to last attempt ended, from
  the run store) is reported too, so start-up and wrap-up costs show as the gap between the two.

Prints medians and the ratios whole process / bare loop (target >= 0.95) and whole process /
send phase.

    python benchmarks/engine_throughput.py [--requests 3000] [--concurrency 64] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


from benchmarks._common import bare_openai_loop, start_fake_server, timed_evalbatch_run  # noqa: E402

TARGET = 0.95


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3, help="alternating bare/evalbatch rounds; medians are reported")
    args = parser.parse_args()
    server, base_url = start_fake_server()
    bare_times, whole_times, send_times = [], [], []
    try:
        prompts = [f"Ticket: benchmark ticket {n}\nTeam:" for n in range(args.requests)]
        asyncio.run(bare_openai_loop(base_url, prompts[:200], args.concurrency))  # warm-up: connections, imports
        for _ in range(args.rounds):
            bare_times.append(asyncio.run(bare_openai_loop(base_url, prompts, args.concurrency)))
            with tempfile.TemporaryDirectory() as tmp:
                whole, send = timed_evalbatch_run(base_url, args.requests, args.concurrency, Path(tmp))
            whole_times.append(whole)
            send_times.append(send)
    finally:
        server.terminate()
        server.wait(timeout=10)
    bare, whole, send = (statistics.median(times) for times in (bare_times, whole_times, send_times))
    n = args.requests
    print(json.dumps({"requests": n, "concurrency": args.concurrency, "rounds": args.rounds}))
    print(f"bare asyncio loop         : {n / bare:8.1f} req/s ({bare:.2f} s; rounds "
          f"{', '.join(f'{t:.2f}' for t in bare_times)})")
    print(f"evalbatch, whole process  : {n / whole:8.1f} req/s ({whole:.2f} s; rounds "
          f"{', '.join(f'{t:.2f}' for t in whole_times)})")
    print(f"evalbatch, send phase     : {n / send:8.1f} req/s ({send:.2f} s)")
    print(f"ratio whole process / bare loop : {bare / whole:.2f} (target >= {TARGET})")
    print(f"ratio whole process / send phase: {send / whole:.2f} (start-up, planning, scoring, results, summary "
          f"take {whole - send:.2f} s)")


if __name__ == "__main__":
    main()
