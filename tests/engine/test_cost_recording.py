"""Each sent request's cost is recorded from the usage the API returned, at the target's price:
prompt-cache hits at the cached price; answers reused without sending cost nothing when the price
is known and stay unknown when it is not."""

from __future__ import annotations

import pytest

from harness.engine.store import RunStore
from harness.testing.fake_server import FakeLLMServer, keyword_replier
from tests.conftest import TICKET_REPLIES, base_suite

PRICING = {"input_per_mtok": 2.0, "output_per_mtok": 8.0, "cached_input_per_mtok": 0.5}


def _rows(project) -> list[tuple]:
    [run_dir] = project.run_dirs()
    store = RunStore.read_only(run_dir / "run.sqlite")
    return store.db.execute("SELECT input_tokens, output_tokens, cost_usd, origin FROM requests").fetchall()


def test_cost_uses_the_cached_input_price_for_prompt_cache_hits(project, cli):
    with FakeLLMServer(keyword_replier(TICKET_REPLIES)) as server:
        server.cached_share = 0.5
        suite = base_suite(server.base_url)
        suite["targets"][0]["pricing"] = PRICING
        project.write_suite(suite)
        assert cli("run", str(project.suite_path)).exit_code == 0
    rows = _rows(project)
    assert len(rows) == 6
    for input_tokens, output_tokens, cost, _ in rows:
        cached = int(input_tokens * 0.5)
        expected = ((input_tokens - cached) * 2.0 + cached * 0.5 + output_tokens * 8.0) / 1e6
        assert cost == pytest.approx(expected)


@pytest.mark.parametrize("priced", [True, False])
def test_duplicates_cost_nothing_only_when_the_price_is_known(project, cli, priced):
    with FakeLLMServer(keyword_replier(TICKET_REPLIES)) as server:
        suite = base_suite(server.base_url)
        suite["epochs"] = 2  # temperature 0: the second epoch is a duplicate of the first
        if priced:
            suite["targets"][0]["pricing"] = PRICING
        project.write_suite(suite)
        result = cli("run", str(project.suite_path))
        assert result.exit_code == 0, result.output
        assert server.log.total == 6
    duplicates = [cost for *_, cost, origin in _rows(project) if origin == "duplicate"]
    assert len(duplicates) == 6
    assert duplicates == ([0.0] * 6 if priced else [None] * 6)
    if not priced:
        assert "cost unknown" in result.output and "$0" not in result.output
