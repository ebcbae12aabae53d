"""Promotion: a configuration whose gate passed becomes the suite's production configuration,
recorded with its evidence; a full-scale run of it then sorts outputs into validated results
and a review queue, so nothing unvalidated goes downstream."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from harness.compare.baseline import current_user
from harness.config.loader import LoadedSuite
from harness.errors import UserError
from harness.runs.manifest import now_iso, read_manifest, write_atomically
from harness.runs.results import ResultLine
from harness.scoring.registry import scorer_kinds

PROMOTION_VERSION = 1
PASSING = ("PASS", "WARN")


class Promotion(BaseModel):
    version: Literal[1] = PROMOTION_VERSION
    suite: str
    run_id: str
    prompt: str
    prompt_version: str
    prompt_fingerprint: str
    targets: list[dict[str, Any]]
    verdict: str
    reasons: list[str]
    promoted_at: str
    promoted_by: str


class GateRefused(Exception):
    """The run's gate did not pass (or was never run): promotion is refused, exit 1."""


def promote(suite: LoadedSuite, run_folder: Path) -> Promotion:
    manifest = read_manifest(run_folder)
    if manifest.suite != suite.spec.name:
        raise UserError(f"run {manifest.run_id} is of suite {manifest.suite!r}, not {suite.spec.name!r}")
    gate_file = run_folder / "gate.json"
    if not gate_file.is_file():
        raise GateRefused(f"run {manifest.run_id} has no gate verdict; run `evalbatch gate {manifest.run_id}` first")
    evidence = json.loads(gate_file.read_text(encoding="utf-8"))
    verdict = evidence["gate"]["verdict"]
    if verdict not in PASSING:
        raise GateRefused(f"run {manifest.run_id}'s gate is {verdict}; only PASS or WARN may be promoted: "
                          + "; ".join(evidence["gate"]["reasons"]))
    record = Promotion(
        suite=manifest.suite, run_id=manifest.run_id, prompt=manifest.prompt.name,
        prompt_version=manifest.prompt.version, prompt_fingerprint=manifest.prompt.fingerprint,
        targets=[t.model_dump() for t in manifest.targets], verdict=verdict, reasons=evidence["gate"]["reasons"],
        promoted_at=now_iso(), promoted_by=current_user())
    folder = suite.project_dir / "baselines" / suite.spec.name
    folder.mkdir(parents=True, exist_ok=True)
    write_atomically(folder / "promoted.json", record.model_dump_json(indent=2) + "\n")
    with (folder / "promotions.jsonl").open("a", encoding="utf-8") as log:
        log.write(record.model_dump_json() + "\n")
    return record


def load_promotion(suite: LoadedSuite) -> Promotion:
    path = suite.project_dir / "baselines" / suite.spec.name / "promoted.json"
    if not path.is_file():
        raise UserError("nothing promoted yet", file=str(path), hint="evalbatch promote SUITE --run RUN_ID")
    return Promotion.model_validate_json(path.read_text(encoding="utf-8"))


def validator_names(suite: LoadedSuite) -> list[str]:
    """The suite's `gate.validators`, or by default the scorers that check an output is usable
    without ground truth (schema, format, a known label): scorers that compare with an expected
    answer cannot validate production records, which have none."""
    if suite.spec.gate.validators is not None:
        return list(suite.spec.gate.validators)
    kinds = scorer_kinds()
    return [s.label for s in suite.spec.scorers
            if not kinds[s.type].needs_target or s.type == "label_in_set"]


def is_valid(line: ResultLine, validators: list[str]) -> bool:
    if line.state != "succeeded":
        return False
    for name in validators:
        score = line.scores.get(name) or {}
        detail = score.get("detail") or {}
        ok = detail.get("label") is not None if "label" in detail else bool(score.get("passed"))
        if not ok:
            return False
    return True


def split_validated(run_folder: Path, lines: list[ResultLine], validators: list[str]) -> tuple[int, int]:
    """validated.jsonl gets outputs that pass every validator; needs_review.jsonl the rest."""
    valid = [line for line in lines if is_valid(line, validators)]
    review = [line for line in lines if not is_valid(line, validators)]
    write_atomically(run_folder / "validated.jsonl", "".join(line.model_dump_json() + "\n" for line in valid))
    write_atomically(run_folder / "needs_review.jsonl", "".join(line.model_dump_json() + "\n" for line in review))
    return len(valid), len(review)
