"""Wall time of a run when a fifth of all attempts fail, against the same run with none failing.

Two fake servers (their own processes) with the same latency: one clean, one that gives a
seeded 20% of attempts a fault of every kind (429, 500, 502, 503, 529, a dropped connection,
a reply past the client's timeout, malformed JSON). The same suite runs through the engine
(`execute`: every attempt committed, scoring, results; planning and imports excluded) against
each, in alternating rounds. Every request must succeed, none may be answered twice; the
target is faulty wall <= 2x clean wall (medians).

    python benchmarks/fault_tolerance.py [--requests 1000] [--fault-rate 0.2] [--latency 0.5] [--rounds 3]
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rich.console import Console  # noqa: E402

from benchmarks._common import (  # noqa: E402
    BENCH_TEMPLATE,
    bench_records,
    bench_suite,
    reset_server_stats,
    server_stats,
    start_fake_server,
    write_project,
)
from harness.execute import RunOptions, execute  # noqa: E402
from harness.plan import plan_run  # noqa: E402
from harness.testing.fake_limits import FAULT_KINDS  # noqa: E402

RATIO_TARGET = 2.0


def engine_settings(args: argparse.Namespace) -> dict:
    # The suite's defaults (backoff 0.5 s doubling to 30 s) except a timeout fit for the latency.
    return {"concurrency": args.concurrency, "timeout_s": args.timeout, "max_retries": args.max_retries}


def run_once(base_url: str, args: argparse.Namespace, root: Path) -> float:
    suite = bench_suite(base_url, engine_settings(args))
    plan = plan_run(write_project(root, suite, bench_records(args.requests), BENCH_TEMPLATE))
    reset_server_stats(base_url)
    started = time.perf_counter()
    outcome = execute(plan, RunOptions(force_new=True), Console(file=io.StringIO()))
    elapsed = time.perf_counter() - started
    states = Counter(line.state for line in outcome.lines)
    if outcome.manifest.status != "complete" or states != {"succeeded": args.requests}:
        raise SystemExit(f"run ended {outcome.manifest.status} with {dict(states)}")
    return elapsed


def check_faulty_round(base_url: str, args: argparse.Namespace) -> tuple[int, int, int]:
    """Attempts, faults injected, and requests answered more than once (must be 0)."""
    stats = server_stats(base_url)
    successes = stats["successes"]
    if len(successes) != args.requests:
        raise SystemExit(f"only {len(successes)} of {args.requests} requests were answered")
    return stats["total"], sum(stats["faults"].values()), sum(count > 1 for count in successes.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--fault-rate", type=float, default=0.2)
    # 0.5 s as in latency_hiding.py: an API's reply takes that or longer. The fixed costs of
    # faults (backoff of the unluckiest request, timeouts of slow replies) weigh more the shorter it is.
    parser.add_argument("--latency", type=float, default=0.5, help="seconds each reply takes (both servers)")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--timeout", type=float, default=2.0, help="engine.timeout_s; slow faults last 1 s longer")
    parser.add_argument("--max-retries", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--fault-kinds", default=",".join(FAULT_KINDS), help="comma-separated subset of the kinds")
    args = parser.parse_args()
    latency = ["--latency", str(args.latency)]
    clean, clean_url = start_fake_server("billing", *latency)
    faulty, faulty_url = start_fake_server("billing", *latency, "--fault-rate", str(args.fault_rate),
                                           "--fault-seed", "7", "--slow", str(args.timeout + 1),
                                           "--fault-kinds", args.fault_kinds)
    clean_times, faulty_times, checks = [], [], []
    try:
        for _ in range(args.rounds):
            # Alternating, so drift in the machine affects both sides alike.
            with tempfile.TemporaryDirectory() as tmp:
                clean_times.append(run_once(clean_url, args, Path(tmp)))
            with tempfile.TemporaryDirectory() as tmp:
                faulty_times.append(run_once(faulty_url, args, Path(tmp)))
            checks.append(check_faulty_round(faulty_url, args))
    finally:
        for server in (clean, faulty):
            server.terminate()
            server.wait(timeout=10)
    clean_s, faulty_s = statistics.median(clean_times), statistics.median(faulty_times)
    print(f"requests: {args.requests}, latency {args.latency:g} s, concurrency {args.concurrency}, "
          f"timeout {args.timeout:g} s, max_retries {args.max_retries}, rounds {args.rounds} (medians); "
          f"faults {args.fault_rate:.0%} of attempts, kinds {args.fault_kinds}")
    for number, (attempts, faults, twice) in enumerate(checks, 1):
        print(f"faulty round {number}: {attempts} attempts, {faults} faults injected ({faults / attempts:.1%}), "
              f"every request succeeded, answered twice: {twice}")
    print(f"clean  : {clean_s:.2f} s (rounds {', '.join(f'{t:.2f}' for t in clean_times)})")
    print(f"faulty : {faulty_s:.2f} s (rounds {', '.join(f'{t:.2f}' for t in faulty_times)})")
    print(f"ratio faulty/clean: {faulty_s / clean_s:.2f} (target <= {RATIO_TARGET:g})")


if __name__ == "__main__":
    main()
