"""What a model's tokens cost: the target's own `pricing:` in the suite, else the shipped table
(harness/cost/prices.json), else nothing known.

Prices are USD per million tokens, realtime and batch. The table is data with a date, not code:
updating a price is an edit of prices.json.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from importlib import resources
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field

from harness.config.suite import TargetSpec

PRICES_FILE: Final = "prices.json"
PRICES_VERSION: Final = 1
_FREE_PROVIDERS: Final = frozenset({"local"})
"""Providers that run on this machine: their tokens cost nothing."""


class ModelPrice(BaseModel):
    """One model's prices in USD per million tokens."""

    model_config = ConfigDict(frozen=True)

    input_per_mtok: float = Field(ge=0)
    cached_input_per_mtok: float = Field(ge=0, description="Input tokens served from the provider's prompt cache.")
    output_per_mtok: float = Field(ge=0)
    batch_input_per_mtok: float = Field(ge=0, description="Through the provider's batch API.")
    batch_output_per_mtok: float = Field(ge=0)
    taken: str = Field(description="When the prices were taken (a date), or 'suite' for a suite's own pricing.")
    source: str = Field(description="Where they come from.")

    def cost(self, input_tokens: int, output_tokens: int, cached_input_tokens: int = 0, batch: bool = False) -> float:
        """USD for one request's usage. `cached_input_tokens` is the part of `input_tokens` served
        from the prompt cache (OpenAI reports it that way: usage.prompt_tokens_details.cached_tokens)."""
        cached = min(cached_input_tokens, input_tokens)
        if batch:
            # Batch prices are a share of realtime; cached input gets the same share.
            share = self.batch_input_per_mtok / self.input_per_mtok if self.input_per_mtok else 0.0
            input_price, cached_price = self.batch_input_per_mtok, self.cached_input_per_mtok * share
            output_price = self.batch_output_per_mtok
        else:
            input_price, cached_price = self.input_per_mtok, self.cached_input_per_mtok
            output_price = self.output_per_mtok
        return ((input_tokens - cached) * input_price + cached * cached_price + output_tokens * output_price) / 1e6


class _TableEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    provider: str
    input: float = Field(ge=0)
    cached_input: float = Field(ge=0)
    output: float = Field(ge=0)
    batch_input: float = Field(ge=0)
    batch_output: float = Field(ge=0)
    source: str


class PriceTable(BaseModel):
    """The shipped price table (prices.json)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Literal[1] = PRICES_VERSION
    taken: str = Field(description="The date the prices were taken.")
    currency: Literal["USD"] = "USD"
    unit: Literal["per million tokens"] = "per million tokens"
    notes: str = ""
    models: dict[str, _TableEntry]

    def price(self, name: str) -> ModelPrice:
        entry = self.models[name]
        return ModelPrice(input_per_mtok=entry.input, cached_input_per_mtok=entry.cached_input,
                          output_per_mtok=entry.output, batch_input_per_mtok=entry.batch_input,
                          batch_output_per_mtok=entry.batch_output, taken=self.taken,
                          source=f"price table entry {name}: {entry.source}")

    def entry_for(self, model: str) -> str | None:
        """The entry a model name takes: its own, else an entry it names with a snapshot suffix
        (gpt-4o-mini-2024-07-18 -> gpt-4o-mini, claude-sonnet-4-5-20250929 -> claude-sonnet-4-5,
        -latest). Any other suffix is another model (o1-pro, o1-mini, o3-deep-research, gpt-5.4),
        and an unknown model has no price rather than a wrong one."""
        model = model.lower()
        if model in self.models:
            return model
        match = _SNAPSHOT_SUFFIX.search(model)
        if match is None:
            return None
        base = model[:match.start()]
        return base if base in self.models else None


_SNAPSHOT_SUFFIX = re.compile(r"-(\d{4}-\d{2}-\d{2}|\d{8}|latest)$")


@lru_cache(maxsize=1)
def price_table() -> PriceTable:
    text = resources.files("harness.cost").joinpath(PRICES_FILE).read_text(encoding="utf-8")
    return PriceTable.model_validate(json.loads(text))


def price_for(target: TargetSpec) -> ModelPrice | None:
    """The target's prices: its suite `pricing:` wins; a model on this machine costs nothing;
    else the table's entry for the model name; None when no price is known."""
    if target.pricing is not None:
        spec = target.pricing
        cached = spec.cached_input_per_mtok if spec.cached_input_per_mtok is not None else spec.input_per_mtok
        return ModelPrice(input_per_mtok=spec.input_per_mtok, cached_input_per_mtok=cached,
                          output_per_mtok=spec.output_per_mtok,
                          batch_input_per_mtok=spec.input_per_mtok * spec.batch_discount,
                          batch_output_per_mtok=spec.output_per_mtok * spec.batch_discount,
                          taken="suite", source=f"the suite's pricing for target {target.label}")
    if target.provider in _FREE_PROVIDERS:
        return ModelPrice(input_per_mtok=0, cached_input_per_mtok=0, output_per_mtok=0, batch_input_per_mtok=0,
                          batch_output_per_mtok=0, taken="always", source="runs on this machine")
    table = price_table()
    entry = table.entry_for(target.model)
    return table.price(entry) if entry is not None else None
