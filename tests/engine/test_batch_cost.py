"""A request answered in a provider batch is priced at the batch price: half the realtime price
at list prices, for the same tokens, whichever provider."""

from __future__ import annotations

import pytest

from tests.engine.batch_support import PRICED_MODELS, batch_suite, only_run, realtime_suite, store_rows


def _costs(run_dir) -> dict[str, tuple]:
    return {item: (cost, tokens_in, tokens_out) for item, cost, tokens_in, tokens_out in store_rows(
        run_dir, "SELECT item_id, cost_usd, input_tokens, output_tokens FROM requests")}


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_batch_requests_cost_half_the_realtime_price(project, cli, fake_server, provider, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
    runs = {}
    for mode, suite in (("realtime", realtime_suite(fake_server.base_url, provider)),
                        ("batch", batch_suite(fake_server.base_url, provider))):
        suite["targets"][0]["model"] = PRICED_MODELS[provider]
        project.write_suite(suite)
        result = cli("run", str(project.suite_path), "--reports-dir", str(project.root / mode))
        assert result.exit_code == 0, result.output
        assert ("at the batch price" in result.output) == (mode == "batch")  # it says which price it paid
        runs[mode] = _costs(only_run(project.root / mode))
    for item, (realtime_cost, tokens_in, tokens_out) in runs["realtime"].items():
        batch_cost, batch_in, batch_out = runs["batch"][item]
        assert (batch_in, batch_out) == (tokens_in, tokens_out)
        assert realtime_cost > 0 and batch_cost == pytest.approx(realtime_cost / 2)
