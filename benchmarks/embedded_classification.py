"""The embedded model (Gemma 3 270M, llama-cpp-python) on a 200-item classification slice.

Runs the tickets suite's `first200` slice end to end (plan, engine, run store, scoring,
results) into a temporary folder and prints the wall time against the 60 s limit.

    python benchmarks/embedded_classification.py
"""

from __future__ import annotations

import io
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rich.console import Console  # noqa: E402

from harness.engine.providers.local import EMBEDDED_MODEL, _load  # noqa: E402
from harness.execute import RunOptions, execute  # noqa: E402
from harness.plan import PlanOptions, plan_run  # noqa: E402
from harness.report.summary import summarize_scores  # noqa: E402

LIMIT_S = 60.0
SUITE = Path(__file__).resolve().parent.parent / "suites" / "tickets.yaml"


def main() -> None:
    started = time.perf_counter()
    _load(EMBEDDED_MODEL)
    load_s = time.perf_counter() - started
    plan = plan_run(SUITE, PlanOptions(slices=("first200",)))
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        outcome = execute(plan, RunOptions(reports_dir=Path(tmp)), Console(file=io.StringIO()))
        run_s = time.perf_counter() - started
    [accuracy] = summarize_scores(outcome.lines)
    print(f"items: {plan.item_count} (tickets suite, slice first200, prompt {plan.prompt.label})")
    print(f"model load: {load_s:.1f} s (once per process, not counted below)")
    print(f"run wall time: {run_s:.1f} s = {run_s / plan.item_count:.3f} s/item")
    print(f"ratio to the {LIMIT_S:.0f} s limit: {run_s / LIMIT_S:.2f} (must be < 1.00)")
    print(f"accuracy: {accuracy.mean:.3f}, 95% CI [{accuracy.ci_low:.3f}, {accuracy.ci_high:.3f}]")


if __name__ == "__main__":
    main()
