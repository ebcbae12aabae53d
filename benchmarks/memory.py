"""Peak memory (RSS) and wall time of whole `evalbatch` processes as the work grows.

Each step is its own process (the `evalbatch` CLI, as a user runs it) against the fake server
(its own process) on 127.0.0.1; its peak RSS is what the kernel reports for it when it ends
(wait4). Two parts:

- run: `evalbatch run` of a small and a large suite (default 20,000 and 200,000 requests): the
  large one's peak should be <= 1.2x the small one's and under 300 MB;
- compare: two runs of the same suite (prompt v1 and v2, default 100,000 items each), then
  `baseline set`, `compare` and `gate` of v2 against v1, each under 300 MB and 5 s.

    python benchmarks/memory.py [--small 20000] [--large 200000] [--compare-items 100000] [--only run|compare]
                               [--compare-project DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import REPO, gate_bench_suite, start_fake_server  # noqa: E402

RSS_LIMIT_MB = 300.0
GROWTH_LIMIT = 1.2
COMPARE_TIME_LIMIT_S = 5.0
LABELS = ["billing", "bug", "feature request", "account access", "cancellation"]


@dataclass(frozen=True)
class Step:
    name: str
    peak_mb: float
    wall_s: float
    output: str


def write_suite_project(root: Path, base_url: str, items: int) -> Path:
    """A suite of `items` tickets of varied length, with clusters and a category field, and two
    prompt versions (so a second run is different work)."""
    for version, template in (("v1", "Ticket: {{ text }}\nTeam:"), ("v2", "Route this ticket.\n{{ text }}\nTeam:")):
        (root / "prompts" / "bench").mkdir(parents=True, exist_ok=True)
        (root / "prompts" / "bench" / f"{version}.j2").write_text(template, encoding="utf-8")
    (root / "suites").mkdir(exist_ok=True)
    with (root / "suites" / "data.jsonl").open("w", encoding="utf-8") as handle:
        for n in range(items):
            text = f"benchmark ticket {n}: " + "the invoice shows a charge I do not recognise " * (1 + n % 4)
            handle.write(json.dumps({"id": f"b{n:07d}", "text": text, "label": LABELS[n % 7 % 5],
                                     "customer": f"c{n % 997}", "lang": "en" if n % 3 else "de"}) + "\n")
    suite = gate_bench_suite(base_url, LABELS)
    path = root / "suites" / "bench.yaml"
    path.write_text(yaml.safe_dump(suite, sort_keys=False), encoding="utf-8")
    return path


def evalbatch(name: str, *args: str, ok: tuple[int, ...] = (0,)) -> Step:
    """Runs one CLI command in its own process; its peak RSS comes from wait4's rusage."""
    command = [sys.executable, "-c", "from harness.cli import main; main()", *args]
    with tempfile.TemporaryFile("w+") as out:
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=REPO,
                                   env={**os.environ, "COLUMNS": "160"})
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        output = out.read()
    if process.returncode not in ok:
        raise RuntimeError(f"{name}: exit {process.returncode}\n{output[-3000:]}")
    # ru_maxrss is in kilobytes on Linux.
    return Step(name, usage.ru_maxrss / 1024, wall, output)


def latest_run(root: Path) -> str:
    return sorted(p.name for p in (root / "reports" / "bench").iterdir() if p.is_dir())[-1]


def show(step: Step) -> None:
    print(f"  {step.name:<34} peak RSS {step.peak_mb:7.1f} MB   wall {step.wall_s:7.2f} s", flush=True)


def measure_runs(base_url: str, small: int, large: int) -> None:
    print(f"run: {small:,} vs {large:,} requests (one process each)")
    steps = []
    for count in (small, large):
        with tempfile.TemporaryDirectory() as tmp:
            suite = write_suite_project(Path(tmp), base_url, count)
            steps.append(evalbatch(f"run {count:,} requests", "run", str(suite), "--new"))
            show(steps[-1])
    ratio = steps[1].peak_mb / steps[0].peak_mb
    print(f"  ratio large/small peak RSS: {ratio:.2f} (limit {GROWTH_LIMIT}); large peak / {RSS_LIMIT_MB:.0f} MB: "
          f"{steps[1].peak_mb / RSS_LIMIT_MB:.2f}")
    print(f"  throughput: {small / steps[0].wall_s:.0f} and {large / steps[1].wall_s:.0f} req/s (whole process)")


def measure_compare(base_url: str, items: int, project: Path | None) -> None:
    """project: a folder to build the two runs in and keep (reused as it is when it holds them
    already, so the comparison can be measured again without re-running 2 x `items` requests)."""
    print(f"compare: two runs of {items:,} items")
    if project is not None:
        project.mkdir(parents=True, exist_ok=True)
        compare_in(project, base_url, items)
        return
    with tempfile.TemporaryDirectory() as tmp:
        compare_in(Path(tmp), base_url, items)


def build_compare_runs(root: Path, base_url: str, items: int) -> tuple[str, str]:
    """The suite and the candidate run (v2) of a project whose baseline is run v1; built unless the
    folder holds them from an earlier build of the same size."""
    built = root / "built.json"
    if built.is_file():
        record = json.loads(built.read_text(encoding="utf-8"))
        if record["items"] == items:
            print(f"  reusing the runs built in {root}")
            return record["suite"], record["candidate"]
        raise SystemExit(f"{root} holds runs of {record['items']:,} items, not {items:,}: use another folder")
    suite = str(write_suite_project(root, base_url, items))
    show(evalbatch("run v1", "run", suite, "--new"))
    baseline_run = latest_run(root)
    show(evalbatch("baseline set", "baseline", "set", suite, "--from", baseline_run))
    show(evalbatch("run v2", "run", suite, "--new", "--prompt-version", "v2"))
    candidate = latest_run(root)
    built.write_text(json.dumps({"items": items, "suite": suite, "candidate": candidate}), encoding="utf-8")
    return suite, candidate


def compare_in(root: Path, base_url: str, items: int) -> None:
    suite, candidate = build_compare_runs(root, base_url, items)
    size = (root / "baselines" / "bench" / "production.json").stat().st_size
    print(f"  baseline file: {size / 1e6:.1f} MB")
    for name, args, ok in (("compare", ("compare", candidate, "--suite", suite), (0,)),
                           ("gate", ("gate", candidate, "--suite", suite), (0, 1, 3))):
        # The process's CPU time (user + system) as well: on a loaded machine wall time says
        # more about the neighbours than about the command.
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        step = evalbatch(name, *args, ok=ok)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        show(step)
        print(f"    CPU {cpu:.2f} s; / limits: RSS {step.peak_mb / RSS_LIMIT_MB:.2f}, "
              f"time {step.wall_s / COMPARE_TIME_LIMIT_S:.2f} (CPU {cpu / COMPARE_TIME_LIMIT_S:.2f})")
        if name == "gate":
            folder = next((root / "reports" / "bench").glob(f"*{candidate}*"), None)
            if folder is not None and (folder / "gate.json").is_file():
                print(f"    gate.json: {(folder / 'gate.json').stat().st_size / 1e6:.1f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", type=int, default=20_000)
    parser.add_argument("--large", type=int, default=200_000)
    parser.add_argument("--compare-items", type=int, default=100_000)
    parser.add_argument("--only", choices=["run", "compare"])
    parser.add_argument("--compare-project", type=Path,
                        help="build the compare part's two runs in this folder and keep them; "
                             "reused when it holds them already")
    args = parser.parse_args()
    server, base_url = start_fake_server()
    try:
        baseline = evalbatch("imports only (evalbatch --version)", "--version")
        show(baseline)
        if args.only in (None, "run"):
            measure_runs(base_url, args.small, args.large)
        if args.only in (None, "compare"):
            measure_compare(base_url, args.compare_items, args.compare_project)
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()
