"""report.json: the versioned document every report format is rendered from, written as it is
for machines: the gate record (when there is a comparison) plus summaries of both runs.

The numbers are never recomputed here: scores come from the run snapshots, the comparison and
verdict from the gate record (`GateRecord.comparison` is `compare --json`'s output).
"""

from __future__ import annotations

from typing import Final, Literal

from pydantic import BaseModel, Field

from harness.compare.baseline import BaselineEvent
from harness.engine.metrics import RunMetrics
from harness.runs.gate_record import GateRecord

REPORT_VERSION: Final = 1
TOP_ITEMS = 20
"""Items of each change type the JSON and Markdown list (the HTML lists every changed item)."""


class ScoreRow(BaseModel):
    """A metric's mean over items (epochs averaged within items) with its 95% t interval."""

    metric: str
    n: int = Field(description="Items with a score.")
    mean: float | None
    ci_low: float | None
    ci_high: float | None


class FailureClass(BaseModel):
    """Terminal failures of one kind: `http 429`, `http 5xx`, `http 4xx`, `no reply` (timeouts, connections)."""

    kind: str
    count: int


class RunSummary(BaseModel):
    """What a run was and how it went."""

    run_id: str
    suite: str
    status: str
    target: str
    provider: str
    model: str
    params: dict
    prompt: str
    prompt_version: str
    prompt_fingerprint: str
    dataset: str = Field(description="Dataset fingerprint.")
    slice_fingerprint: str
    evaluated: list[str]
    items: int = Field(description="Items evaluated.")
    epochs: int
    started_at: str
    ended_at: str | None
    wall_time_s: float
    harness_version: str
    git_commit: str | None
    metrics: RunMetrics | None = Field(description="Operating metrics from the run store (every target of the run).")
    failures: list[FailureClass] = Field(default_factory=list)
    scores: list[ScoreRow]


class BaselineSummary(BaseModel):
    """What the candidate was compared with: a named baseline (with its history) or a run."""

    name: str | None
    kind: Literal["baseline", "run"]
    run_id: str
    prompt: str = Field(description="name@version.")
    prompt_fingerprint: str
    model: str
    params: dict
    harness_version: str
    dataset: str = Field(description="Dataset fingerprint.")
    slice_fingerprint: str
    evaluated: list[str]
    set_at: str | None = None
    set_by: str | None = None
    history: list[BaselineEvent] = Field(default_factory=list)
    scores: list[ScoreRow]
    run: RunSummary | None = Field(default=None, description="The baseline run, when its folder was found.")


ChangeKind = Literal["regressed", "improved", "unchanged"]


class ItemChange(BaseModel):
    """An item whose score on a metric moved (means over epochs; outputs are their first 300 characters)."""

    item_id: str
    metric: str
    change: ChangeKind
    baseline_score: float | None
    candidate_score: float | None
    baseline_output: str | None
    candidate_output: str | None
    slices: list[str]


class ItemCounts(BaseModel):
    metric: str
    regressed: int
    improved: int
    unchanged: int


class ReportDocument(BaseModel):
    version: Literal[1] = REPORT_VERSION
    kind: Literal["run", "comparison"]
    generated_at: str
    harness_version: str
    gate_source: Literal["recorded", "computed"] | None = Field(
        description="recorded: the run's gate.json; computed: decided for this report against --baseline, not "
                    "recorded; None: no comparison.")
    run: RunSummary
    baseline: BaselineSummary | None
    gate: GateRecord | None
    item_counts: list[ItemCounts] = Field(default_factory=list)
    top_regressed: list[ItemChange] = Field(default_factory=list, description=f"Up to {TOP_ITEMS}, largest drop first.")
    top_improved: list[ItemChange] = Field(default_factory=list, description=f"Up to {TOP_ITEMS}, largest gain first.")
    notes: list[str] = Field(default_factory=list)


def render_json(document: ReportDocument) -> str:
    return document.model_dump_json(indent=2) + "\n"
