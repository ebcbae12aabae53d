"""The HTML report of a 100,000-item comparison: render time and file size against the limits
(10 s, 10 MB). Prints the figures and their ratios to the limits; not a timed test.

Two real runs of the same 100,000 tickets (prompt v1, then v2) answered by the fake server in
its own process, where v2 gets 5% of items wrong that v1 got right and 2% right that v1 got wrong
(so about 7,000 changed items, each listed in the HTML with its input and both outputs);
`baseline set` from v1, `gate` of v2, then `evalbatch report` in each format, each a whole
process as a user runs it (imports, reading the stores and the baseline, rendering, writing).

    python benchmarks/report_size.py [--items 100000] [--workdir DIR] [--worst]

--worst: v2 answers "bug" to every ticket, so about 80,000 items regress; the HTML lists the
first 10,000 changed items (regressed first) and counts the rest.

--workdir keeps the project (runs, baseline) in DIR, and a second call with the same DIR
measures the reports again without sending the runs again.
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
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import REPO, gate_bench_suite  # noqa: E402

LAST_CPU_S = [0.0]
TIME_LIMIT_S = 10.0
SIZE_LIMIT_MB = 10.0
LABELS = ["billing", "bug", "feature request", "account access", "cancellation"]
TOPICS = {"charge": "billing", "crash": "bug", "wish": "feature request", "login": "account access", "quit": "cancellation"}
# First match wins: v2 answers "tricky" tickets wrongly, v1 answers "hard" ones wrongly, both
# read the topic word otherwise.
RULES = {"Route this ticket.\ntricky": "bug", "Ticket: hard": "cancellation",
         **{f"about {topic}": label for topic, label in TOPICS.items()}}
WORST_RULES = {"Route this ticket.": "bug", **{f"about {topic}": label for topic, label in TOPICS.items()}}
SERVER = """
import sys, time
from harness.testing.fake_server import FakeLLMServer, keyword_replier
import json
server = FakeLLMServer(keyword_replier(json.loads(sys.argv[1]))).start()
print(server.base_url, flush=True)
while True:
    time.sleep(3600)
"""


def write_project(root: Path, base_url: str, items: int) -> Path:
    (root / "prompts" / "bench").mkdir(parents=True)
    (root / "prompts" / "bench" / "v1.j2").write_text("Ticket: {{ text }}\nTeam:", encoding="utf-8")
    (root / "prompts" / "bench" / "v2.j2").write_text("Route this ticket.\n{{ text }}\nTeam:", encoding="utf-8")
    (root / "suites").mkdir()
    topics = list(TOPICS)
    with (root / "suites" / "data.jsonl").open("w", encoding="utf-8") as handle:
        for n in range(items):
            topic = topics[n % 7 % 5]
            lead = "tricky" if n % 20 == 0 and TOPICS[topic] != "bug" else "hard" if n % 50 == 1 else "plain"
            text = f"{lead} ticket {n} about {topic}: " + "the invoice shows a charge I do not recognise " * (1 + n % 3)
            handle.write(json.dumps({"id": f"b{n:07d}", "text": text, "label": TOPICS[topic],
                                     "customer": f"c{n % 997}", "lang": "en" if n % 3 else "de"}) + "\n")
    suite = gate_bench_suite(base_url, LABELS)
    path = root / "suites" / "bench.yaml"
    path.write_text(yaml.safe_dump(suite, sort_keys=False), encoding="utf-8")
    return path


def evalbatch(*args: str, ok: tuple[int, ...] = (0,)) -> tuple[float, str]:
    """Runs one CLI command in its own process; returns its wall time (and, in `cpu_s`, its CPU time)."""
    started, before = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run([sys.executable, "-c", "from harness.cli import main; main()", *args],
                          capture_output=True, text=True, cwd=REPO)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    LAST_CPU_S[0] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if done.returncode not in ok:
        raise RuntimeError(f"evalbatch {' '.join(args)}: exit {done.returncode}\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return wall, done.stdout


def latest_run(root: Path) -> str:
    return sorted(p.name for p in (root / "reports" / "bench").iterdir() if p.is_dir())[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--workdir", type=Path, help="keep the project here (and reuse its runs if present)")
    parser.add_argument("--worst", action="store_true", help="v2 answers every ticket wrongly")
    args = parser.parse_args()
    rules = WORST_RULES if args.worst else RULES
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
        measure(args.workdir.resolve(), args.items, rules)
        return
    with tempfile.TemporaryDirectory() as tmp:
        measure(Path(tmp), args.items, rules)


def measure(root: Path, items: int, rules: dict[str, str]) -> None:
    if not (root / "reports" / "bench").is_dir():
        make_runs(root, items, rules)
    candidate = latest_run(root)
    folder = root / "reports" / "bench" / candidate
    measure_reports(folder)


def make_runs(root: Path, items: int, rules: dict[str, str]) -> None:
    server = subprocess.Popen([sys.executable, "-c", SERVER, json.dumps(rules)], stdout=subprocess.PIPE, text=True,
                              cwd=REPO)
    try:
        base_url = (server.stdout.readline() if server.stdout else "").strip()
        suite = str(write_project(root, base_url, items))
        wall, _ = evalbatch("run", suite, "--new")
        print(f"run v1: {items:,} requests in {wall:.1f} s", flush=True)
        evalbatch("baseline", "set", suite, "--from", latest_run(root))
        wall, _ = evalbatch("run", suite, "--new", "--prompt-version", "v2")
        print(f"run v2: {items:,} requests in {wall:.1f} s", flush=True)
        wall, _ = evalbatch("gate", latest_run(root), "--suite", suite, ok=(0, 1, 3))
        print(f"gate: {wall:.2f} s (for reference: the comparison every report format also reads)")
    finally:
        server.terminate()
        server.wait(timeout=10)


def measure_reports(folder: Path) -> None:
    # On a shared 2-core machine the wall time follows the load; the CPU time much less.
    print(f"load average {os.getloadavg()[0]:.2f} at the start")
    document = None
    for fmt, name in (("html", "report.html"), ("md", "report.md"), ("junit", "report.junit.xml"),
                      ("json", "report.json")):
        wall, _ = evalbatch("report", str(folder), "--format", fmt)
        size_mb = (folder / name).stat().st_size / 1e6
        line = f"report --format {fmt:<5}: {wall:6.2f} s (CPU {LAST_CPU_S[0]:5.2f} s), {size_mb:7.3f} MB"
        if fmt == "html":
            line += (f"   ratios to the limits: time {wall / TIME_LIMIT_S:.2f} (limit {TIME_LIMIT_S:g} s), "
                     f"size {size_mb / SIZE_LIMIT_MB:.2f} (limit {SIZE_LIMIT_MB:g} MB)")
        print(line, flush=True)
        if fmt == "json":
            document = json.loads((folder / name).read_text(encoding="utf-8"))
    if document is not None:
        counts = document["item_counts"][0]
        print(f"items: {counts['regressed']:,} regressed, {counts['improved']:,} improved, "
              f"{counts['unchanged']:,} unchanged (the HTML lists up to 10,000 changed items and 200 unchanged); "
              f"verdict {document['gate']['verdict']}")


if __name__ == "__main__":
    main()
