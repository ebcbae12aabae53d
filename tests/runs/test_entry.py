"""The `evalbatch` console script's own start and exit (harness/entry.py, also `python -m
harness`): it skips the interpreter's last garbage collections, so anything that relied on a
finalizer at exit would show here, as an "Exception ignored" on stderr or a lost exit code."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import REPO, TICKETS, base_suite, write_records


def _evalbatch(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "ANTHROPIC_"))}
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True, text=True, env=env,
                          timeout=300)


def _clean_exit(done: subprocess.CompletedProcess) -> None:
    assert "Exception ignored" not in done.stderr and "Traceback" not in done.stderr, done.stderr


def test_a_run_and_its_gate_exit_cleanly_with_their_codes(project, fake_server):
    write_records(project.root / "suites" / "data" / "tickets.jsonl", TICKETS)
    project.write_suite(base_suite(fake_server.base_url))
    done = _evalbatch("run", str(project.suite_path))
    assert done.returncode == 0, done.stdout + done.stderr
    _clean_exit(done)
    [run_dir] = project.run_dirs()
    assert (run_dir / "results.jsonl").read_text().count("\n") == len(TICKETS)
    assert not (run_dir / "run.sqlite-wal").exists() or (run_dir / "run.sqlite-wal").stat().st_size == 0
    missing = _evalbatch("gate", run_dir.name, "--suite", str(project.suite_path))  # no baseline yet: exit 2
    assert missing.returncode == 2 and "baseline" in missing.stderr + missing.stdout
    _clean_exit(missing)
    assert _evalbatch("--version").stdout.startswith("evalbatch, version")


@pytest.mark.embedded
def test_a_run_on_the_embedded_model_exits_cleanly(tmp_path):
    """The model's finalizer once ran after llama_cpp's module was torn down (TypeError on stderr)."""
    done = _evalbatch("run", str(REPO / "suites" / "tickets.yaml"), "--limit", "2", "--reports-dir", str(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    _clean_exit(done)
