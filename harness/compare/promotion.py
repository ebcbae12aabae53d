"""Promotion: a configuration whose gate passed becomes the suite's production configuration,
recorded with its evidence; a full-scale run of it then sorts outputs into validated results
and a review queue, so nothing unvalidated goes downstream."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

from pydantic import BaseModel, Field, ValidationError

from harness.compare.baseline import Baseline, baseline_path, current_user
from harness.compare.verdict import Verdict
from harness.config.loader import LoadedSuite
from harness.engine.states import RequestState
from harness.errors import UserError
from harness.runs.gate_record import (
    BaselineRef,
    ConfigFingerprints,
    GateRecord,
    TargetConfig,
    file_sha256,
    read_gate_record,
)
from harness.runs.locate import previous_runs, suite_runs_dir
from harness.runs.manifest import Manifest, definitions_sha256, now_iso, read_manifest, write_atomically
from harness.runs.results import ResultLine
from harness.scoring.registry import ScorerKind, scorer_kinds

if TYPE_CHECKING:
    from harness.plan import RunPlan

PROMOTION_VERSION: Final = 2
PASSING = (Verdict.PASS, Verdict.WARN)


class PromotionV1(BaseModel):
    """promoted.json as version 1 wrote it (read only, upgraded on reading)."""

    version: Literal[1]
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


class Promotion(BaseModel):
    """The configuration that passed the gate, frozen: a full run must use exactly this."""

    version: Literal[2] = PROMOTION_VERSION
    suite: str
    run_id: str
    prompt: str
    prompt_version: str
    prompt_fingerprint: str
    targets: list[TargetConfig] = Field(description="Provider, model, base_url and parameters as gated.")
    verdict: Verdict
    reasons: list[str]
    baseline: BaselineRef | None = Field(default=None, description="What the gate compared with (None: "
                                         "promoted by version 1, which did not record it).")
    policy_fingerprint: str | None = None
    scorers: str | None = Field(default=None, description="sha256 of the scorer definitions the gate graded with.")
    policy_changed: str | None = Field(default=None, description="The gate was decided under a policy changed "
                                       "since the run started, for this reason (`gate --policy-changed`).")
    promoted_at: str
    promoted_by: str

    @classmethod
    def from_v1(cls, old: PromotionV1) -> Promotion:
        return cls(**old.model_dump(exclude={"version", "targets", "verdict"}), verdict=Verdict(old.verdict),
                   targets=[TargetConfig.model_validate(t) for t in old.targets])


class GateRefused(Exception):
    """The run's gate did not pass, was never run, or no longer holds: promotion is refused, exit 1."""


def approve(suite: LoadedSuite, run_folder: Path) -> Promotion:
    """The promotion of the run in `run_folder`, if its gate still holds; nothing is written."""
    manifest = read_manifest(run_folder)
    if manifest.suite != suite.spec.name:
        raise UserError(f"run {manifest.run_id} is of suite {manifest.suite!r}, not {suite.spec.name!r}")
    record = read_gate_record(run_folder)  # gate.json: the latest of the run's decisions
    if record is None:
        raise GateRefused(f"run {manifest.run_id} has no gate verdict; run `evalbatch gate {manifest.run_id}` first")
    problems = gate_problems(suite, manifest, record) or _decided_again(suite, run_folder, record)
    if problems:
        raise GateRefused(f"run {manifest.run_id} cannot be promoted: " + "; ".join(problems))
    return Promotion(
        suite=manifest.suite, run_id=manifest.run_id, prompt=record.candidate.prompt,
        prompt_version=record.candidate.prompt_version, prompt_fingerprint=record.candidate.prompt_fingerprint,
        targets=record.candidate.targets, verdict=record.verdict, reasons=record.reasons, baseline=record.baseline,
        policy_fingerprint=record.policy_fingerprint, policy_changed=record.policy_changed,
        scorers=record.candidate.scorers, promoted_at=now_iso(),
        promoted_by=current_user())


def gate_problems(suite: LoadedSuite, manifest: Manifest, record: GateRecord) -> list[str]:
    """Why the gate record does not allow promoting this run now (empty: it does).

    A gate only vouches for a run when it was decided against the suite's own baseline, as that
    file still is, under the suite's current policy, for the run as it still is."""
    problems = []
    if record.verdict not in PASSING:
        problems.append(f"its gate is {record.verdict}; only {' or '.join(PASSING)} may be promoted: "
                        + "; ".join(record.reasons))
    problems.extend(_baseline_problems(suite, record.baseline))
    if record.policy_fingerprint != suite.spec.gate.fingerprint:
        problems.append(f"the suite's gate policy changed since the gate (policy {record.policy_fingerprint[:12]}, "
                        f"now {suite.spec.gate.fingerprint[:12]}); gate the run again under the current policy")
    if record.run_id != manifest.run_id or record.candidate != ConfigFingerprints.of_manifest(manifest):
        problems.append(f"the run's manifest no longer matches the configuration the gate judged "
                        f"(gate.json of run {record.run_id}); gate the run again")
    if manifest.status not in ("complete", "incomplete", "stopped_early"):
        problems.append(f"the run is {manifest.status}, not finished; finish it and gate it again")
    if len(manifest.targets) > 1:
        problems.append(f"the run has targets {[t.label for t in manifest.targets]} and the gate judged only "
                        f"{record.target!r}; promote a run of the suite with that one target")
    if record.candidate.scorers and record.candidate.scorers != scorers_fingerprint_of(suite):
        problems.append("the suite's scorers changed since the gate (type, parameters, target or extraction); "
                        "a promotion must be graded the way the gate was")
    return problems


def _decided_again(suite: LoadedSuite, run_folder: Path, record: GateRecord) -> list[str]:
    """gate.json is a file anyone can edit, and a run can change after its gate (resumed, retried):
    the decision is taken again from the run store and the baseline, and must agree."""
    from harness.compare.gate_decision import judge  # the gate's own code, not a copy of it
    from harness.compare.sources import SourceOptions

    _, _, now = judge(str(run_folder), SourceOptions(target=record.target, suite_path=suite.path))
    if now.verdict != record.verdict:
        return [f"gate.json says {record.verdict}, but the run and the baseline give {now.verdict} now "
                f"({'; '.join(now.reasons)}); gate the run again"]
    return []


def _baseline_problems(suite: LoadedSuite, ref: BaselineRef) -> list[str]:
    name = suite.spec.gate.baseline
    if ref.kind != "baseline" or ref.name != name:
        used = f"run {ref.run_id}" if ref.kind == "run" else f"baseline {ref.name!r}"
        return [f"the gate was decided against {used}, not the suite's baseline {name!r} (gate.baseline); "
                f"run `evalbatch gate RUN_ID` without --baseline"]
    path = baseline_path(suite.project_dir, suite.spec.name, name)
    if not path.is_file():
        return [f"the suite's baseline {name!r} is gone ({path})"]
    if file_sha256(path) != ref.sha256:
        return [f"the suite's baseline {name!r} changed since the gate ({path} was set again or edited); "
                "gate the run again against it"]
    return []


def promotion_folder(suite: LoadedSuite) -> Path:
    return suite.project_dir / "baselines" / suite.spec.name


def record_promotion(suite: LoadedSuite, record: Promotion) -> Path:
    """Writes promoted.json and appends to promotions.jsonl, unless this run already is the
    promoted one: promoting it again adds no second record."""
    folder = promotion_folder(suite)
    current = current_promotion(suite)
    if current is not None and current.run_id == record.run_id:
        return folder / "promoted.json"
    folder.mkdir(parents=True, exist_ok=True)
    write_atomically(folder / "promoted.json", record.model_dump_json(indent=2) + "\n")
    with (folder / "promotions.jsonl").open("a", encoding="utf-8") as log:
        log.write(record.model_dump_json() + "\n")
    return folder / "promoted.json"


def current_promotion(suite: LoadedSuite) -> Promotion | None:
    """The suite's promoted.json, or None when nothing was promoted yet."""
    if not (promotion_folder(suite) / "promoted.json").is_file():
        return None
    return load_promotion(suite)


def already_promoted(suite: LoadedSuite, run_folder: Path) -> Promotion | None:
    """The current promotion if it is of this very run (a run promoted, then another, then this
    one again is a new promotion: a rollback)."""
    current = current_promotion(suite)
    return current if current is not None and current.run_id == read_manifest(run_folder).run_id else None


def load_promotion(suite: LoadedSuite) -> Promotion:
    path = promotion_folder(suite) / "promoted.json"
    if not path.is_file():
        raise UserError("nothing promoted yet", file=str(path), hint="evalbatch promote SUITE --run RUN_ID")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(data, dict) and data.get("version") == 1:
            return Promotion.from_v1(PromotionV1.model_validate(data))
        return Promotion.model_validate(data)
    except (ValueError, ValidationError) as exc:
        raise UserError(f"not a promotion record of version 1 or {PROMOTION_VERSION}: {exc}", file=str(path)) from None


def full_runs(suite: LoadedSuite, record: Promotion) -> list[Manifest]:
    """Newest first, the complete full runs (`promote --full`) of the promoted configuration
    started since it was promoted."""
    since = parse_time(record.promoted_at)
    return [manifest for _, manifest in previous_runs(suite_runs_dir(suite))
            if manifest.options.full_promotion and manifest.status == "complete"
            and manifest.prompt.fingerprint == record.prompt_fingerprint
            and manifest.prompt.version == record.prompt_version and parse_time(manifest.started_at) >= since]


@dataclass(frozen=True)
class BaselineStatus:
    """How a baseline stands with the suite's latest promotion."""

    promotion: Promotion
    outdated: bool
    """The promotion came after the baseline was set (or in the same second), and from another run."""
    update_from: str
    """The run to set the baseline from: the newest full run of the promotion, else the promoted run."""


def baseline_status(suite: LoadedSuite, baseline: Baseline) -> BaselineStatus | None:
    """None when nothing was promoted, or the promotion was gated against another baseline."""
    record = current_promotion(suite)
    if record is None:
        return None
    gated_against = record.baseline.name if record.baseline and record.baseline.kind == "baseline" else None
    if (gated_against or suite.spec.gate.baseline) != baseline.name:
        return None
    full = full_runs(suite, record)
    promoted_runs = {record.run_id, *(manifest.run_id for manifest in full)}
    # Stamps have one-second resolution: a baseline set in the second of the promotion, from
    # another run, is taken as set before it.
    outdated = (baseline.snapshot.run_id not in promoted_runs
                and parse_time(record.promoted_at) >= parse_time(baseline.set_at))
    return BaselineStatus(record, outdated, full[0].run_id if full else record.run_id)


def parse_time(stamp: str) -> datetime:
    """now_iso() stamps; one without a zone (hand-written) is taken as UTC."""
    parsed = datetime.fromisoformat(stamp)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def scorers_fingerprint_of(suite: LoadedSuite) -> str:
    """The suite's scorer definitions as a run's manifest records them."""
    return definitions_sha256([s.model_dump() for s in suite.spec.scorers])


def check_full_run_matches(record: Promotion, plan: RunPlan) -> list[str]:
    """What a full run of `plan` would do differently from the promoted configuration, one line
    per difference, e.g. `targets[fake].params.temperature: promoted 0.0, suite now 1.5`."""
    prompt = plan.prompt
    differences = []
    if record.policy_fingerprint and record.policy_fingerprint != plan.suite.spec.gate.fingerprint:
        differences.append(f"gate policy (validators, margins, ...): promoted under {record.policy_fingerprint[:12]}, "
                           f"suite now {plan.suite.spec.gate.fingerprint[:12]}")
    if record.scorers and record.scorers != scorers_fingerprint_of(plan.suite):
        differences.append(f"scorers: promoted {record.scorers[:12]}, suite now {scorers_fingerprint_of(plan.suite)[:12]}")
    differences += [f"prompt.{field}: promoted {promoted}, suite now {now}" for field, promoted, now in (
        ("name", record.prompt, prompt.name), ("version", record.prompt_version, prompt.version),
        ("fingerprint", record.prompt_fingerprint[:12], prompt.fingerprint[:12])) if promoted != now]
    promoted = {target.label: target for target in record.targets}
    current = {target.label: target for target in plan.suite.spec.targets}
    differences += [f"targets[{label}]: promoted, no longer in the suite" for label in sorted(promoted.keys() - current.keys())]
    differences += [f"targets[{label}]: in the suite now, never promoted" for label in sorted(current.keys() - promoted.keys())]
    for label in sorted(promoted.keys() & current.keys()):
        was, now = promoted[label], current[label]
        fields = {f: (getattr(was, f), getattr(now, f)) for f in ("provider", "model", "base_url")}
        fields |= {f"params.{key}": (was.params.get(key), now.params.model_dump().get(key))
                   for key in sorted(was.params.keys() | now.params.model_dump().keys())}
        differences += [f"targets[{label}].{field}: promoted {_show(old)}, suite now {_show(new)}"
                        for field, (old, new) in fields.items() if old != new]
    return differences


def _show(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def validators(suite: LoadedSuite) -> dict[str, ScorerKind]:
    """The suite's `gate.validators`, or by default the scorers whose kind can validate an output
    without ground truth (schema, format, a known label): scorers that compare with an expected
    answer cannot validate production records, which have none."""
    kinds = scorer_kinds()
    by_name = {s.label: kinds[s.type] for s in suite.spec.scorers}
    if suite.spec.gate.validators is not None:
        return {name: by_name[name] for name in suite.spec.gate.validators}
    return {name: kind for name, kind in by_name.items() if kind.validates}


def is_valid(line: ResultLine, checks: dict[str, ScorerKind]) -> bool:
    if line.state != RequestState.SUCCEEDED:
        return False
    return all(kind.output_is_valid(line.scores.get(name) or {}) for name, kind in checks.items())


def split_validated(run_folder: Path, lines: list[ResultLine], checks: dict[str, ScorerKind]) -> tuple[int, int]:
    """validated.jsonl gets outputs that pass every validator; needs_review.jsonl the rest."""
    valid = [line for line in lines if is_valid(line, checks)]
    review = [line for line in lines if not is_valid(line, checks)]
    write_atomically(run_folder / "validated.jsonl", "".join(line.model_dump_json() + "\n" for line in valid))
    write_atomically(run_folder / "needs_review.jsonl", "".join(line.model_dump_json() + "\n" for line in review))
    return len(valid), len(review)
