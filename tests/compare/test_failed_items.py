"""A request that failed on one side of a comparison is a loss there (score 0), not a dropped pair;
`failed_as_zero=False` (scoring.failed_requests: exclude) drops the pair instead."""

from __future__ import annotations

import json

from harness.compare.comparison import compare
from harness.compare.snapshot import snapshot_run
from harness.config.suite import GateSpec
from harness.testing.fake_server import FakeLLMServer, FaultRule, keyword_replier
from tests.conftest import TICKET_REPLIES, base_suite

V2_PROMPT = "V2 Ticket: {{ text }}\nTeam:"
# Only the candidate's (v2) request for a1 overflows the context; the baseline (v1) sends it fine.
OVERFLOW = FaultRule(status=400, times=99, match="V2 Ticket: I was billed",
                     error_body={"error": {"message": "maximum context length exceeded",
                                           "code": "context_length_exceeded"}})


def _baseline_and_failed_candidate(project, cli):
    (project.root / "prompts" / "route" / "v2.j2").write_text(V2_PROMPT, encoding="utf-8")
    with FakeLLMServer(keyword_replier(TICKET_REPLIES), faults=[OVERFLOW]) as server:
        project.write_suite(base_suite(server.base_url))
        assert cli("run", str(project.suite_path)).exit_code == 0
        [base_dir] = project.run_dirs()
        assert cli("baseline", "set", str(project.suite_path), "--from", base_dir.name).exit_code == 0
        candidate = cli("run", str(project.suite_path), "--prompt-version", "v2")
    assert candidate.exit_code == 1, candidate.output  # a1 failed_terminal
    [cand_dir] = [d for d in project.run_dirs() if d != base_dir]
    return base_dir, cand_dir


def test_a_failed_request_is_a_loss_in_the_comparison_not_a_dropped_pair(project, cli):
    _, cand_dir = _baseline_and_failed_candidate(project, cli)
    result = cli("compare", cand_dir.name, "--reports-dir", str(project.root / "reports"), "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    [accuracy] = report["metrics"]
    paired = accuracy["comparison"]
    assert paired["n"] == 6 and paired["n_dropped_nan"] == 0
    assert abs(paired["baseline_mean"] - 5 / 6) < 1e-9 and abs(paired["candidate_mean"] - 4 / 6) < 1e-9
    assert paired["discordant"]["b"] + paired["discordant"]["c"] == 1  # a1: right before, a loss now
    assert any("1 item(s) of the candidate have failed requests" in note and "score 0" in note
               for note in report["notes"]), report["notes"]

    snapshot = snapshot_run(cand_dir)
    assert snapshot.items["a1"].scores == {"accuracy": (0.0,)} and snapshot.items["a1"].failed == 1
    assert snapshot.failed_as_zero is True


def test_excluding_failed_requests_drops_the_pair(project, cli):
    base_dir, cand_dir = _baseline_and_failed_candidate(project, cli)
    excluded = snapshot_run(cand_dir, failed_as_zero=False)
    assert excluded.items["a1"].scores == {"accuracy": (None,)} and excluded.failed_as_zero is False
    report = compare(snapshot_run(base_dir), excluded, GateSpec(), "the baseline run")
    [accuracy] = report.metrics
    assert accuracy.comparison.n == 5 and accuracy.comparison.n_dropped_nan == 1
    assert any("1 item(s) of the candidate have failed requests" in note and "left out" in note
               for note in report.notes), report.notes


def test_the_suites_exclude_rule_reaches_compare_and_gate(project, cli):
    _, cand_dir = _baseline_and_failed_candidate(project, cli)
    suite = base_suite("http://127.0.0.1:9")
    suite["scoring"] = {"failed_requests": "exclude"}
    project.write_suite(suite)
    result = cli("compare", str(cand_dir), "--json")
    assert result.exit_code == 0, result.output
    [accuracy] = json.loads(result.stdout)["metrics"]
    assert accuracy["comparison"]["n"] == 5 and accuracy["comparison"]["n_dropped_nan"] == 1
