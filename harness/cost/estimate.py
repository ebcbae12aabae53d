"""What a run would take before anything is sent: per target its requests, tokens, time at the
declared rate limits, and cost realtime and through the batch API (`evalbatch estimate`)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Final, Literal

from pydantic import BaseModel, Field, computed_field

from harness.config.suite import RateLimits, SuiteSpec, TargetSpec
from harness.cost.pricing import ModelPrice, price_for
from harness.cost.tokens import CHARS_PER_TOKEN, encoding_name, prompt_side_tokens

if TYPE_CHECKING:  # only a finished plan is read, never planned here
    from harness.engine.requests import WorkRequest
    from harness.plan import RunPlan

ESTIMATE_VERSION: Final = 1
MINUTES_PER_DAY: Final = 24 * 60


class Pace(BaseModel):
    """How long the work takes at the declared limits, paced evenly."""

    limits: RateLimits
    minutes: float | None = Field(description="max(requests / rpm, tokens / tpm); None without a per-minute limit.")
    days: float | None = Field(default=None, description="max(requests / rpd, tokens / tpd) when a daily limit "
                               "is declared: more than 1 means the work spans days whatever the minute limits.")


class TargetEstimate(BaseModel):
    target: str
    provider: str
    model: str
    requests: int
    duplicates: int = Field(default=0, description="Requests identical to another of the run (temperature 0): "
                            "sent once, so tokens, time and cost count only the requests sent.")
    input_tokens: int = Field(description="Prompt tokens plus the chat format's per-message overhead, estimated.")
    max_output_tokens: int = Field(description="requests x max_tokens: the most the replies can bill.")
    tokenizer: str = Field(description="The tokenizer counted with, or 'chars/4' where none is known offline.")
    pace: Pace
    price: ModelPrice | None
    input_usd: float | None = None
    max_output_usd: float | None = None
    batch_input_usd: float | None = None
    batch_max_output_usd: float | None = None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def request_tokens(self) -> int:
        """What a tokens-per-minute limit counts: the prompt estimate plus all of max_tokens."""
        return self.input_tokens + self.max_output_tokens

    @computed_field  # type: ignore[prop-decorator]
    @property
    def realtime_usd(self) -> float | None:
        """At most this, realtime (every reply as long as max_tokens allows)."""
        return None if self.input_usd is None or self.max_output_usd is None else self.input_usd + self.max_output_usd

    @computed_field  # type: ignore[prop-decorator]
    @property
    def batch_usd(self) -> float | None:
        if self.batch_input_usd is None or self.batch_max_output_usd is None:
            return None
        return self.batch_input_usd + self.batch_max_output_usd


class SuiteEstimate(BaseModel):
    """`evalbatch estimate --json`."""

    version: Literal[1] = ESTIMATE_VERSION
    suite: str
    prompt: str
    items: int
    evaluated: list[str]
    requests: int
    targets: list[TargetEstimate]


def estimate_plan(plan: RunPlan) -> SuiteEstimate:
    spec = plan.suite.spec
    targets = [_estimate_target(plan, spec, target) for target in spec.targets]
    return SuiteEstimate(suite=spec.name, prompt=plan.prompt.label, items=plan.item_count, evaluated=plan.evaluated,
                         requests=plan.request_count, targets=targets)


def _estimate_target(plan: RunPlan, spec: SuiteSpec, target: TargetSpec) -> TargetEstimate:
    planned, sent, input_tokens = 0, 0, 0
    for request in _sent_once(plan.requests(target), target):
        planned += 1
        if request is not None:
            sent += 1
            input_tokens += prompt_side_tokens(target, request.prompt)
    max_output = sent * target.params.max_tokens
    limits = target.limits.merged_over(spec.engine.limits) if target.limits else spec.engine.limits
    price = price_for(target)
    costs = {} if price is None else {
        "input_usd": price.cost(input_tokens, 0), "max_output_usd": price.cost(0, max_output),
        "batch_input_usd": price.cost(input_tokens, 0, batch=True),
        "batch_max_output_usd": price.cost(0, max_output, batch=True)}
    return TargetEstimate(
        target=target.label, provider=target.provider, model=target.model, requests=planned,
        duplicates=planned - sent, input_tokens=input_tokens, max_output_tokens=max_output,
        tokenizer=encoding_name(target.model) or f"chars/{CHARS_PER_TOKEN}",
        pace=pace(sent, input_tokens + max_output, limits), price=price, **costs)


def _sent_once(requests: Iterable[WorkRequest], target: TargetSpec) -> Iterator[WorkRequest | None]:
    """Each planned request, or None for one the engine does not send: of identical deterministic
    requests (temperature 0, as the engine's dedupe sees it) only the first is sent. Anthropic's
    default temperature is 1, so an Anthropic target that sets none is sampled. The requests
    stream (a large suite's are never all held): only a 16-byte digest of each prompt is kept."""
    params = target.params
    deterministic = params.temperature == 0 and (target.provider != "anthropic"
                                                 or "temperature" in params.model_fields_set)
    seen: set[bytes] = set()
    for request in requests:
        if not deterministic:
            yield request
            continue
        prompt = [request.prompt.text, [[m.role, m.content] for m in request.prompt.messages]]
        digest = hashlib.blake2b(json.dumps(prompt).encode(), digest_size=16).digest()
        if digest in seen:
            yield None
        else:
            seen.add(digest)
            yield request


def pace(requests: int, tokens: int, limits: RateLimits) -> Pace:
    """Time for `requests` needing `tokens` (prompt + max_tokens) under `limits`: the slower of
    the request and the token limit decides."""
    per_minute = [count / limit for count, limit in ((requests, limits.rpm), (tokens, limits.tpm)) if limit]
    per_day = [count / limit for count, limit in ((requests, limits.rpd), (tokens, limits.tpd)) if limit]
    return Pace(limits=limits, minutes=max(per_minute) if per_minute else None,
                days=max(per_day) if per_day else None)
