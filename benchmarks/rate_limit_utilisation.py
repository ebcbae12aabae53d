"""How much of a provider's rate limit a run uses, and how often it is told 429.

The fake server (its own process) enforces 1,200 requests and 100,000 tokens per minute in
60-second windows and sends OpenAI's rate-limit headers. Two whole `evalbatch run` processes
(concurrency 64, far more than the limit needs) send to two such servers at the same time:
one with the limits declared in the suite, one with no limits declared (it must learn them
from the headers). Each lasts over 2 minutes. The achieved rate is measured by the server:
requests it accepted, from the first to the last, per minute. Targets: achieved >= 0.95 of the
limit, <= 1% of attempts answered 429.

    python benchmarks/rate_limit_utilisation.py [--requests 2600] [--rpm 1200] [--tpm 100000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import REPO, server_stats, start_fake_server, write_project  # noqa: E402

MAX_TOKENS = 64
UTILISATION_TARGET = 0.95
SHARE_429_TARGET = 0.01


@dataclass(frozen=True)
class Lane:
    name: str
    declared: bool
    server: subprocess.Popen
    base_url: str
    suite_path: Path
    reports: Path


def suite_for(base_url: str, args: argparse.Namespace, declared: bool) -> dict:
    suite = {
        "name": "bench", "dataset": {"path": "data.jsonl"}, "slices": [{"name": "all"}],
        "prompt": {"name": "bench", "version": "v1"},
        "targets": [{"provider": "openai", "model": "fake", "base_url": base_url + "/v1",
                     "params": {"max_tokens": MAX_TOKENS, "temperature": 0}}],
        "scorers": [{"type": "exact_match", "target": "label"}],
        "engine": {"concurrency": 64, "timeout_s": 60},
    }
    if declared:
        suite["engine"]["limits"] = {"rpm": args.rpm, "tpm": args.tpm}
    return suite


def start_lane(name: str, declared: bool, args: argparse.Namespace, root: Path) -> Lane:
    server, base_url = start_fake_server("billing", "--rpm", str(args.rpm), "--tpm", str(args.tpm), "--window", "60")
    records = [{"id": f"b{n:06d}", "text": f"benchmark ticket {n}", "label": "billing"} for n in range(args.requests)]
    folder = root / name
    suite_path = write_project(folder, suite_for(base_url, args, declared), records, "Ticket: {{ text }}\nTeam:")
    return Lane(name, declared, server, base_url, suite_path, folder / "reports")


def report(lane: Lane, done: subprocess.CompletedProcess, wall_s: float, args: argparse.Namespace) -> bool:
    stats = server_stats(lane.base_url)
    times, tokens = stats["accepted_times"], stats["accepted_tokens"]
    attempts, rejected = stats["total"], len(stats["rejected_429"])
    results = [json.loads(line) for run in (lane.reports / "bench").glob("*/")
               for line in (run / "results.jsonl").read_text().splitlines()]
    succeeded = sum(r["state"] == "succeeded" for r in results)
    span_min = (times[-1] - times[0]) / 60 if len(times) > 1 else float("nan")
    # Requests after the first, over the time from the first to the last: the rate while sending.
    rpm_achieved = (len(times) - 1) / span_min
    tpm_achieved = (sum(tokens) - tokens[0]) / span_min
    windows = Counter(int((t - stats["window_origin"]) // stats["window_s"]) for t in times)
    share_429 = rejected / attempts
    binding = max(rpm_achieved / args.rpm, tpm_achieved / args.tpm)
    print(f"\n{lane.name}: exit {done.returncode}, {succeeded}/{args.requests} succeeded, wall {wall_s:.1f} s, "
          f"sending for {span_min * 60:.1f} s")
    print(f"  requests/min : {rpm_achieved:8.1f} of {args.rpm:g}  ratio {rpm_achieved / args.rpm:.3f}")
    print(f"  tokens/min   : {tpm_achieved:8.0f} of {args.tpm:g}  ratio {tpm_achieved / args.tpm:.3f}"
          f"  (server's count: prompt estimate + max_tokens, {sum(tokens) / len(tokens):.1f} per request)")
    print(f"  accepted per 60 s window: {[windows[w] for w in sorted(windows)]}")
    print(f"  429s: {rejected} of {attempts} attempts = {share_429:.2%}")
    print(f"  utilisation of the binding limit: {binding:.3f} (target >= {UTILISATION_TARGET}); "
          f"429 share {share_429:.2%} (target <= {SHARE_429_TARGET:.0%})")
    if done.returncode != 0:
        print(done.stdout[-2000:], done.stderr[-2000:])
    return done.returncode == 0 and succeeded == args.requests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2600, help="per lane; 2,600 at 1,200 RPM is over 2 minutes")
    parser.add_argument("--rpm", type=float, default=1200)
    parser.add_argument("--tpm", type=float, default=100_000)
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "ANTHROPIC_"))}
    with tempfile.TemporaryDirectory() as tmp:
        lanes = [start_lane("declared limits", True, args, Path(tmp)),
                 start_lane("learned from headers", False, args, Path(tmp))]
        try:
            # Both at once, each against its own server: at 20 requests/s neither is CPU-bound.
            started = time.perf_counter()
            running = [subprocess.Popen([sys.executable, "-m", "harness", "run", str(lane.suite_path),
                                         "--reports-dir", str(lane.reports)], cwd=REPO, env=env,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                       for lane in lanes]
            outcomes = []
            for process in running:
                out, err = process.communicate()
                outcomes.append((subprocess.CompletedProcess(process.args, process.returncode, out, err),
                                 time.perf_counter() - started))
            print(f"requests per lane: {args.requests}; limits {args.rpm:g} RPM, {args.tpm:g} TPM in 60 s windows; "
                  f"max_tokens {MAX_TOKENS}; concurrency 64")
            ok = all([report(lane, done, wall, args) for lane, (done, wall) in zip(lanes, outcomes, strict=True)])
        finally:
            for lane in lanes:
                lane.server.terminate()
                lane.server.wait(timeout=10)
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
