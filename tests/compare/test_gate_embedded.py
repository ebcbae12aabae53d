"""The gate end to end on the embedded model: the tickets suite's few-shot prompt as baseline,
its zero-shot prompt as candidate FAILs; the same prompt against itself PASSes; too few items
is INCONCLUSIVE and says how many more are needed."""

from __future__ import annotations

import json
import re
import shutil

import pytest
import yaml

from tests.conftest import REPO

pytestmark = pytest.mark.embedded


@pytest.fixture(scope="module")
def tickets_project(tmp_path_factory):
    """A copy of the tickets suite (so baselines land in a temp folder, not the repo) on its first
    80 tickets, with a 5-point margin: identical runs of 80 items can show non-inferiority at 5
    points (a 2-point margin needs about 190)."""
    root = tmp_path_factory.mktemp("tickets")
    shutil.copytree(REPO / "prompts" / "ticket-routing", root / "prompts" / "ticket-routing")
    (root / "suites" / "data").mkdir(parents=True)
    shutil.copy(REPO / "suites" / "data" / "tickets.jsonl", root / "suites" / "data" / "tickets.jsonl")
    suite = yaml.safe_load((REPO / "suites" / "tickets.yaml").read_text())
    suite["slices"].append({"name": "first80", "first_n": 80})
    suite["evaluate"] = ["first80"]
    suite["gate"] = {"primary": [{"metric": "accuracy", "margin": 0.05}], "slices": ["english"]}
    (root / "suites" / "tickets.yaml").write_text(yaml.safe_dump(suite, sort_keys=False))
    return root


def _run(cli, root, *args) -> str:
    result = cli("run", str(root / "suites" / "tickets.yaml"), "--new", *args)
    assert result.exit_code == 0, result.output
    return re.search(r"run (\S+): complete", result.output).group(1)


@pytest.fixture(scope="module")
def baseline_run(tickets_project):
    from click.testing import CliRunner

    from harness.cli import main

    def cli(*args):
        return CliRunner().invoke(main, list(args), catch_exceptions=False)

    run_id = _run(cli, tickets_project)
    result = cli("baseline", "set", str(tickets_project / "suites" / "tickets.yaml"), "--from", run_id)
    assert result.exit_code == 0, result.output
    return run_id


def _gate(cli, root, run_id, *extra):
    return cli("gate", run_id, "--reports-dir", str(root / "reports"), *extra)


def test_zero_shot_candidate_fails_naming_metric_and_slice(cli, tickets_project, baseline_run):
    candidate = _run(cli, tickets_project, "--prompt-version", "v2")
    result = _gate(cli, tickets_project, candidate)
    assert result.exit_code == 1, result.output
    assert "gate: FAIL" in result.output
    assert re.search(r"FAIL: accuracy \(slice first80\) -\d+\.\d pts, 95% CI \[-[\d.]+, -[\d.]+\], below the -5 pts",
                     result.output), result.output
    verdict = json.loads(_gate(cli, tickets_project, candidate, "--json").output)
    assert verdict["verdict"] == "FAIL"
    refused = cli("promote", str(tickets_project / "suites" / "tickets.yaml"), "--run", candidate)
    assert refused.exit_code == 1 and "only PASS or WARN may be promoted" in refused.output


def test_same_prompt_against_itself_passes(cli, tickets_project, baseline_run):
    candidate = _run(cli, tickets_project)  # a second, independent run of the same configuration
    result = _gate(cli, tickets_project, candidate)
    assert result.exit_code == 0, result.output
    assert "gate: PASS" in result.output
    promoted = cli("promote", str(tickets_project / "suites" / "tickets.yaml"), "--run", candidate)
    assert promoted.exit_code == 0, promoted.output
    record = json.loads((tickets_project / "baselines" / "tickets" / "promoted.json").read_text())
    assert record["prompt_version"] == "v1" and record["verdict"] == "PASS"


def test_too_few_items_is_inconclusive_and_says_how_many_more(cli, tickets_project, baseline_run):
    candidate = _run(cli, tickets_project, "--limit", "12")
    result = _gate(cli, tickets_project, candidate)
    assert result.exit_code == 3, result.output
    assert "gate: INCONCLUSIVE" in result.output
    assert re.search(r"\(\d+ more\)", result.output), result.output
