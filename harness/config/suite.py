"""The suite file format (`suites/*.yaml`): what to evaluate, with which prompt, on which models.

Every model forbids unknown fields so a typo is an error, not a silently ignored setting.
Scorer parameters are checked against the scorer registry by `harness.config.loader`.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

SUITE_FORMAT_VERSION: Final = 1
_SLUG = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"

Scalar = str | int | float | bool | None


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatasetSpec(StrictModel):
    path: str = Field(description="Local JSONL/CSV/Parquet file relative to the suite file; with `format: hub`, "
                      "a Hugging Face hub dataset.")
    format: Literal["jsonl", "csv", "parquet", "hub"] | None = Field(
        default=None, description="Inferred from the file extension when omitted.")
    split: str = Field(default="train", description="Split to read from a hub dataset.")
    id_field: str | None = Field(
        default="id", description="Field holding a stable item ID; items without it get a hash of their content.")
    cluster_field: str | None = Field(
        default=None, description="Field grouping items that share a source (for clustered standard errors).")


class SliceSpec(StrictModel):
    """A named subset: `where` filters first, then `first_n` or a seeded `sample` (optionally stratified)."""

    name: str = Field(pattern=_SLUG)
    where: dict[str, Scalar | list[Scalar]] = Field(
        default_factory=dict, description="Field equals value (or is one of a list of values).")
    first_n: int | None = Field(default=None, ge=1)
    sample: int | None = Field(default=None, ge=1, description="Seeded random sample of this many items.")
    stratify_by: str | None = Field(default=None, description="Sample proportionally within each value of this field.")
    seed: int = 0

    @model_validator(mode="after")
    def _one_selection(self) -> SliceSpec:
        if self.first_n is not None and self.sample is not None:
            raise ValueError("use either first_n or sample, not both")
        if self.stratify_by is not None and self.sample is None:
            raise ValueError("stratify_by needs sample: N (the size of the stratified sample)")
        return self


class PromptRef(StrictModel):
    name: str = Field(pattern=_SLUG, description="Folder under prompts/ holding the versions.")
    version: str = Field(pattern=_SLUG, description="Version label: prompts/<name>/<version>.j2 or .chat.yaml")
    dir: str | None = Field(default=None, description="Prompts folder, relative to the suite file (default: <project>/prompts).")


class GenerationParams(StrictModel):
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    max_tokens: int = Field(default=256, ge=1, le=1_000_000)
    stop: list[str] = Field(default_factory=list)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    seed: int | None = None


class PricingSpec(StrictModel):
    """USD per million tokens; overrides the shipped price table (harness/cost) for this target."""

    input_per_mtok: float = Field(ge=0)
    output_per_mtok: float = Field(ge=0)
    cached_input_per_mtok: float | None = Field(default=None, ge=0, description="Default: the input price.")
    batch_discount: float = Field(default=0.5, gt=0, le=1, description="Batch API price as a share of realtime.")


class RateLimits(StrictModel):
    """A provider's limits for one target (one API key and model): sending is paced to stay under them."""

    rpm: float | None = Field(default=None, gt=0, allow_inf_nan=False, description="Requests per minute.")
    tpm: float | None = Field(default=None, gt=0, allow_inf_nan=False, description="Tokens per minute (prompt estimate + max_tokens).")
    rpd: float | None = Field(default=None, gt=0, allow_inf_nan=False, description="Requests per day.")
    tpd: float | None = Field(default=None, gt=0, allow_inf_nan=False, description="Tokens per day.")

    def merged_over(self, other: RateLimits) -> RateLimits:
        """These limits, with `other`'s where these set none."""
        return RateLimits(**{name: getattr(self, name) if getattr(self, name) is not None else getattr(other, name)
                             for name in type(self).model_fields})


class TargetSpec(StrictModel):
    """One model to evaluate. API keys are never part of a suite: they come from the environment."""

    name: str | None = Field(default=None, pattern=_SLUG, description="Defaults to the model name.")
    provider: str = Field(description="A registered provider: local, openai, anthropic.")
    model: str
    base_url: str | None = Field(default=None, description="Overrides OPENAI_BASE_URL / ANTHROPIC_BASE_URL.")
    params: GenerationParams = Field(default_factory=GenerationParams)
    pricing: PricingSpec | None = None
    limits: RateLimits | None = Field(default=None, description="This target's rate limits (over engine.limits).")
    mode: Literal["realtime", "batch"] = Field(
        default="realtime", description="realtime: one API call per request; batch: the provider's batch API "
        "(OpenAI Batch API, Anthropic Message Batches) at its batch price, results within 24 h.")

    @property
    def label(self) -> str:
        return self.name or re.sub(r"[^A-Za-z0-9_.-]", "-", self.model)


class ExtractStep(StrictModel):
    """Turns raw output into the answer a scorer grades; steps run in order."""

    type: Literal["first_line", "last_line", "strip", "lower", "regex", "json", "json_field"]
    pattern: str | None = Field(default=None, description="regex: the pattern; group 1 (or the whole match) is kept.")
    path: str | None = Field(default=None, description="json_field: dotted path, e.g. customer.name")

    @model_validator(mode="after")
    def _params_fit_type(self) -> ExtractStep:
        if self.type == "regex":
            if not self.pattern:
                raise ValueError("regex extraction needs pattern")
            try:
                re.compile(self.pattern)
            except re.error as exc:
                raise ValueError(f"invalid regex {self.pattern!r}: {exc}") from None
        if self.type == "json_field" and not self.path:
            raise ValueError("json_field extraction needs path")
        return self


class ScorerSpec(BaseModel):
    """A scorer by registered type; its own parameters are validated by the scorer registry."""

    model_config = ConfigDict(extra="allow", frozen=True)

    type: str
    name: str | None = Field(default=None, pattern=_SLUG, description="Defaults to the type.")
    target: str | None = Field(default=None, description="Dotted item field holding the expected answer.")
    extract: list[ExtractStep] = Field(default_factory=list)

    @property
    def label(self) -> str:
        return self.name or self.type

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class BatchSpec(StrictModel):
    """How targets in batch mode are submitted and watched."""

    poll_s: float = Field(default=30.0, gt=0, le=3600, description="Seconds between looks at a live provider batch.")
    max_requests: int | None = Field(default=None, ge=1, description="Requests per provider batch (default and "
                                     "ceiling: the provider's limit, 50,000 OpenAI, 100,000 Anthropic).")
    max_bytes: int | None = Field(default=None, ge=1, description="Bytes per provider batch (default and "
                                  "ceiling: the provider's limit, 200 MB OpenAI, 256 MB Anthropic).")


class EngineSpec(StrictModel):
    concurrency: int = Field(default=8, ge=1, le=4096)
    max_retries: int = Field(default=4, ge=0, le=50, description="Retries after the first attempt for transient errors.")
    timeout_s: float = Field(default=60.0, gt=0, description="Per-request timeout.")
    backoff_base_s: float = Field(default=0.5, ge=0)
    backoff_max_s: float = Field(default=30.0, ge=0)
    deadline_s: float | None = Field(default=None, gt=0,
                                     description="Give up on a request this long after its first attempt.")
    limits: RateLimits = Field(default_factory=RateLimits, description="Rate limits for every target's lane.")
    breaker_failures: int = Field(default=25, ge=1, description="Consecutive failures that stop a target's lane.")
    cache: bool = Field(default=False, description="Reuse responses from the shared response cache.")
    cache_sampled: bool = Field(default=False, description="Cache responses of temperature > 0 too.")
    batch: BatchSpec = Field(default_factory=BatchSpec, description="Provider batches (targets in batch mode).")


class GateMetric(StrictModel):
    metric: str = Field(description="A scorer name of this suite.")
    # A margin of 0 would demand proof of superiority under the name of non-inferiority; above 1
    # no [0, 1] metric could ever fail.
    margin: float = Field(default=0.02, gt=0, le=1, description="Non-inferiority margin M (absolute, e.g. 0.02 = 2 pts).")
    higher_is_better: bool = True


DRIFT_SIGNALS = ("empty_output", "refusal", "output_length")
"""Signals of the outputs that need no ground truth; a guardrail may name one instead of a scorer."""


class GuardrailSpec(StrictModel):
    metric: str = Field(description="A scorer name, or a drift signal: empty_output, refusal, output_length.")
    higher_is_better: bool = True
    blocking: bool = Field(default=False, description="An alarm FAILs the gate instead of WARNing.")


class SampleSpec(StrictModel):
    """The pre-rollout sample: `evalbatch run SUITE --sample N`."""

    stratify_by: str | None = Field(default=None, description="Field to stratify the sample by.")
    seed: int = 0
    sequential: bool = Field(default=False, description="Evaluate in stages; stop early at O'Brien-Fleming bounds.")
    looks: int = Field(default=3, ge=2, le=10, description="Stages of a sequential sample.")

    @model_validator(mode="after")
    def _looks_need_sequential(self) -> SampleSpec:
        # Stages of a sample that is not sequential would silently be ignored.
        if "looks" in self.model_fields_set and not self.sequential:
            raise ValueError("looks only applies to a sequential sample; add sequential: true or remove looks")
        return self


class GateSpec(StrictModel):
    """The promotion policy, fixed before the run."""

    baseline: str = Field(default="production", pattern=_SLUG, description="Baseline name under baselines/<suite>/.")
    primary: list[GateMetric] = Field(default_factory=list, description="Default: every scorer, margin 0.02.")
    guardrails: list[GuardrailSpec] = Field(default_factory=list)
    slices: list[str] = Field(default_factory=list, description="Exploratory slices, Benjamini-Hochberg at q=0.10.")
    category_field: str | None = Field(default=None, description="Also compare per value of this item field.")
    alpha: float = Field(default=0.025, gt=0, lt=0.5, description="One-sided alpha of the non-inferiority test.")
    sample: SampleSpec = Field(default_factory=SampleSpec)
    validators: list[str] | None = Field(
        default=None, description="Scorers an output of a promoted full run must pass; default: the scorers "
        "that need no ground truth, and for label_in_set a valid label.")

    @property
    def fingerprint(self) -> str:
        """sha256 of the policy's canonical JSON: a gate decided under another policy is not this one's."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    def primary_metrics(self, scored: list[str]) -> list[GateMetric]:
        """The gated metrics: `primary` as written, or by default every scored metric at the
        default margin."""
        return list(self.primary) or [GateMetric(metric=name) for name in scored]


FailedRequestRule = Literal["zero", "exclude"]


class ScoringSpec(StrictModel):
    """How scores are aggregated into a run's means and a comparison's pairs."""

    failed_requests: FailedRequestRule = Field(
        default="zero", description="A request that ended failed_terminal (e.g. HTTP 400, context length, "
        "retries spent): `zero` counts it as a score of 0 for every scorer, in the run's means and in "
        "comparisons; `exclude` leaves it out (the summary says how many). Unfinished requests are "
        "never scored either way.")

    @property
    def failed_as_zero(self) -> bool:
        return self.failed_requests == "zero"


class OutputSpec(StrictModel):
    dir: str | None = Field(default=None, description="Runs go to <dir>/<suite>/<run_id>/ (default: <project>/reports).")


class SuiteSpec(StrictModel):
    version: Literal[1] = Field(default=SUITE_FORMAT_VERSION, description="Suite file format version.")
    name: str = Field(pattern=_SLUG)
    description: str = ""
    dataset: DatasetSpec
    slices: list[SliceSpec] = Field(min_length=1)
    evaluate: list[str] | None = Field(
        default=None, description="Slices a run covers (their union); default: the first slice.")
    prompt: PromptRef
    targets: list[TargetSpec] = Field(min_length=1)
    scorers: list[ScorerSpec] = Field(min_length=1)
    epochs: int = Field(default=1, ge=1, le=100, description="Samples per item.")
    engine: EngineSpec = Field(default_factory=EngineSpec)
    output: OutputSpec = Field(default_factory=OutputSpec)
    scoring: ScoringSpec = Field(default_factory=ScoringSpec)
    gate: GateSpec = Field(default_factory=GateSpec)

    @field_validator("slices")
    @classmethod
    def _unique_slices(cls, slices: list[SliceSpec]) -> list[SliceSpec]:
        _require_unique([s.name for s in slices], "slice")
        return slices

    @field_validator("targets")
    @classmethod
    def _unique_targets(cls, targets: list[TargetSpec]) -> list[TargetSpec]:
        _require_unique([t.label for t in targets], "target")
        # A request's ID names its provider, model, base URL and params, not the target's name:
        # two targets alike in all of them would share their requests in the run store.
        seen: dict[tuple[str, str, str | None, str], str] = {}
        for target in targets:
            sends = (target.provider, target.model, target.base_url, target.params.model_dump_json())
            if sends in seen:
                raise ValueError(f"targets {seen[sends]!r} and {target.label!r} send the same requests (same provider, "
                                 "model, base_url and params), so a run could not tell their results apart; "
                                 "remove one, or make them differ")
            seen[sends] = target.label
        return targets

    @field_validator("scorers")
    @classmethod
    def _unique_scorers(cls, scorers: list[ScorerSpec]) -> list[ScorerSpec]:
        _require_unique([s.label for s in scorers], "scorer")
        return scorers

    @model_validator(mode="after")
    def _evaluate_names_slices(self) -> SuiteSpec:
        known = {s.name for s in self.slices}
        for name in self.evaluate or []:
            if name not in known:
                raise ValueError(f"evaluate names slice {name!r}, but the suite defines only {sorted(known)}")
        return self

    @property
    def gate_metrics(self) -> list[GateMetric]:
        return self.gate.primary_metrics([s.label for s in self.scorers])

    @property
    def evaluated_slices(self) -> list[str]:
        return list(self.evaluate or [self.slices[0].name])


def _require_unique(names: list[str], what: str) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ValueError(f"two {what}s are named {name!r}; names must be unique")
        seen.add(name)
