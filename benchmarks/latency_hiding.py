"""Latency hiding: with slow replies, does a run keep as many requests in flight as a bare loop?

The fake server (its own process) takes 500 ms per reply. Each round sends 2,000 requests at
concurrency 200 two ways, alternating so that drift in the machine affects both alike:

- bare: `benchmarks/bare_loop.py`, an asyncio loop of `openai.AsyncOpenAI` (a semaphore, one
  `create` per request), as its own process timed from start to exit (Python start-up, `import
  openai`, cold connections, the loop); its loop's own timing is reported too;
- evalbatch: `evalbatch run SUITE --new` as its own process, timed from start to exit (imports,
  planning, every state change committed, scoring, results.jsonl, the summary); its send phase
  (first attempt started to last attempt ended, from the run store) is reported too.

Both walls are whole processes, so start-up counts the same on both sides. (Earlier versions
timed the bare loop inside this script, its imports done and connections warm, against the
whole evalbatch process.)

2,000 / 200 x 0.5 s = 5 s is pure waiting; the client's CPU decides the rest (on 2 cores it
shares them with the server). Target: evalbatch wall <= 1.1x the bare loop process's wall.

    python benchmarks/latency_hiding.py [--requests 2000] [--concurrency 200] [--latency 0.5] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import bare_loop_process, child_cpu_s, start_fake_server, timed_evalbatch_run  # noqa: E402

RATIO_TARGET = 1.1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--latency", type=float, default=0.5)
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds; medians are reported")
    args = parser.parse_args()
    server, base_url = start_fake_server("billing", "--latency", str(args.latency))
    bare_times: list[float] = []
    loops: list[float] = []
    walls: list[float] = []
    sends: list[float] = []
    cpus: dict[str, list[float]] = {"bare": [], "evalbatch": []}
    try:
        bare_loop_process(base_url, args.concurrency, args.concurrency)  # warm-up: the server, the OS's file cache
        for _ in range(args.rounds):
            cpu = child_cpu_s()
            bare_wall, bare_loop = bare_loop_process(base_url, args.requests, args.concurrency)
            cpus["bare"].append(child_cpu_s() - cpu)
            bare_times.append(bare_wall)
            loops.append(bare_loop)
            with tempfile.TemporaryDirectory() as tmp:
                cpu = child_cpu_s()
                wall, send = timed_evalbatch_run(base_url, args.requests, args.concurrency, Path(tmp))
                cpus["evalbatch"].append(child_cpu_s() - cpu)
            walls.append(wall)
            sends.append(send)
    finally:
        server.terminate()
        server.wait(timeout=10)
    bare, loop, wall, send = (statistics.median(t) for t in (bare_times, loops, walls, sends))
    print(f"requests: {args.requests}, concurrency: {args.concurrency}, latency {args.latency:g} s "
          f"(pure waiting {args.requests / args.concurrency * args.latency:.2f} s), rounds: {args.rounds} (medians)")
    for name, value, times in (("bare loop process", bare, bare_times), ("  its loop alone", loop, loops),
                               ("evalbatch run process", wall, walls), ("  its send phase", send, sends)):
        print(f"{name:22}: {value:6.2f} s (rounds {', '.join(f'{t:.2f}' for t in times)})")
    print(f"ratio evalbatch wall / bare wall   : {wall / bare:.2f} (target <= {RATIO_TARGET})")
    print(f"ratio send phase / bare loop alone : {send / loop:.2f} (start-up and wrap-up excluded on both sides)")
    print("CPU per process (user+sys, medians): " + ", ".join(
        f"{name} {statistics.median(times):.2f} s" for name, times in cpus.items()))


if __name__ == "__main__":
    main()
