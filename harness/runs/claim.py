"""Choosing a suite's run folder and claiming it: resume the run named or the unfinished run of
the same work, or create a new one, and hold it so no other process works on it meanwhile.

A damaged folder (unreadable manifest or store) is never silently skipped or reused when it may
hold this work's results: the user is told which file is damaged and how to go on.
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.text import Text

from harness import __version__
from harness.engine.states import RequestState
from harness.engine.store import RunStore
from harness.errors import UserError
from harness.plan import RunPlan
from harness.runs.commands import resume_command
from harness.runs.locate import DamagedRun, is_run_folder, scan_runs, suite_runs_dir
from harness.runs.lock import RunLock, suite_lock
from harness.runs.manifest import (
    DatasetRecord,
    GatePolicyRecord,
    Manifest,
    PromptRecord,
    RunOptionsRecord,
    TargetRecord,
    now_iso,
    read_manifest,
    write_manifest,
)

_START_OVER = "or start over with `--new` (a new run re-sends every request)"


@dataclass(frozen=True)
class RunChoice:
    resume_id: str | None = None
    force_new: bool = False
    reports_dir: Path | None = None
    full_promotion: bool = False


@dataclass
class ClaimedRun:
    """A run folder this process alone works on, until `release` (or the end of the `with`)."""

    folder: Path
    manifest: Manifest
    store: RunStore
    lock: RunLock
    resumed: bool

    def release(self) -> None:
        self.store.close()
        self.lock.release()

    def __enter__(self) -> ClaimedRun:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def claim_run(plan: RunPlan, choice: RunChoice, console: Console) -> ClaimedRun:
    suite_dir = suite_runs_dir(plan.suite, choice.reports_dir)
    # Held while choosing, so two processes started together agree on one run; the run lock
    # taken inside then refuses the second one.
    with suite_lock(suite_dir):
        found = (_named_run(plan, choice.resume_id, suite_dir) if choice.resume_id
                 else _unfinished_run(plan, suite_dir, choice, console))
        if found is None:
            return _create_run(plan, choice, suite_dir)
        return _open_existing(plan, choice, *found)


def _named_run(plan: RunPlan, run_id: str, suite_dir: Path) -> tuple[Path, Manifest]:
    folder = suite_dir / run_id
    if not is_run_folder(folder):
        raise UserError(f"no run {run_id!r} for suite {plan.suite.spec.name!r}", file=str(folder),
                        hint=f"runs are listed under {suite_dir}")
    try:
        manifest = read_manifest(folder)
    except (OSError, ValueError) as exc:
        raise UserError(f"the manifest of run {run_id} cannot be read ({_first_line(exc)})",
                        file=str(folder / "manifest.json"),
                        hint=f"restore manifest.json from a backup and rerun, {_START_OVER}") from None
    if manifest.work_fingerprint != plan.work_fingerprint:
        raise UserError(f"run {run_id} was started with different requests (other options, or the suite, "
                        "prompt, data or slices changed since)", file=str(plan.suite.path),
                        hint=f"to resume it with the options it was started with: "
                             f"{resume_command(str(plan.suite.path), manifest)}; to start anew, run without --resume")
    return folder, manifest


def _unfinished_run(plan: RunPlan, suite_dir: Path, choice: RunChoice,
                    console: Console) -> tuple[Path, Manifest] | None:
    runs, damaged = scan_runs(suite_dir)
    _warn_on_relabelled_prompt(plan, runs, console)
    if choice.force_new:
        return None
    for broken in damaged:
        _refuse_if_it_may_hold_this_work(plan, broken, console)
    for folder, manifest in runs:
        if manifest.work_fingerprint == plan.work_fingerprint and manifest.status != "complete":
            return folder, manifest
    return None


def _refuse_if_it_may_hold_this_work(plan: RunPlan, broken: DamagedRun, console: Console) -> None:
    """Skipping such a folder would re-send (and pay again for) what its store holds."""
    store_path = broken.folder / RunStore.FILENAME
    peeked = _peek_store(store_path) if store_path.is_file() else _Peek(None, 0, 0)
    if peeked is not None:
        if peeked.requests == 0 and not (broken.folder / "manifest.json").exists() and _remove_unstarted(broken.folder):
            console.print(Text.assemble(("warning:", "yellow"), f" removed run folder {broken.folder}: the run "
                                        "was stopped before it started (no manifest, no requests)"))
            return
        if (peeked.fingerprint != plan.work_fingerprint) if peeked.fingerprint else peeked.succeeded == 0:
            console.print(Text.assemble(("warning:", "yellow"), f" ignoring run folder {broken.folder}: "
                                        f"{broken.problem}"))
            return
    held = (f"holds {peeked.succeeded} succeeded request(s) of this work" if peeked is not None
            else "has a run store that cannot be read, so it may hold results of this work")
    raise UserError(f"run {broken.folder.name} {held}, but its {broken.problem}",
                    file=str(broken.folder / "manifest.json"),
                    hint=f"restore manifest.json from a backup and rerun to resume it, {_START_OVER}")


@dataclass(frozen=True)
class _Peek:
    fingerprint: str | None
    succeeded: int
    requests: int


def _peek_store(path: Path) -> _Peek | None:
    """The store's work fingerprint, succeeded and request counts, read-only; None if it cannot
    be read. A store a kill left before its tables were made (0 bytes, user_version 0, no meta
    table) holds nothing."""
    try:
        if path.stat().st_size == 0:
            return _Peek(None, 0, 0)
        store = RunStore.read_only(path)
        try:
            if store.db.execute("PRAGMA user_version").fetchone()[0] == 0 or not store.has_table("meta"):
                return _Peek(None, 0, 0)
            counts = store.state_counts()
            return _Peek(store.get_meta("work_fingerprint"), counts[RequestState.SUCCEEDED], sum(counts.values()))
        finally:
            store.close()
    except (OSError, UserError, sqlite3.DatabaseError):
        return None


def _remove_unstarted(folder: Path) -> bool:
    """Removes a folder whose run never started, unless a process holds its run lock."""
    try:
        lock = RunLock.acquire(folder, folder.name)
    except (OSError, UserError):
        return False
    try:
        shutil.rmtree(folder)
    except OSError:
        return False
    finally:
        lock.release()
    return True


def _open_existing(plan: RunPlan, choice: RunChoice, folder: Path, manifest: Manifest) -> ClaimedRun:
    lock = RunLock.acquire(folder, manifest.run_id)
    try:
        store = RunStore.existing(folder)
        _check_store_is_of_run(store, manifest, plan)
    except BaseException:
        lock.release()
        raise
    # The options that chose this work are recorded (older manifests lack them), but a run
    # stays a promotion's full run whichever command resumes it.
    options = _options_record(plan, choice).model_copy(
        update={"full_promotion": choice.full_promotion or manifest.options.full_promotion})
    return ClaimedRun(folder, manifest.model_copy(update={"options": options}), store, lock, resumed=True)


def _check_store_is_of_run(store: RunStore, manifest: Manifest, plan: RunPlan) -> None:
    stored = (store.get_meta("run_id"), store.get_meta("work_fingerprint"))
    if stored != (None, None) and stored != (manifest.run_id, plan.work_fingerprint):
        store.close()
        raise UserError(f"the run store belongs to another run ({stored[0]}), not to run {manifest.run_id}",
                        file=str(store.path), hint=f"put back this run's own run.sqlite, {_START_OVER}")


def _create_run(plan: RunPlan, choice: RunChoice, suite_dir: Path) -> ClaimedRun:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    run_id = f"{stamp}-{plan.work_fingerprint[:8]}"
    for n in range(2, 1000):  # two runs of the same work within a second
        if not (suite_dir / run_id).exists():
            break
        run_id = f"{stamp}-{plan.work_fingerprint[:8]}-{n}"
    folder = suite_dir / run_id
    folder.mkdir(exist_ok=False)
    lock = RunLock.acquire(folder, run_id)
    # The store exists before the manifest: a manifest without a store is then always a lost store.
    store = RunStore.in_folder(folder)
    manifest = _new_manifest(plan, choice, run_id)
    write_manifest(folder, manifest)
    return ClaimedRun(folder, manifest, store, lock, resumed=False)


def _options_record(plan: RunPlan, choice: RunChoice) -> RunOptionsRecord:
    options = plan.options
    return RunOptionsRecord(
        slices=list(options.slices), limit=options.limit, prompt_version=options.prompt_version,
        sample=options.sample, reports_dir=str(choice.reports_dir.resolve()) if choice.reports_dir else None,
        full_promotion=choice.full_promotion)


def _new_manifest(plan: RunPlan, choice: RunChoice, run_id: str) -> Manifest:
    spec = plan.suite.spec
    return Manifest(
        run_id=run_id, suite=spec.name, suite_file=str(plan.suite.path), work_fingerprint=plan.work_fingerprint,
        prompt=PromptRecord(name=plan.prompt.name, version=plan.prompt.version, fingerprint=plan.prompt.fingerprint,
                            kind=plan.prompt.kind, file=str(plan.prompt.path)),
        targets=[TargetRecord(label=t.label, provider=t.provider, model=t.model, base_url=t.base_url,
                              params=t.params.model_dump()) for t in spec.targets],
        scorers=[s.model_dump() for s in spec.scorers],
        dataset=DatasetRecord(source=plan.dataset.source, fingerprint=plan.dataset.fingerprint,
                              slices=[s.model_dump() for s in spec.slices], evaluated=plan.evaluated,
                              slice_fingerprint=plan.slice_fingerprint, item_count=plan.item_count,
                              population=plan.population, sample=plan.options.sample, limit=plan.options.limit),
        epochs=spec.epochs, request_count=plan.request_count, harness_version=__version__,
        git_commit=_git_commit(plan.suite.project_dir), started_at=now_iso(),
        options=_options_record(plan, choice),
        gate_policy=GatePolicyRecord(fingerprint=spec.gate.fingerprint, policy=spec.gate.model_dump(mode="json")))


def warn_on_relabelled_prompt(plan: RunPlan, previous: list[tuple[Path, Manifest]], console: Console) -> None:
    """Warns when the plan's prompt text differs from an earlier run's under the same version label."""
    _warn_on_relabelled_prompt(plan, previous, console)


def _warn_on_relabelled_prompt(plan: RunPlan, previous: list[tuple[Path, Manifest]], console: Console) -> None:
    for _, manifest in previous:
        old = manifest.prompt
        if (old.name, old.version) == (plan.prompt.name, plan.prompt.version) and old.fingerprint != plan.prompt.fingerprint:
            console.print(Text.assemble(
                ("warning:", "yellow"), f" prompt {plan.prompt.label} changed since run {manifest.run_id} "
                f"(fingerprint {old.fingerprint[:12]} -> {plan.prompt.fingerprint[:12]}) but kept its version "
                "label; give the new text a new version so results stay comparable"))
            return


def _git_commit(folder: Path) -> str | None:
    try:
        result = subprocess.run(["git", "-C", str(folder), "rev-parse", "HEAD"], capture_output=True,
                                text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() or None if result.returncode == 0 else None


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
