"""Comparisons read the run store: a run killed before it wrote results.jsonl still compares on
the items it finished, says how many are missing, and is not modified by being read."""

from __future__ import annotations

import hashlib
import sqlite3

import pytest

from harness.testing.fake_server import FakeLLMServer, keyword_replier
from tests.conftest import base_suite
from tests.runs.processes import ITEMS, many_tickets, start, succeeded_ids, wait_for_progress


@pytest.fixture
def slow_server():
    with FakeLLMServer(keyword_replier({}, default="billing"), latency_s=0.05) as server:
        yield server


def _baseline_from_a_complete_run(project, cli) -> None:
    assert cli("run", str(project.suite_path)).exit_code == 0
    [complete] = project.run_dirs()
    assert cli("baseline", "set", str(project.suite_path), "--from", complete.name).exit_code == 0


def _sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_killed_run_without_results_file_compares_on_its_finished_items(project, cli, slow_server):
    many_tickets(project)
    project.write_suite(base_suite(slow_server.base_url))
    _baseline_from_a_complete_run(project, cli)
    process = start("run", str(project.suite_path), "--new")
    reports = project.root / "reports"
    run_dir = wait_for_progress(reports / "demo", process, at_least=30, ignore=tuple(project.run_dirs()))
    process.kill()
    process.wait(timeout=10)
    (run_dir / "results.jsonl").unlink(missing_ok=True)
    missing = ITEMS - len(succeeded_ids(run_dir))
    assert 0 < missing < ITEMS - 30 + 1
    store_before = _sha256(run_dir / "run.sqlite")

    compared = cli("compare", run_dir.name, "--reports-dir", str(reports))
    assert compared.exit_code == 0, compared.output
    assert f"{missing} item(s) of the candidate were never finished" in " ".join(compared.output.split())
    gated = cli("gate", run_dir.name, "--reports-dir", str(reports), "--json")
    assert gated.exit_code in (0, 1, 3), gated.output  # a verdict, not an error
    assert f"{missing} item(s) of the candidate were never finished" in gated.output
    assert _sha256(run_dir / "run.sqlite") == store_before  # read, not migrated or written
    assert not (run_dir / "results.jsonl").exists()


def test_a_store_older_than_the_items_table_falls_back_to_results_file(project, cli, fake_server):
    project.write_suite(base_suite(fake_server.base_url))
    _baseline_from_a_complete_run(project, cli)
    assert cli("run", str(project.suite_path), "--new").exit_code == 0
    old = project.run_dirs()[-1]
    db = sqlite3.connect(old / "run.sqlite")
    db.executescript("DROP TABLE items; PRAGMA user_version = 2;")  # as a store of the schema before
    db.close()
    reports = str(project.root / "reports")
    compared = cli("compare", old.name, "--reports-dir", reports)
    assert compared.exit_code == 0, compared.output
    (old / "results.jsonl").unlink()
    refused = cli("compare", old.name, "--reports-dir", reports)
    assert refused.exit_code == 2
    assert "too old to hold its items" in refused.output and "--resume" in refused.output
