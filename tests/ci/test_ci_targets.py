"""`evalbatch ci` on a suite of two targets: each target is gated against the suite's baseline on
its own, the job's verdict is the worst of them, and the summary and JUnit name each target."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from harness.testing.fake_server import FakeLLMServer
from tests.ci.gate_repo import git, make_repo, reply


@pytest.fixture
def server():
    with FakeLLMServer(reply) as running:
        yield running


@pytest.fixture
def worse_server():
    """Another endpoint whose model answers `bug` to everything."""
    with FakeLLMServer(lambda prompt: "bug") as running:
        yield running


def _repo(tmp_path: Path, server, cli, second_url: str) -> Path:
    root = make_repo(tmp_path, server.base_url, cli)
    path = root / "suites" / "tickets.yaml"
    spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    [target] = spec["targets"]
    # Another max_tokens: two targets alike in everything would send the same requests (refused).
    spec["targets"] = [dict(target, name="first"), dict(target, name="second", base_url=second_url + "/v1",
                                                        params={**target["params"], "max_tokens": 7})]
    path.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    git(root, "commit", "-q", "-am", "a second target")
    (root / "prompts" / "shared" / "header.j2").write_text(
        "{# reviewed #}Route the support ticket to one team.\n", encoding="utf-8")  # a change to gate
    server.log.reset()
    return root


def _junit(repo: Path) -> dict[str, list[tuple[str, bool]]]:
    root = ET.parse(repo / "reports" / "ci" / "junit.xml").getroot()
    return {suite.get("name"): [(case.get("name"), case.find("failure") is not None)
                                for case in suite.findall("testcase")] for suite in root.findall("testsuite")}


def test_two_good_targets_pass_each_gated(cli, tmp_path, server):
    repo = _repo(tmp_path, server, cli, server.base_url)
    result = cli("ci", str(repo / "suites"), "--base", "main")
    assert result.exit_code == 0, result.output
    assert server.log.total == 120  # the 60 items, for each target
    tickets = {name: cases for name, cases in _junit(repo).items() if "tickets" in name}
    assert len(tickets) == 2, tickets
    assert not any(failed for cases in tickets.values() for _, failed in cases)


def test_one_regressing_target_fails_the_job_naming_it(cli, tmp_path, server, worse_server):
    repo = _repo(tmp_path, server, cli, worse_server.base_url)
    result = cli("ci", str(repo / "suites"), "--base", "main")
    assert result.exit_code == 1, result.output
    summary = (repo / "reports" / "ci" / "summary.md").read_text()
    assert summary.startswith("## evalbatch CI: **FAIL**"), summary
    assert "first: **PASS**, second: **FAIL**" in summary
    assert "(target first)" in summary and "(target second)" in summary  # a gate section for each
    tickets = {name: cases for name, cases in _junit(repo).items() if "tickets" in name}
    failing = sorted(name for name, cases in tickets.items() if any(failed for _, failed in cases))
    passing = sorted(name for name, cases in tickets.items() if not any(failed for _, failed in cases))
    assert len(failing) == 1 and "second" in failing[0], tickets
    assert len(passing) == 1 and "first" in passing[0], tickets
