"""The end-of-run summary through `evalbatch run`: a row per evaluated slice besides the union,
failed requests counted (or excluded, as the suite says), against the fake server; and each
target's cost per item and per successful item, read from the run store."""

from __future__ import annotations

import ast
import re
import subprocess
import sys

import pytest

from harness.cost.money import format_usd
from harness.cost.pricing import ModelPrice
from harness.engine.providers.base import Completion
from harness.engine.store import NewRequest, RunStore, StoredItem
from harness.report.summary import SummaryOptions, cost_line, summarize_costs, t_quantile
from harness.runs.results import result_lines
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


# -- tokens and cost per item ---------------------------------------------------------------

def _priced_store(tmp_path) -> RunStore:
    """Four requests of target t over three items: i1 twice (two epochs) and i2 succeeded at a
    recorded cost, i3 failed; i1's second epoch was answered from the response cache (cost 0)."""
    store = RunStore(tmp_path / "run.sqlite")
    requests = [("r1", "i1", 0), ("r1b", "i1", 1), ("r2", "i2", 0), ("r3", "i3", 0)]
    store.add_requests([NewRequest(rid, item, "t", sample, {"prompt": "p"}) for rid, item, sample in requests],
                       [StoredItem(item, f"line {n}", ("all",), None, {}) for n, item in enumerate(["i1", "i2", "i3"])])
    for rid, cost in (("r1", 0.25), ("r2", 0.5)):
        attempt = store.start_attempt(rid)
        assert attempt is not None
        assert store.succeed(rid, attempt.number, Completion("billing", 100, 10), 5.0, cost_usd=cost)
    assert store.reuse("r1b", Completion("billing", 100, 10), "cache")
    attempt = store.start_attempt("r3")
    assert attempt is not None
    assert store.fail("r3", attempt.number, final=True, error="HTTP 400: too long", status=400)
    return store


def test_cost_per_item_and_per_successful_item_from_the_store(tmp_path):
    store = _priced_store(tmp_path)
    lines = result_lines(store)
    (cost,) = summarize_costs(lines)
    # 0.25 + 0 (cache) + 0.5 over 3 items; i1 and i2 succeeded, i3 did not.
    assert (cost.items, cost.successful_items, cost.cost_usd) == (3, 2, pytest.approx(0.75))
    assert cost.per_item == pytest.approx(0.25) and cost.per_successful_item == pytest.approx(0.375)
    assert cost_line(cost) == ("cost t: $0.75, $0.25 per item (3), $0.38 per successful item (2); "
                               "tokens per item 100 in, 10 out")


def test_requests_without_a_recorded_cost_are_priced_from_their_usage(tmp_path):
    store = RunStore(tmp_path / "run.sqlite")
    store.add_requests([NewRequest("r1", "i1", "t", 0, {"prompt": "p"})])
    attempt = store.start_attempt("r1")
    assert attempt is not None
    store.succeed("r1", attempt.number, Completion("x", 1_000_000, 100_000), 1.0)  # a run from before costs
    price = ModelPrice(input_per_mtok=2.0, cached_input_per_mtok=1.0, output_per_mtok=10.0, batch_input_per_mtok=1.0,
                       batch_output_per_mtok=5.0, taken="2026-11-30", source="test")
    (cost,) = summarize_costs(result_lines(store), SummaryOptions(prices={"t": price}))
    assert cost.cost_usd == pytest.approx(2.0 + 1.0)
    (unknown,) = summarize_costs(result_lines(store), SummaryOptions(prices={"t": None}))
    assert unknown.cost_usd is None
    assert cost_line(unknown) == ("cost t: no price known for its model (add pricing: to the target); "
                                  "tokens per item 1,000,000 in, 100,000 out")


def test_a_run_prints_its_cost_per_item(project, cli, fake_server):
    suite = base_suite(fake_server.base_url)
    suite["targets"][0]["model"] = "gpt-4o-mini-2024-07-18"  # $0.15 in, $0.60 out per million
    project.write_suite(suite)
    result = cli("run", str(project.suite_path))
    assert result.exit_code == 0, result.output
    (folder,) = project.run_dirs()
    store = RunStore.read_only(folder / RunStore.FILENAME)
    tokens_in, tokens_out = store.token_totals()
    store.close()
    spent = (tokens_in * 0.15 + tokens_out * 0.60) / 1e6
    assert tokens_in > 0 and tokens_out > 0
    assert (f"cost fake: {format_usd(spent)}, {format_usd(spent / 6)} per item (6), {format_usd(spent / 6)} per "
            f"successful item (6); tokens per item {tokens_in / 6:,.0f} in, {tokens_out / 6:,.0f} out") in result.output


def test_a_run_of_an_unpriced_model_says_how_to_price_it(project, cli, fake_server):
    project.write_suite(base_suite(fake_server.base_url))  # model fake-model
    result = cli("run", str(project.suite_path))
    assert result.exit_code == 0, result.output
    assert "cost fake: no price known for its model (add pricing: to the target)" in result.output


# -- the t interval without scipy -------------------------------------------------------------

@pytest.mark.parametrize(("p", "df", "expected"), [
    # Printed t tables (two-sided 95% and 99% columns).
    (0.975, 1, 12.706), (0.975, 2, 4.303), (0.975, 5, 2.571), (0.975, 10, 2.228), (0.975, 30, 2.042),
    (0.975, 100, 1.984), (0.995, 10, 3.169), (0.95, 20, 1.725), (0.975, 10**6, 1.960),
])
def test_t_quantile_matches_the_tables(p, df, expected):
    assert t_quantile(p, df) == pytest.approx(expected, abs=5e-4)


def test_t_quantile_matches_scipy():
    from scipy import stats

    for p in (0.6, 0.9, 0.95, 0.975, 0.995, 0.9995):
        for df in [*range(1, 60), 250, 1000, 100_000]:
            assert t_quantile(p, df) == pytest.approx(stats.t.ppf(p, df), rel=1e-9), (p, df)


def test_the_summary_interval_needs_no_scipy():
    # A fresh interpreter: scipy.stats takes about a second to import, which a run's summary
    # should not cost.
    code = ("import sys; from harness.report.summary import mean_with_ci; print(mean_with_ci([0, 1, 1, 0.5]));"
            "print('scipy' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    mean, low, high = ast.literal_eval(result.stdout.splitlines()[0])
    assert (mean, result.stdout.split()[-1]) == (0.625, "False")
    # sd of [0, 1, 1, 0.5] = 0.4787; t(0.975, 3) = 3.182446305 (t tables); clipped to [0, 1].
    half = 3.182446305 * 0.47871355387816905 / 2
    assert (low, high) == pytest.approx((max(0.0, 0.625 - half), min(1.0, 0.625 + half)))
