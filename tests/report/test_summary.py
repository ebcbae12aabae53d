"""The end-of-run summary through `evalbatch run`: a row per evaluated slice besides the union,
and failed requests counted (or excluded, as the suite says), against the fake server."""

from __future__ import annotations

import re

from harness.testing.fake_server import FakeLLMServer, FaultRule, keyword_replier
from tests.conftest import TICKET_REPLIES, TICKETS, base_suite, write_records

# a1-a3 are plain tickets, a4-a6 edge cases; billing (a1, a6) overlaps both. a6 is answered wrongly.
KINDS = {"a1": "plain", "a2": "plain", "a3": "plain", "a4": "edge", "a5": "edge", "a6": "edge"}
SLICES = [{"name": "all"}, {"name": "plain", "where": {"kind": "plain"}},
          {"name": "edge", "where": {"kind": "edge"}}, {"name": "billing", "where": {"label": "billing"}}]
CONTEXT_OVERFLOW = {"error": {"message": "This model's maximum context length is 4096 tokens",
                              "type": "invalid_request_error", "code": "context_length_exceeded"}}


def score_rows(output: str) -> list[list[str]]:
    """The summary table's body rows as cells: target, slice, scorer, items, failed, mean, CI."""
    rows = [[cell.strip() for cell in line.split("│")[1:-1]] for line in output.splitlines()
            if line.startswith("│")]
    return [row for row in rows if len(row) == 7]


def sliced_project(project, server_url: str, **changes) -> None:
    write_records(project.root / "suites" / "data" / "tickets.jsonl",
                  [{**ticket, "kind": KINDS[ticket["id"]]} for ticket in TICKETS])
    suite = base_suite(server_url)
    suite["slices"] = SLICES
    suite.update(changes)
    project.write_suite(suite)


def test_each_evaluated_slice_gets_its_rows_besides_the_union(project, cli, fake_server):
    sliced_project(project, fake_server.base_url)
    result = cli("run", str(project.suite_path), "--slice", "plain", "--slice", "edge", "--slice", "billing")
    assert result.exit_code == 0, result.output
    rows = score_rows(result.output)
    assert [row[:6] for row in rows] == [
        ["fake", "plain+edge+billing", "accuracy", "6", "0", "0.833"],
        ["fake", "plain", "accuracy", "3", "0", "1.000"],
        ["fake", "edge", "accuracy", "3", "0", "0.667"],
        ["fake", "billing", "accuracy", "2", "0", "0.500"],  # a1 and a6 count in their other slice too
    ]
    assert all(re.fullmatch(r"\[\d\.\d{3}, \d\.\d{3}\]", row[6]) for row in rows), rows


def test_one_evaluated_slice_is_one_row(project, cli, fake_server):
    sliced_project(project, fake_server.base_url)
    result = cli("run", str(project.suite_path), "--slice", "edge")
    assert result.exit_code == 0, result.output
    assert [row[:6] for row in score_rows(result.output)] == [["fake", "edge", "accuracy", "3", "0", "0.667"]]


def test_a_failed_request_counts_as_zero_and_the_retry_hint_is_not_offered(project, cli):
    # a1 overflows the context: HTTP 400, terminal at the first attempt. Today it silently left the mean.
    with FakeLLMServer(keyword_replier(TICKET_REPLIES),
                       faults=[FaultRule(status=400, times=99, match="billed", error_body=CONTEXT_OVERFLOW)]) as server:
        sliced_project(project, server.base_url)
        result = cli("run", str(project.suite_path), "--slice", "plain", "--slice", "edge")
    assert result.exit_code == 1, result.output
    assert [row[:6] for row in score_rows(result.output)] == [
        ["fake", "plain+edge", "accuracy", "6", "1", "0.667"],
        ["fake", "plain", "accuracy", "3", "1", "0.667"],
        ["fake", "edge", "accuracy", "3", "0", "0.667"],
    ]
    out = " ".join(result.output.split())
    assert "failed: 1 item(s) with a failed request count as 0 for every scorer" in out
    assert "1 request(s) failed with errors a retry will not fix (e.g. HTTP 400: " in out
    assert "maximum context length" in out and "fix the input or the suite" in out
    assert "--retry-failed" not in out and "Retry them with" not in out


def test_the_suite_can_exclude_failed_requests_and_the_summary_says_so(project, cli):
    with FakeLLMServer(keyword_replier(TICKET_REPLIES),
                       faults=[FaultRule(status=400, times=99, match="billed", error_body=CONTEXT_OVERFLOW)]) as server:
        sliced_project(project, server.base_url, scoring={"failed_requests": "exclude"})
        result = cli("run", str(project.suite_path), "--slice", "all")
    assert result.exit_code == 1, result.output
    assert [row[:6] for row in score_rows(result.output)] == [["fake", "all", "accuracy", "5", "1", "0.800"]]
    assert "excluded: 1 failed item(s) are left out of the means" in " ".join(result.output.split())


def test_an_unknown_failed_request_rule_is_bad_input(project, cli):
    sliced_project(project, "http://127.0.0.1:9", scoring={"failed_requests": "ignore"})
    result = cli("run", str(project.suite_path))
    assert result.exit_code == 2
    assert "scoring.failed_requests" in result.stderr


def test_only_transient_failures_whose_retries_ran_out_are_offered_a_retry(project, cli):
    faults = [FaultRule(status=400, times=99, match="billed", error_body=CONTEXT_OVERFLOW),
              FaultRule(status=503, times=99, match="crashes")]
    with FakeLLMServer(keyword_replier(TICKET_REPLIES), faults=faults) as server:
        sliced_project(project, server.base_url)
        result = cli("run", str(project.suite_path), "--slice", "all")
        assert server.log.total == 4 + 1 + 3  # max_retries 2: the 503 was tried three times, the 400 once
    assert result.exit_code == 1, result.output
    lines = [" ".join(line.split()) for line in result.output.splitlines()]
    [rejected] = [line for line in lines if "a retry will not fix" in line]
    assert rejected.startswith("1 request(s) failed with errors a retry will not fix (e.g. HTTP 400: ")
    assert "--retry-failed" not in rejected
    [transient] = [line for line in lines if "retries ran out" in line]
    assert transient.startswith("1 request(s) failed after their retries ran out (e.g. HTTP 503: ")
    assert re.search(r"Retry them with: evalbatch run \S+ --slice all --resume \S+ --retry-failed$", transient)
