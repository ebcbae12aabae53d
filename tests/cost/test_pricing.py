"""Prices: the suite's own pricing wins, then the shipped table (exact name, then the longest
prefix), local models cost nothing, unknown models have no price."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from harness.config.suite import TargetSpec
from harness.cost.pricing import ModelPrice, price_for, price_table

REPO = Path(__file__).resolve().parents[2]


def _target(model: str, provider: str = "openai", pricing: dict | None = None) -> TargetSpec:
    return TargetSpec(provider=provider, model=model, pricing=pricing)


def _realtime(price: ModelPrice | None) -> tuple[float, float]:
    assert price is not None
    return price.input_per_mtok, price.output_per_mtok


def test_an_exact_name_takes_its_entry():
    assert _realtime(price_for(_target("gpt-4o"))) == (2.5, 10.0)
    assert _realtime(price_for(_target("claude-haiku-4-5", "anthropic"))) == (1.0, 5.0)


@pytest.mark.parametrize(("model", "expected"), [
    ("gpt-4o-mini-2024-07-18", (0.15, 0.6)),        # gpt-4o-mini, not the shorter gpt-4o
    ("gpt-4o-2024-08-06", (2.5, 10.0)),
    ("gpt-4.1-mini-2025-04-14", (0.4, 1.6)),
    ("o3-mini-2025-01-31", (1.1, 4.4)),             # o3-mini, not o3
    ("claude-sonnet-4-5-20250929", (3.0, 15.0)),
    ("claude-opus-4-5-20251101", (5.0, 25.0)),      # Opus 4.5 is cheaper than Opus 4
    ("claude-opus-4-20250514", (15.0, 75.0)),
    ("claude-3-5-haiku-latest", (0.8, 4.0)),
    ("GPT-4o-Mini", (0.15, 0.6)),
])
def test_a_snapshot_name_takes_its_models_price(model, expected):
    provider = "anthropic" if model.startswith("claude") else "openai"
    assert _realtime(price_for(_target(model, provider))) == expected


@pytest.mark.parametrize("model", ["o1-pro", "o1-pro-2025-03-19", "o1-mini", "o3-deep-research",
                                   "o4-mini-deep-research", "gpt-4o-realtime-preview", "gpt-5.4"])
def test_another_model_sharing_a_name_prefix_has_no_price(model):
    """o1-pro costs ten times o1; o1-mini a tenth: a suffix other than a snapshot date is another model."""
    assert price_for(_target(model)) is None


def test_an_exact_snapshot_entry_beats_the_prefix():
    # The first gpt-4o snapshot kept its launch price.
    assert _realtime(price_for(_target("gpt-4o-2024-05-13"))) == (5.0, 15.0)


@pytest.mark.parametrize("model", ["gpt-5.4", "llama-3-8b-instruct", "fake-model", "gpt-4ox"])
def test_an_unknown_model_has_no_price(model):
    assert price_for(_target(model)) is None


def test_a_model_on_this_machine_costs_nothing():
    price = price_for(_target("gemma3-270m-q4_k_m", "local"))
    assert price is not None
    assert price.cost(10_000, 5_000) == 0.0 and price.cost(10_000, 5_000, batch=True) == 0.0


def test_the_suite_pricing_wins_over_the_table():
    price = price_for(_target("gpt-4o", pricing={"input_per_mtok": 1.0, "output_per_mtok": 4.0,
                                                 "batch_discount": 0.4}))
    assert price is not None
    assert (price.input_per_mtok, price.cached_input_per_mtok, price.output_per_mtok) == (1.0, 1.0, 4.0)
    assert (price.batch_input_per_mtok, price.batch_output_per_mtok) == pytest.approx((0.4, 1.6))
    assert price.taken == "suite"


def test_the_suite_pricing_prices_a_model_the_table_lacks():
    price = price_for(_target("llama-3-8b-instruct", pricing={"input_per_mtok": 0.2, "output_per_mtok": 0.2,
                                                              "cached_input_per_mtok": 0.05}))
    assert price is not None
    assert price.cost(1_000_000, 0, cached_input_tokens=1_000_000) == pytest.approx(0.05)


def test_cost_arithmetic():
    price = price_for(_target("gpt-4o"))  # 2.50 in, 1.25 cached in, 10 out; batch 1.25 / 5
    assert price is not None
    assert price.cost(1_000_000, 1_000_000) == pytest.approx(12.5)
    assert price.cost(1_000_000, 1_000_000, batch=True) == pytest.approx(6.25)
    # 400 of 1,000 input tokens from the prompt cache: 600 x 2.50 + 400 x 1.25 + 200 x 10, per million.
    assert price.cost(1_000, 200, cached_input_tokens=400) == pytest.approx((1500 + 500 + 2000) / 1e6)
    # In batch the cached part gets the batch share (half) of its price too.
    assert price.cost(1_000, 200, cached_input_tokens=400, batch=True) == pytest.approx(2000 / 1e6)
    assert price.cost(0, 0) == 0.0


def test_the_shipped_table_is_consistent():
    table = price_table()
    assert table.version == 1 and table.currency == "USD" and table.taken
    for name, entry in table.models.items():
        assert entry.provider in {"openai", "anthropic"}, name
        assert entry.cached_input <= entry.input and entry.batch_input <= entry.input, name
        assert entry.batch_output <= entry.output and entry.input <= entry.output, name
        assert entry.source.strip(), name


def test_the_table_is_package_data():
    # An installed (non-editable) package must carry prices.json.
    config = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    assert "prices.json" in config["tool"]["setuptools"]["package-data"]["harness.cost"]
    assert "bpe-openai" in " ".join(config["project"]["dependencies"])
