"""gate.json: the gate's decision on a run, with what it was decided against and under which
policy, so that `promote` can check the decision still holds.

The English reasons are rendered from the structured fields (`render_reasons`), so the text a
person reads and the numbers a machine checks cannot disagree.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path
from typing import Any, Final, Literal

from pydantic import BaseModel, Field, ValidationError

from harness.compare.verdict_kind import NoInterval, SettlePremise, Verdict
from harness.errors import UserError
from harness.runs.files import write_atomically
from harness.runs.manifest import Manifest, TargetRecord, scorers_fingerprint

GATE_RECORD_VERSION: Final = 1
GATE_FILE = "gate.json"
GATE_HISTORY_DIR = "gates"
# Reasons show [0, 1] metrics in percentage points, as the gate's policy margins are read.
_SCALE, _UNIT = 100.0, "pts"
WILSON = "Wilson bound"


class BaselineRef(BaseModel):
    """What the candidate was compared with."""

    name: str | None = Field(description="The baseline's name; None when the baseline was a run.")
    kind: Literal["baseline", "run"]
    run_id: str = Field(description="The run the baseline was made from (or the baseline run itself).")
    file: str = Field(description="baselines/<suite>/<name>.json, or the baseline run's results.jsonl.")
    sha256: str = Field(description="sha256 of that file's bytes when the gate read it.")


TargetConfig = TargetRecord
"""One model as it was called: the manifest's own record of it."""


class ConfigFingerprints(BaseModel):
    """What a run was: enough to tell whether the configuration changed since."""

    prompt: str
    prompt_version: str
    prompt_fingerprint: str
    targets: list[TargetConfig]
    dataset: str
    slice_fingerprint: str
    evaluated: list[str]
    scorers: str | None = None
    """sha256 of the run's scorer definitions (None in records written before it was kept)."""

    @classmethod
    def of_manifest(cls, manifest: Manifest) -> ConfigFingerprints:
        return cls(prompt=manifest.prompt.name, prompt_version=manifest.prompt.version,
                   prompt_fingerprint=manifest.prompt.fingerprint,
                   targets=list(manifest.targets),
                   dataset=manifest.dataset.fingerprint, slice_fingerprint=manifest.dataset.slice_fingerprint,
                   evaluated=list(manifest.dataset.evaluated), scorers=scorers_fingerprint(manifest))


class MarginInReach(BaseModel):
    """A margin the available items would settle, at the same premise as items_needed."""

    margin: float
    items: int


class MetricReason(BaseModel):
    """The verdict on one primary metric, in the metric's own units (0.02 = 2 pts)."""

    metric: str
    slice: str = Field(description="The evaluated slices, joined with '+'.")
    verdict: Verdict
    n: int = Field(description="Paired items.")
    mean_delta: float | None = Field(description="Candidate minus baseline.")
    ci: tuple[float, float] | None = Field(description="The interval the decision used.")
    ci_level: float
    margin: float
    higher_is_better: bool
    ci_method: str = Field(default="", description="How `ci` was formed: Tango score, CLT t, CLT normal, or "
                           "Wilson bound (every item moved alike: a bound on the share that could differ).")
    test: str
    p: float | None
    items_needed: int | None = Field(description="For INCONCLUSIVE: items that would settle it.")
    premise: SettlePremise | None = Field(default=None, description="What items_needed assume of further items.")
    no_interval: NoInterval | None = Field(default=None, description="Why `ci` is None, when it is.")
    items_available: int | None = Field(default=None, description="Items the evaluated slices hold (the population "
                                        "a --sample was drawn from, as the run recorded it; else the larger of the "
                                        "run's and the baseline's); None when not known.")
    within_reach: MarginInReach | None = Field(default=None, description="When items_needed exceed "
                                               "items_available: the smallest margin those items would settle.")


class GuardrailReason(BaseModel):
    """A guardrail (Holm) or an exploratory slice or category (Benjamini-Hochberg)."""

    name: str = Field(description="The guardrail's metric, or the subset: slice=english, label=bug.")
    metric: str
    mean_delta: float | None
    test: str
    p: float | None
    adjusted_p: float
    worsened: bool
    alarmed: bool
    blocking: bool = False


class DriftAlarm(BaseModel):
    """A drift signal (no ground truth needed) that alarmed."""

    signal: str
    test: str
    adjusted_p: float | None
    effect_name: str
    effect: float
    threshold: float


class GateRecord(BaseModel):
    version: Literal[1] = GATE_RECORD_VERSION
    suite: str
    run_id: str
    target: str = Field(description="The target of the run that was gated.")
    decided_at: str
    decided_by: str
    baseline: BaselineRef
    policy_fingerprint: str = Field(description="sha256 of the suite's gate policy (GateSpec.fingerprint).")
    candidate: ConfigFingerprints
    verdict: Verdict
    metrics: list[MetricReason]
    guardrails: list[GuardrailReason]
    slice_warnings: list[GuardrailReason] = Field(description="Slices and categories that worsened (BH).")
    drift_alarms: list[DriftAlarm]
    notes: list[str] = Field(default_factory=list)
    run_policy_fingerprint: str | None = Field(default=None, description="The gate policy the run recorded when it "
                                               "started (None: a run from before runs recorded it).")
    policy_changed: str | None = Field(default=None, description="Why the gate was decided under a policy other "
                                       "than the one the run started with (`gate --policy-changed`); None: it was not.")
    reasons: list[str] = Field(default_factory=list, description="English, rendered by render_reasons.")
    comparison: dict[str, Any] = Field(description="The full comparison, as `compare --json` prints it.")

    @property
    def warnings(self) -> list[str]:
        return render_warnings(self)


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_gate_record(run_folder: Path, record: GateRecord) -> Path:
    """Keeps the decision in the run's gate history (`gates/NNNN.json`, never overwritten), then
    makes it the latest (`gate.json`)."""
    _keep_unrecorded_latest(run_folder)
    _append_to_history(run_folder, record.model_dump_json(indent=2) + "\n")
    path = run_folder / GATE_FILE
    write_atomically(path, record.model_dump_json(indent=2) + "\n")
    return path


def _append_to_history(run_folder: Path, text: str) -> Path:
    """Writes `text` as the next `gates/NNNN.json`: written whole to a temporary file, then linked
    under a name no other decision has (a link never replaces a file), so two gates deciding at
    once both keep their record and nobody reads half a record."""
    folder = run_folder / GATE_HISTORY_DIR
    folder.mkdir(exist_ok=True)
    temporary = folder / f".{os.getpid()}-{uuid.uuid4().hex}.tmp"
    with temporary.open("w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    try:
        number = len(_history_files(run_folder)) + 1
        while True:
            target = folder / f"{number:04d}.json"
            try:
                os.link(temporary, target)
                return target
            except FileExistsError:
                number += 1
    finally:
        temporary.unlink(missing_ok=True)


def _keep_unrecorded_latest(run_folder: Path) -> None:
    """A gate.json written before decisions were kept in a history enters it first, so deciding
    again does not lose it."""
    latest = run_folder / GATE_FILE
    if latest.is_file() and not _history_files(run_folder):
        _append_to_history(run_folder, latest.read_text(encoding="utf-8"))


def _history_files(run_folder: Path) -> list[Path]:
    folder = run_folder / GATE_HISTORY_DIR
    if not folder.is_dir():
        return []
    return sorted((p for p in folder.glob("*.json") if p.stem.isdigit()), key=lambda p: int(p.stem))


def read_gate_history(run_folder: Path) -> list[GateRecord]:
    """Every gate decision on the run, oldest first (a gate.json from before the history: just it)."""
    files = _history_files(run_folder)
    if not files:
        only = read_gate_record(run_folder)
        return [only] if only is not None else []
    return [_parse(path.read_text(encoding="utf-8"), path) for path in files]


def read_gate_record(run_folder: Path) -> GateRecord | None:
    """The run's latest gate decision (gate.json); None when the run was never gated; a file that
    is not a gate record is bad input."""
    path = run_folder / GATE_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    return _parse(text, path)


def _parse(text: str, path: Path) -> GateRecord:
    try:
        return GateRecord.model_validate_json(text)
    except ValidationError as exc:
        problem = exc.errors()[0]
        where = ".".join(str(part) for part in problem["loc"]) or "(top level)"
        raise UserError(f"not a gate record of version {GATE_RECORD_VERSION}: {where}: {problem['msg']}",
                        file=str(path), hint="decide it again with `evalbatch gate RUN_ID`") from None


# --- English, from the structured fields ------------------------------------------------------------

def _points(value: float) -> str:
    return f"{value * _SCALE:+.1f}"


def _margin(reason: MetricReason) -> str:
    signed = -reason.margin if reason.higher_is_better else reason.margin
    return f"the {signed * _SCALE:+g} {_UNIT} margin"


def _outcome(reason: MetricReason) -> str:
    worse, better = ("below", "above") if reason.higher_is_better else ("above", "below")
    return {
        Verdict.FAIL: f"{worse} {_margin(reason)}",
        Verdict.WARN: f"significantly worse, but within {_margin(reason)}",
        Verdict.PASS: f"entirely {better} {_margin(reason)} (non-inferior)",
        Verdict.INCONCLUSIVE: f"straddles {_margin(reason)}",
    }[reason.verdict]


def _test(test: str, p: float | None) -> str:
    return "" if p is None else f" ({test} p={p:.3g})"


def render_metric(reason: MetricReason) -> str:
    """`VERDICT: metric (slice s) effect, interval, outcome[; what more items would show] (test p)`.

    An empty `slice` leaves the name as it is (the gate's own names already say the slice)."""
    name = f"{reason.metric} (slice {reason.slice})" if reason.slice else reason.metric
    if reason.mean_delta is None or reason.ci is None:
        return f"{reason.verdict}: {name}: {_no_interval(reason)}"
    interval = f"{reason.ci_level * 100:g}% CI [{_points(reason.ci[0])}, {_points(reason.ci[1])}]"
    if reason.ci_method == WILSON:
        text = (f"{name}: all {reason.n} paired items moved by {_points(reason.mean_delta)} {_UNIT}; the Wilson "
                f"bound on items that could differ gives {interval}, {_outcome(reason)}")
    else:
        text = f"{name} {_points(reason.mean_delta)} {_UNIT}, {interval}, {_outcome(reason)}"
    if reason.verdict is Verdict.INCONCLUSIVE:
        text += "; " + _settle(reason)
    return f"{reason.verdict}: {text}{_test(reason.test, reason.p)}"


def _no_interval(reason: MetricReason) -> str:
    if reason.n == 0 or reason.mean_delta is None or reason.no_interval is NoInterval.NO_ITEMS:
        return "no paired items"
    if reason.no_interval is NoInterval.NO_STANDARD_ERROR:
        return f"{reason.n} item(s): no standard error, so no interval can be formed"
    if reason.no_interval is NoInterval.UNBOUNDED_SHIFT:
        return (f"all {reason.n} paired items moved by {_points(reason.mean_delta)} {_UNIT}, so the SE is 0 and, "
                "for scores outside [0, 1], no interval can be formed")
    return f"{reason.n} item(s), and no interval can be formed"


def _premise(reason: MetricReason) -> str:
    premise = reason.premise or (SettlePremise.SAME_SHIFT if reason.ci_method == WILSON else SettlePremise.OBSERVED)
    if premise is SettlePremise.NO_CHANGE:
        return "if further items do not change either"
    if premise is SettlePremise.SAME_SHIFT:
        return "if further items change the same way"
    return f"if the true difference is the observed {_points(reason.mean_delta or 0.0)} {_UNIT}"


def _settle(reason: MetricReason) -> str:
    """What more items would most likely show, taking the observed difference as the truth.

    Assuming a true difference of 0 instead would promise a PASS to an estimate far below the
    margin, where more items would confirm a FAIL."""
    needed, n = reason.items_needed, reason.n
    oriented = (reason.mean_delta or 0.0) * (1 if reason.higher_is_better else -1)
    if oriented < -reason.margin:
        worse = "below" if reason.higher_is_better else "above"
        head = f"the estimate is {worse} {_margin(reason)}: more items would most likely show a FAIL"
        if needed is None or needed <= n:
            return head
        return (f"{head} (about {needed:,} items, {needed - n:,} more, to confirm it at the observed effect"
                f"{_beyond(reason, needed)})")
    if needed is None:
        return f"the estimate sits on {_margin(reason)}: no number of items is likely to settle it"
    if needed <= n:
        return f"{n:,} items already exceed the {needed:,} planned {_premise(reason)}: the estimate is close to the margin"
    return f"about {needed:,} items ({needed - n:,} more) would settle it {_premise(reason)}{_beyond(reason, needed)}"


def _beyond(reason: MetricReason, needed: int) -> str:
    available = reason.items_available
    return "" if available is None or needed <= available else ", but " + render_small_data(available, reason.within_reach)


def render_small_data(available: int, within_reach: MarginInReach | None) -> str:
    """What to do when more items are needed than the evaluated slices hold (the gate and `plan` say it alike)."""
    margin = ("" if within_reach is None else f"decide a larger margin in advance (e.g. M = {within_reach.margin:g} "
              f"needs about {within_reach.items:,}), ")
    return f"the evaluated slices hold only {available:,}: {margin}add data, or run epochs for noisy outputs"


def render_plan_shortfall(needed: int, available: int, within_reach: MarginInReach | None) -> str:
    """`plan`'s line when non-inferiority needs more items than the baseline holds."""
    return f"about {needed:,} items would settle it, but {render_small_data(available, within_reach)}"


def _change(check: GuardrailReason) -> str:
    delta = "" if check.mean_delta is None else f" {_points(check.mean_delta)} {_UNIT}"
    return f"{check.metric}{delta}{_test(check.test, check.p)}"


def render_guardrail(check: GuardrailReason) -> str:
    """An alarmed guardrail (Holm), as one of the gate's reasons."""
    effect = Verdict.FAIL if check.blocking else Verdict.WARN
    return f"{effect}: guardrail {check.name} worsened (Holm-adjusted p={check.adjusted_p:.3g}) {_change(check)}"


def render_slice_warning(check: GuardrailReason) -> str:
    """A worsened slice or category (Benjamini-Hochberg), as a warning.  The subset's name is
    followed by the metric's unless it already ends with it (`slice=english accuracy`)."""
    subject = check.name if check.name.endswith(check.metric) else f"{check.name} {check.metric}"
    return f"{subject} worsened (BH-adjusted p={check.adjusted_p:.3g}) {_change(check)}"


def render_primary(metrics: list[MetricReason], guardrails: list[GuardrailReason]) -> list[str]:
    """One line per primary metric and per alarmed guardrail."""
    reasons = [render_metric(reason) for reason in metrics]
    if not metrics:
        reasons.append(f"{Verdict.INCONCLUSIVE}: no primary metrics to gate on")
    return reasons + [render_guardrail(check) for check in guardrails if check.alarmed]


def render_reasons(record: GateRecord) -> list[str]:
    """One line per primary metric and per alarmed guardrail, e.g. `FAIL: accuracy (slice all)
    -22.5 pts, 95% CI [-38.2, -6.8], below the -2 pts margin (exact McNemar p=0.001)`."""
    return render_primary(record.metrics, record.guardrails)


def render_warnings(record: GateRecord) -> list[str]:
    """Worth a look, never a reason to block: worsened slices and drift alarms."""
    warnings = [render_slice_warning(check) for check in record.slice_warnings]
    for alarm in record.drift_alarms:
        p = "n/a" if alarm.adjusted_p is None else f"{alarm.adjusted_p:.3g}"
        warnings.append(f"drift alarm: {alarm.signal} changed ({alarm.test}, BH-adjusted p={p}; {alarm.effect_name} "
                        f"{alarm.effect:.3f} above the calibrated threshold {alarm.threshold:.3f})")
    return warnings
