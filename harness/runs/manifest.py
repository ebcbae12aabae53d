"""manifest.json: what a run was (suite, prompt, models, data, code) and how it went."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

from harness.engine.metrics import RunMetrics
from harness.engine.stages import LookSchedule
from harness.runs.files import now_iso, write_atomically

__all__ = ["GatePolicyRecord", "LookSchedule", "Manifest", "RunOptionsRecord", "read_manifest", "write_manifest", "now_iso", "write_atomically"]

MANIFEST_VERSION: Final = 1
RunStatus = Literal["running", "complete", "incomplete", "interrupted", "stopped_early", "cancelled"]


class PromptRecord(BaseModel):
    name: str
    version: str
    fingerprint: str
    kind: Literal["completion", "chat"]
    file: str


class TargetRecord(BaseModel):
    label: str
    provider: str
    model: str
    base_url: str | None = None
    params: dict[str, Any]


class DatasetRecord(BaseModel):
    source: str
    fingerprint: str
    slices: list[dict[str, Any]]
    evaluated: list[str]
    slice_fingerprint: str
    item_count: int
    population: int | None = Field(default=None, description="Items the evaluated slices hold, which the run's "
                                   "items were drawn from (--sample); None when unknown (--limit, older runs).")
    sample: int | None = Field(default=None, description="Pre-rollout sample size (run --sample N).")
    limit: int | None = None


class RunOptionsRecord(BaseModel):
    """The `run` options that chose this run's work, so the printed resume command repeats them."""

    slices: list[str] = Field(default_factory=list, description="--slice names (empty: the suite's own).")
    limit: int | None = Field(default=None, description="--limit N.")
    prompt_version: str | None = Field(default=None, description="--prompt-version (None: the suite's).")
    sample: int | None = Field(default=None, description="--sample N.")
    reports_dir: str | None = Field(default=None, description="--reports-dir, resolved (None: the suite's).")
    full_promotion: bool = Field(default=False, description="The full run of `promote --full`: finishing it "
                                 "also writes validated.jsonl and needs_review.jsonl.")
    rpm: float | None = Field(default=None, description="--rpm of the latest session (None: the suite's limits).")
    tpm: float | None = Field(default=None, description="--tpm of the latest session.")
    mode: Literal["realtime", "batch"] | None = Field(
        default=None, description="--mode of the latest session (None: each target's own mode).")


class GatePolicyRecord(BaseModel):
    """The suite's gate policy when the run started: fixed before the data is seen, so a gate
    decided under another policy can be told apart."""

    fingerprint: str = Field(description="GateSpec.fingerprint: sha256 of the policy's canonical JSON.")
    policy: dict[str, Any] = Field(description="The policy itself, as JSON (the suite's `gate:`, defaults filled in).")


class Manifest(BaseModel):
    """Never holds secrets: API keys stay in the environment."""

    model_config = ConfigDict(extra="forbid")

    version: Literal[1] = MANIFEST_VERSION
    run_id: str
    suite: str
    suite_file: str
    work_fingerprint: str = Field(description="sha256 of the run's request IDs and payloads: the same work resumes the same run.")
    prompt: PromptRecord
    targets: list[TargetRecord]
    scorers: list[dict[str, Any]]
    dataset: DatasetRecord
    epochs: int
    request_count: int
    harness_version: str
    git_commit: str | None = None
    started_at: str
    ended_at: str | None = None
    status: RunStatus = "running"
    wall_time_s: float = Field(default=0.0, description="Summed active time of every process that worked on the run.")
    looks: list[dict[str, Any]] = Field(default_factory=list, description="Sequential looks and their decisions.")
    options: RunOptionsRecord = Field(default_factory=RunOptionsRecord,
                                      description="How the run was started (older manifests: the defaults).")
    gate_policy: GatePolicyRecord | None = Field(default=None, description="The suite's gate policy when the run "
                                                 "started (None: a run from before runs recorded it).")
    look_schedule: LookSchedule | None = Field(default=None, description="A sequential sample's stages and bounds, "
                                               "fixed when it started (None: not sequential, or an older run).")
    metrics: RunMetrics | None = Field(default=None, description="Run metrics as of the end of the latest session "
                                       "(None: a run from before metrics were recorded, or still in its first).")


def definitions_sha256(value: Any) -> str:
    """sha256 of a JSON value's canonical form (scorer or slice definitions)."""
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def scorers_fingerprint(manifest: Manifest) -> str:
    """How the run graded its outputs: every scorer's type, parameters, target and extraction."""
    return definitions_sha256(manifest.scorers)


def slices_fingerprint(manifest: Manifest) -> str:
    """What the evaluated slice names mean (their definitions), independent of a sample's items."""
    evaluated = set(manifest.dataset.evaluated)
    return definitions_sha256([s for s in manifest.dataset.slices if s.get("name") in evaluated])


def write_manifest(folder: Path, manifest: Manifest) -> None:
    write_atomically(folder / "manifest.json", manifest.model_dump_json(indent=2) + "\n")


def read_manifest(folder: Path) -> Manifest:
    return Manifest.model_validate(json.loads((folder / "manifest.json").read_text(encoding="utf-8")))
