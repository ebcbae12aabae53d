"""What batch mode costs against realtime, at list prices, for the example tickets suite.

The repository's suites/tickets.yaml (its 230 tickets, its prompt and scorer) with its target
swapped for gpt-4o-mini on the fake server (which answers any model name with the same token
counts in both modes), run once realtime and once with --mode batch. Both runs' costs come from
their stores (metrics.cost_usd): realtime at the table's realtime price, batch at its batch
price. Prints both and the ratio (expected 0.5: the providers' batch APIs are half price), and
that both runs' outputs and scores are the same.

    python benchmarks/batch_cost.py [--model gpt-4o-mini]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import REPO, run_evalbatch, start_fake_server  # noqa: E402


def _project(root: Path, base_url: str, model: str) -> Path:
    shutil.copytree(REPO / "suites" / "data", root / "suites" / "data")
    shutil.copytree(REPO / "prompts", root / "prompts")
    suite = yaml.safe_load((REPO / "suites" / "tickets.yaml").read_text(encoding="utf-8"))
    suite["targets"] = [{"name": model, "provider": "openai", "model": model, "base_url": base_url + "/v1",
                         "params": {"temperature": 0.0, "max_tokens": 6}}]
    suite["engine"] = {**suite.get("engine", {}), "batch": {"poll_s": 0.05}}
    suite.pop("gate", None)
    path = root / "suites" / "tickets.yaml"
    path.write_text(yaml.safe_dump(suite, sort_keys=False), encoding="utf-8")
    return path


def _run(suite: Path, reports: Path, *mode: str) -> tuple[dict, list[tuple]]:
    _, done = run_evalbatch("run", str(suite), "--reports-dir", str(reports), *mode)
    if done.returncode != 0:
        raise SystemExit(f"evalbatch run {' '.join(mode)} exited {done.returncode}:\n{done.stdout[-2000:]}")
    [folder] = [p for p in (reports / "tickets").glob("*/") if p.is_dir()]
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    lines = [json.loads(line) for line in (folder / "results.jsonl").read_text(encoding="utf-8").splitlines()]
    return manifest["metrics"], sorted((line["request_id"], line["output"], json.dumps(line["scores"], sort_keys=True))
                                       for line in lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="gpt-4o-mini", help="A model of harness/cost/prices.json.")
    args = parser.parse_args()
    server, base_url = start_fake_server("billing")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            suite = _project(Path(tmp), base_url, args.model)
            realtime, realtime_lines = _run(suite, Path(tmp) / "realtime")
            batch, batch_lines = _run(suite, Path(tmp) / "batch", "--mode", "batch")
    finally:
        server.kill()
        server.wait()
    ratio = batch["cost_usd"] / realtime["cost_usd"]
    print(f"tickets suite, {realtime['submitted']} requests, {args.model} at list prices (harness/cost/prices.json):")
    print(f"  realtime: ${realtime['cost_usd']:.6f}  ({realtime['input_tokens_per_item']:.1f} in, "
          f"{realtime['output_tokens_per_item']:.1f} out tokens per item)")
    print(f"  batch:    ${batch['cost_usd']:.6f}")
    print(f"  batch / realtime = {ratio:.3f}x (expected 0.500x); same outputs and scores: "
          f"{'yes' if batch_lines == realtime_lines else 'NO'}")
    if abs(ratio - 0.5) > 1e-9 or batch_lines != realtime_lines:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
