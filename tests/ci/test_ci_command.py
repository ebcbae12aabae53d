"""`evalbatch ci` against the fake server: exit codes, the summary, JUnit, the budget, reuse of
paid work, and running from a subfolder."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from harness.testing.fake_server import FakeLLMServer, FaultRule
from tests.ci.gate_repo import REGRESSION, change_header, git, make_repo, reply, suite, write_suite


@pytest.fixture
def server():
    with FakeLLMServer(reply) as running:
        yield running


@pytest.fixture
def repo(tmp_path: Path, server, cli) -> Path:
    root = make_repo(tmp_path, server.base_url, cli)
    server.log.reset()
    return root


def _ci(cli, repo: Path, *args: str):
    return cli("ci", str(repo / "suites"), "--base", "main", *args)


def test_regressing_change_fails_naming_metric_and_slice(cli, repo, server):
    change_header(repo, f"Route the support ticket to one team. {REGRESSION}\n")
    result = _ci(cli, repo)
    assert result.exit_code == 1, result.output
    assert server.log.total == 60  # the power plan asks for more than the 60 items: all of them
    summary = (repo / "reports" / "ci" / "summary.md").read_text()
    assert summary.startswith("## evalbatch CI: **FAIL**")
    assert "| tickets | template prompts/shared/header.j2: differs from main |" in summary
    assert "all 60 items (power plan:" in summary
    assert "FAIL: accuracy (slice all)" in summary
    assert "| fresh | template prompts/shared/header.j2: differs from main | | | skipped: no baseline at " \
           "baselines/fresh/production.json" in summary
    assert (repo / "reports" / "ci" / "tickets.html").read_text().startswith("<!DOCTYPE html>")
    assert "`reports/ci/tickets.html`" in summary
    junit = ET.parse(repo / "reports" / "ci" / "junit.xml").getroot()
    suites = {s.get("name"): s for s in junit.findall("testsuite")}
    assert set(suites) == {"evalbatch.tickets", "evalbatch.fresh"}
    cases = suites["evalbatch.tickets"].findall("testcase")
    assert [c.get("name") for c in cases] == ["accuracy (slice all)", "output_length"]
    assert cases[0].find("failure") is not None and cases[1].find("failure") is None
    assert suites["evalbatch.fresh"].find("testcase/skipped") is not None
    assert (junit.get("tests"), junit.get("failures"), junit.get("skipped")) == ("3", "1", "1")


def test_harmless_change_passes_and_a_rerun_pays_nothing(cli, repo, server):
    change_header(repo, "{# reviewed by the support lead #}Route the support ticket to one team.\n")
    result = _ci(cli, repo)
    assert result.exit_code == 0, result.output
    assert "tickets: gate PASS" in result.output
    assert server.log.total == 60
    again = _ci(cli, repo)  # the job re-triggered: the same work is gated again, not sent again
    assert again.exit_code == 0, again.output
    assert server.log.total == 60
    assert "already holds this sample" in again.output and "reused: same work, nothing sent" in again.output


def test_too_small_a_sample_is_inconclusive(cli, repo):
    change_header(repo, "Route the support ticket to exactly one team.\n")
    result = _ci(cli, repo, "--sample", "5")
    assert result.exit_code == 3, result.output
    summary = (repo / "reports" / "ci" / "summary.md").read_text()
    assert "5 of 60 items (--sample)" in summary and "**INCONCLUSIVE**" in summary


def test_nothing_affected_passes_and_says_so(cli, repo, server):
    result = _ci(cli, repo)
    assert result.exit_code == 0, result.output
    assert "nothing to gate: no suite is affected" in result.output
    assert (repo / "reports" / "ci" / "summary.md").read_text().startswith("## evalbatch CI: nothing to gate")
    assert server.log.total == 0


def test_bad_input_exits_2_and_sends_nothing(cli, repo, server):
    change_header(repo, f"{REGRESSION}\n")
    result = cli("ci", str(repo / "suites"), "--base", "no-such-branch")
    assert result.exit_code == 2 and "unknown git revision 'no-such-branch'" in result.output
    result = cli("ci", str(repo / "no-suites"), "--base", "main")
    assert result.exit_code == 2 and "not a folder" in result.output
    spec = suite("tickets", "route", server.base_url)
    spec["gate"]["primary"] = [{"metric": "no_such_metric"}]
    write_suite(repo, spec)
    result = _ci(cli, repo)
    assert result.exit_code == 2, result.output
    assert "no_such_metric" in result.output
    assert server.log.total == 0


def test_over_budget_refuses_before_sending(cli, repo, server):
    spec = suite("tickets", "route", server.base_url)
    spec["targets"][0]["pricing"] = {"input_per_mtok": 1000.0, "output_per_mtok": 1000.0}
    write_suite(repo, spec)
    change_header(repo, "Route the ticket.\n")
    result = _ci(cli, repo, "--budget", "0.01")
    assert result.exit_code == 4, result.output
    assert "refused: the samples would cost up to $" in result.output and "over the budget of $0.01" in result.output
    assert server.log.total == 0
    assert _ci(cli, repo, "--budget", "100").exit_code == 0
    assert server.log.total == 60


def test_unknown_price_cannot_hold_a_budget(cli, repo, server):
    change_header(repo, "Route the ticket.\n")
    result = _ci(cli, repo, "--budget", "5")
    assert result.exit_code == 4, result.output
    assert "no price for target(s) ['tickets: fake']" in result.output
    assert server.log.total == 0


def test_from_a_subfolder_with_the_step_summary(cli, repo, monkeypatch, tmp_path_factory):
    step_summary = tmp_path_factory.mktemp("gh") / "step_summary.md"
    step_summary.write_text("earlier step\n", encoding="utf-8")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(step_summary))
    change_header(repo, f"{REGRESSION}\n")
    git(repo, "commit", "-qam", "a regressing header")
    monkeypatch.chdir(repo / "prompts" / "shared")
    result = cli("ci", "--base", "HEAD~1")
    assert result.exit_code == 1, result.output
    text = step_summary.read_text()
    assert text.startswith("earlier step\n## evalbatch CI: **FAIL**")
    assert text.count("## evalbatch CI") == 1


def test_changed_baseline_file_affects_its_suite(cli, repo):
    baseline = repo / "baselines" / "tickets" / "production.json"
    baseline.write_text(baseline.read_text() + "\n", encoding="utf-8")
    result = cli("changed", str(repo / "suites"), "--base", "main")
    assert "baseline baselines/tickets/production.json: differs from main" in result.output


def test_without_base_a_suite_without_baseline_is_listed_as_skipped(cli, repo, server):
    result = cli("ci", str(repo / "suites"))
    assert result.exit_code == 0, result.output
    assert "fresh (suites/fresh.yaml):\n  skipped: no baseline at baselines/fresh/production.json" in result.output
    summary = (repo / "reports" / "ci" / "summary.md").read_text()
    assert "| fresh | unknown: no baseline froze its inputs | | | skipped: no baseline" in summary
    assert server.log.total == 0


def test_a_rerun_resumes_an_unfinished_run_without_resending(cli, repo, server):
    """Two tickets are refused (HTTP 400, not retried): the sample is unfinished, so the gate
    cannot pass. The re-triggered job resumes that run and sends none of the 58 answered again."""
    server.faults.append(FaultRule(status=400, times=1000, match="(ticket 7)"))
    server.faults.append(FaultRule(status=400, times=1000, match="(ticket 8)"))
    change_header(repo, "Route the support ticket to a team.\n")
    first = _ci(cli, repo)
    assert first.exit_code == 3, first.output
    assert server.log.total == 60
    again = _ci(cli, repo)
    assert again.exit_code == 3, again.output
    assert "Resuming unfinished run" in again.output
    assert server.log.total == 60


def test_a_rerun_retries_what_failed_for_a_passing_reason(cli, repo, server):
    """Ticket 7 meets server errors until its retries run out (an outage): the sample is unfinished.
    The job re-triggered once the outage is over sends that request again, and only it, and its
    run is complete; a request refused for its content (test above) is not sent again."""
    server.faults.append(FaultRule(status=503, times=1000, match="(ticket 7)"))
    change_header(repo, "Route the support ticket to a team.\n")
    first = _ci(cli, repo)
    assert "(incomplete)" in first.output, first.output  # gated as it is: the failure counts as wrong
    sent = server.log.total
    assert sent == 59 + 3  # ticket 7: the first attempt and max_retries (2) more
    server.faults.clear()
    again = _ci(cli, repo)
    assert again.exit_code == 0, again.output
    assert server.log.total == sent + 1
    assert "(complete)" in again.output and "accuracy (slice all) +0.0 pts" in again.output
