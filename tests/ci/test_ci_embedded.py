"""`evalbatch ci` end to end on the embedded model, in a git copy of the tickets suite cut to its
first 80 tickets: rewriting the few-shot prompt as zero-shot FAILs (exit 1) with a summary naming
the metric and slice; a comment inside the template PASSes; the JUnit file counts the checks."""

from __future__ import annotations

import shutil
import subprocess
import xml.etree.ElementTree as ET

import pytest
import yaml

from tests.conftest import REPO

pytestmark = pytest.mark.embedded

PROMPT = "prompts/ticket-routing/v1.j2"


def _git(root, *args):
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args], cwd=root, check=True,
                   capture_output=True)


@pytest.fixture(scope="module")
def tickets_repo(tmp_path_factory):
    """The tickets suite on its first 80 tickets with a 5-point margin (as tests/compare/
    test_gate_embedded.py: 80 identical answers show non-inferiority at it, zero-shot fails it;
    at 40 items neither verdict is reachable at one margin), its baseline set from a run and
    committed."""
    from click.testing import CliRunner

    from harness.cli import main

    root = tmp_path_factory.mktemp("tickets-ci")
    shutil.copytree(REPO / "prompts" / "ticket-routing", root / "prompts" / "ticket-routing")
    (root / "suites" / "data").mkdir(parents=True)
    shutil.copy(REPO / "suites" / "data" / "tickets.jsonl", root / "suites" / "data" / "tickets.jsonl")
    suite = yaml.safe_load((REPO / "suites" / "tickets.yaml").read_text())
    suite["slices"].append({"name": "first80", "first_n": 80})
    suite["evaluate"] = ["first80"]
    suite["gate"] = {"primary": [{"metric": "accuracy", "margin": 0.05}], "slices": ["english"]}
    (root / "suites" / "tickets.yaml").write_text(yaml.safe_dump(suite, sort_keys=False))
    (root / ".gitignore").write_text("reports/\n")
    runner = CliRunner()
    ran = runner.invoke(main, ["run", str(root / "suites" / "tickets.yaml")], catch_exceptions=False)
    assert ran.exit_code == 0, ran.output
    run_id = next(p.name for p in (root / "reports" / "tickets").iterdir() if p.is_dir())
    made = runner.invoke(main, ["baseline", "set", str(root / "suites" / "tickets.yaml"), "--from", run_id])
    assert made.exit_code == 0, made.output
    _git(root, "init", "-q", "-b", "main")
    _git(root, "add", ".")
    _git(root, "commit", "-q", "-m", "tickets suite and baseline")
    return root


@pytest.fixture
def restore(tickets_repo):
    yield tickets_repo
    _git(tickets_repo, "checkout", "--", ".")


def test_few_shot_to_zero_shot_fails_naming_metric_and_slice(cli, restore):
    root = restore
    zero_shot = (root / "prompts" / "ticket-routing" / "v2.j2").read_text()
    (root / PROMPT).write_text(zero_shot)
    result = cli("ci", str(root / "suites"), "--base", "main")
    assert result.exit_code == 1, result.output
    summary = (root / "reports" / "ci" / "summary.md").read_text()
    assert summary.startswith("## evalbatch CI: **FAIL**")
    assert f"| tickets | prompt {PROMPT}: differs from main |" in summary
    assert "FAIL: accuracy (slice first80)" in summary
    junit = ET.parse(root / "reports" / "ci" / "junit.xml").getroot()
    cases = junit.findall("testsuite/testcase")
    assert [c.get("name") for c in cases] == ["accuracy (slice first80)"]
    assert (junit.get("tests"), junit.get("failures")) == ("1", "1")


def test_a_comment_inside_the_template_passes(cli, restore):
    root = restore
    text = (root / PROMPT).read_text()
    (root / PROMPT).write_text("{# reviewed: the examples cover every team #}" + text)
    result = cli("ci", str(root / "suites"), "--base", "main")
    assert result.exit_code == 0, result.output
    assert "tickets: gate PASS" in result.output
    junit = ET.parse(root / "reports" / "ci" / "junit.xml").getroot()
    assert (junit.get("tests"), junit.get("failures")) == ("1", "0")
