"""Finds what a comparison needs: the candidate run, its suite's gate policy, the baseline."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from harness.compare.baseline import baseline_path, read_baseline
from harness.compare.snapshot import RunSnapshot, snapshot_run
from harness.config.loader import LoadedSuite, load_suite
from harness.config.suite import GateSpec
from harness.errors import UserError
from harness.runs.gate_record import BaselineRef, file_sha256
from harness.runs.locate import find_run, search_dirs
from harness.runs.manifest import read_manifest


@dataclass(frozen=True)
class ComparisonInputs:
    suite: LoadedSuite
    candidate_folder: Path
    candidate: RunSnapshot
    baseline: RunSnapshot
    baseline_label: str
    baseline_ref: BaselineRef

    @property
    def gate(self) -> GateSpec:
        return self.suite.spec.gate


@dataclass(frozen=True)
class SourceOptions:
    baseline: str | None = None
    reports_dir: Path | None = None
    target: str | None = None
    suite_path: Path | None = None


def load_inputs(candidate_run: str, options: SourceOptions) -> ComparisonInputs:
    given = load_suite(options.suite_path) if options.suite_path else None
    folder = find_run(candidate_run, search_dirs(options.reports_dir, given), given.spec.name if given else None)
    manifest = read_manifest(folder)
    suite_path = options.suite_path or _suite_file(Path(manifest.suite_file), folder)
    if not suite_path.is_file():
        raise UserError(f"the suite file of run {manifest.run_id} is gone", file=str(suite_path),
                        hint="pass --suite SUITE")
    suite = given or load_suite(suite_path)
    if suite.spec.name != manifest.suite:
        raise UserError(f"run {manifest.run_id} is of suite {manifest.suite!r}, not {suite.spec.name!r}",
                        file=str(suite_path))
    failed_as_zero = suite.spec.scoring.failed_as_zero
    # Only the fields a comparison reads are kept (the gate's category field): large runs stay small.
    keep = [suite.spec.gate.category_field] if suite.spec.gate.category_field else []
    candidate = snapshot_run(folder, options.target, failed_as_zero, keep_fields=keep)
    name = options.baseline or suite.spec.gate.baseline
    path = baseline_path(suite.project_dir, suite.spec.name, name)
    if path.is_file() or options.baseline is None:
        baseline, digest = read_baseline(path, keep_fields=keep)
        ref = BaselineRef(name=name, kind="baseline", run_id=baseline.snapshot.run_id, file=str(path), sha256=digest)
        return ComparisonInputs(suite, folder, candidate, baseline.snapshot,
                                f"{name} (run {baseline.snapshot.run_id}, {baseline.snapshot.fingerprints.prompt})", ref)
    # Not a baseline name: a run ID (or folder) to compare against directly.
    try:
        base_folder = find_run(name, search_dirs(options.reports_dir, suite), suite.spec.name)
    except UserError:
        known = sorted(p.stem for p in path.parent.glob("*.json")) if path.parent.is_dir() else []
        raise UserError(f"no baseline {name!r} of suite {suite.spec.name!r} and no run {name!r}", hint=f"baselines of this suite: {known}" if known else
                        "create one with: evalbatch baseline set SUITE --from RUN_ID") from None
    snapshot = snapshot_run(base_folder, options.target, failed_as_zero, keep_fields=keep)
    results = base_folder / "results.jsonl"
    ref = BaselineRef(name=None, kind="run", run_id=snapshot.run_id, file=str(results), sha256=file_sha256(results))
    return ComparisonInputs(suite, folder, candidate, snapshot, f"run {snapshot.run_id} ({snapshot.fingerprints.prompt})",
                            ref)


def _suite_file(recorded: Path, run_folder: Path) -> Path:
    """The suite the run was made from: the recorded path, or, when the project moved (another
    checkout, a CI workspace), the file at the same place in the project around the run folder."""
    if recorded.is_file():
        return recorded
    for ancestor in run_folder.parents:
        for moved in (ancestor / recorded.parent.name / recorded.name, ancestor / recorded.name):
            if moved.is_file():
                return moved
    return recorded
