"""Helpers shared by the benchmark scripts: a throwaway project and a fake server process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent


def write_project(root: Path, suite: dict, records: list[dict], template: str) -> Path:
    (root / "prompts" / "bench").mkdir(parents=True, exist_ok=True)
    (root / "prompts" / "bench" / "v1.j2").write_text(template, encoding="utf-8")
    (root / "suites").mkdir(exist_ok=True)
    (root / "suites" / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    path = root / "suites" / "bench.yaml"
    path.write_text(yaml.safe_dump(suite, sort_keys=False), encoding="utf-8")
    return path


def start_fake_server(reply: str = "billing") -> tuple[subprocess.Popen, str]:
    """The server runs in its own process so its work is not counted against the client's loop."""
    process = subprocess.Popen([sys.executable, "-m", "harness.testing.fake_server", "--reply", reply],
                               stdout=subprocess.PIPE, text=True, cwd=REPO)
    base_url = process.stdout.readline().strip()
    if not base_url.startswith("http"):
        process.kill()
        raise RuntimeError("fake server did not start")
    return process, base_url
