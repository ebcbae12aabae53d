"""Requests/s of a whole `evalbatch run` process vs a whole bare-client-loop process, same server.

Both sides use the real `openai` client against the fake server (its own process) on 127.0.0.1
at zero latency, and both are timed as whole processes from their start to their exit, so that
interpreter start-up, imports and cold connections count the same on both sides. Each round
runs one of each, alternating so that drift in the machine affects both alike:

- bare: `benchmarks/bare_loop.py`, an asyncio loop of `openai.AsyncOpenAI` (a semaphore, one
  `create` per request, nothing stored): Python start-up, `import openai`, the loop, exit;
- evalbatch: `evalbatch run SUITE --new`: Python start-up, imports, planning, every state change
  committed, progress, scoring, results.jsonl, the summary, exit.

Each side's sending alone is reported too: the bare loop's own timing of its loop, and
evalbatch's send phase (first attempt started to last attempt ended, from the run store), so
start-up and wrap-up costs show as the gap between those and the whole processes.

Earlier versions timed the bare loop inside this script (no start-up, no `import openai`, its
connections warmed up) against the whole evalbatch process; that held evalbatch's start-up
against nothing, so it was not the whole-process comparison the target is about.

Prints medians and the ratios whole process / whole bare process (target >= 0.95), and send
phase / bare loop.

    python benchmarks/engine_throughput.py [--requests 3000] [--concurrency 64] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


from benchmarks._common import bare_loop_process, child_cpu_s, start_fake_server, timed_evalbatch_run  # noqa: E402

TARGET = 0.95


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5, help="alternating bare/evalbatch rounds; medians are reported")
    args = parser.parse_args()
    server, base_url = start_fake_server()
    bare_walls, bare_loops, whole_times, send_times = [], [], [], []
    bare_cpus, whole_cpus = [], []
    try:
        bare_loop_process(base_url, 200, args.concurrency)  # warm-up: the server, the OS's file cache
        for _ in range(args.rounds):
            cpu = child_cpu_s()
            bare_wall, bare_loop = bare_loop_process(base_url, args.requests, args.concurrency)
            bare_cpus.append(child_cpu_s() - cpu)
            bare_walls.append(bare_wall)
            bare_loops.append(bare_loop)
            with tempfile.TemporaryDirectory() as tmp:
                cpu = child_cpu_s()
                whole, send = timed_evalbatch_run(base_url, args.requests, args.concurrency, Path(tmp))
                whole_cpus.append(child_cpu_s() - cpu)
            whole_times.append(whole)
            send_times.append(send)
    finally:
        server.terminate()
        server.wait(timeout=10)
    bare, loop, whole, send = (statistics.median(times) for times in (bare_walls, bare_loops, whole_times, send_times))
    n = args.requests
    print(json.dumps({"requests": n, "concurrency": args.concurrency, "rounds": args.rounds}))
    print(f"bare loop, whole process  : {n / bare:8.1f} req/s ({bare:.2f} s; rounds "
          f"{', '.join(f'{t:.2f}' for t in bare_walls)})")
    print(f"bare loop, its loop alone : {n / loop:8.1f} req/s ({loop:.2f} s)")
    print(f"evalbatch, whole process  : {n / whole:8.1f} req/s ({whole:.2f} s; rounds "
          f"{', '.join(f'{t:.2f}' for t in whole_times)})")
    print(f"evalbatch, send phase     : {n / send:8.1f} req/s ({send:.2f} s)")
    print(f"ratio whole process / bare whole process: {bare / whole:.2f} (target >= {TARGET})")
    print(f"ratio send phase / bare loop alone      : {loop / send:.2f} (start-up excluded on both sides)")
    print(f"start-up and wrap-up: evalbatch {whole - send:.2f} s, bare loop {bare - loop:.2f} s")
    bare_cpu, whole_cpu = statistics.median(bare_cpus), statistics.median(whole_cpus)
    print(f"CPU per process (user+sys): evalbatch {whole_cpu:.2f} s ({whole_cpu / n * 1e6:.0f} us/request), "
          f"bare loop {bare_cpu:.2f} s ({bare_cpu / n * 1e6:.0f} us/request); ratio bare / evalbatch "
          f"{bare_cpu / whole_cpu:.2f}")


if __name__ == "__main__":
    main()
