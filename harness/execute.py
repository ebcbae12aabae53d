"""A run's life: pick (or resume) its folder, send what is unfinished, score, write the reports."""

from __future__ import annotations

import asyncio
import subprocess
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from rich.console import Console

from harness import __version__
from harness.engine.progress import RichProgress
from harness.engine.providers.base import ProviderError
from harness.engine.providers.registry import create_provider
from harness.engine.runner import Engine, TargetLane
from harness.engine.requests import WorkRequest
from harness.engine.stages import StageMonitor
from harness.engine.store import FAILED_RETRYABLE, FAILED_TERMINAL, PROCESSING, QUEUED, NewRequest, RunStore
from harness.errors import UserError
from harness.plan import RunPlan
from harness.runs.manifest import (
    DatasetRecord, Manifest, PromptRecord, TargetRecord, now_iso, read_manifest, write_manifest)
from harness.runs.locate import previous_runs, suite_runs_dir
from harness.runs.results import ResultLine, result_lines, write_results
from harness.scoring.apply import score_run


@dataclass(frozen=True)
class RunOptions:
    resume_id: str | None = None
    force_new: bool = False
    retry_failed: bool = False
    reports_dir: Path | None = None
    monitor: StageMonitor | None = None


@dataclass(frozen=True)
class RunOutcome:
    manifest: Manifest
    folder: Path
    lines: list[ResultLine]


class RunInterrupted(Exception):
    def __init__(self, run_id: str, folder: Path) -> None:
        super().__init__(run_id)
        self.run_id, self.folder = run_id, folder


def execute(plan: RunPlan, options: RunOptions, console: Console) -> RunOutcome:
    lanes = _open_lanes(plan)
    suite_dir = suite_runs_dir(plan.suite, options.reports_dir)
    folder, manifest = _open_run(plan, options, suite_dir, console)
    store = RunStore.in_folder(folder)
    try:
        return _run_in_store(plan, options, RunContext(folder, manifest, store, lanes), console)
    finally:
        store.close()


@dataclass(frozen=True)
class RunContext:
    folder: Path
    manifest: Manifest
    store: RunStore
    lanes: dict[str, TargetLane]


def _run_in_store(plan: RunPlan, options: RunOptions, run: RunContext, console: Console) -> RunOutcome:
    folder, manifest, store, lanes = run.folder, run.manifest, run.store, run.lanes
    store.set_meta("run_id", manifest.run_id)
    store.set_meta("work_fingerprint", plan.work_fingerprint)
    store.add_requests(NewRequest(r.request_id, r.item.id, r.target.label, r.sample_index, r.payload())
                       for r in plan.requests)
    store.requeue_unfinished()
    if options.retry_failed:
        store.requeue_failed()
    unfinished = store.unfinished_ids()
    stages = options.monitor.stages(plan.requests) if options.monitor else [plan.requests]
    todo = [[request for request in stage if request.request_id in unfinished] for stage in stages]
    started = time.perf_counter()
    manifest = manifest.model_copy(update={"status": "running", "ended_at": None, "looks": []})
    write_manifest(folder, manifest)
    looks: list[dict[str, Any]] = []

    def after_stage(look: int) -> bool:
        """Scores and writes what is done so far, then lets the monitor decide; True stops the run."""
        _write_results(plan, store, folder)
        decision = options.monitor.decide(look, folder)
        looks.append(decision.record)
        write_manifest(folder, manifest.model_copy(update={"looks": looks}))
        return decision.stop

    remaining = sum(len(stage) for stage in todo)
    try:
        with RichProgress(len(plan.requests), len(plan.requests) - remaining, console) as progress:
            engine = Engine(store, lanes, plan.suite.spec.engine, progress)
            asyncio.run(_drive(engine, todo, lanes, after_stage if options.monitor else None))
    except KeyboardInterrupt:
        store.requeue_unfinished()
        _finish(folder, manifest, "interrupted", started)
        raise RunInterrupted(manifest.run_id, folder) from None
    lines = _write_results(plan, store, folder)
    counts = store.state_counts()
    stopped = any(counts[state] for state in (QUEUED, PROCESSING, FAILED_RETRYABLE))
    status = "stopped_early" if stopped else "incomplete" if counts[FAILED_TERMINAL] else "complete"
    manifest = _finish(folder, manifest.model_copy(update={"looks": looks}), status, started)
    return RunOutcome(manifest, folder, lines)


def _write_results(plan: RunPlan, store: RunStore, folder: Path) -> list[ResultLine]:
    score_run(store, plan.scorers, plan.items_by_id)
    lines = result_lines(store, plan.items_by_id)
    write_results(folder, lines)
    return lines


async def _drive(engine: Engine, stages: list[list[WorkRequest]], lanes: dict[str, TargetLane],
                 after_stage: Callable[[int], bool] | None) -> None:
    try:
        for look, todo in enumerate(stages):
            if todo:
                await engine.run(todo)
            if after_stage is not None and after_stage(look):
                return
    finally:
        await asyncio.gather(*(lane.provider.close() for lane in lanes.values()), return_exceptions=True)


def _open_lanes(plan: RunPlan) -> dict[str, TargetLane]:
    """Providers are created before anything is sent: a missing API key stops the run here."""
    lanes = {}
    for target in plan.suite.spec.targets:
        try:
            provider = create_provider(target)
        except ProviderError as exc:
            raise UserError(str(exc), file=str(plan.suite.path), location=f"target {target.label!r}") from None
        limit = min(plan.suite.spec.engine.concurrency, getattr(provider, "max_concurrency", 1 << 30))
        lanes[target.label] = TargetLane(provider, asyncio.Semaphore(limit))
    return lanes


def _finish(folder: Path, manifest: Manifest, status: str, started: float) -> Manifest:
    manifest = manifest.model_copy(update={
        "status": status, "ended_at": now_iso(),
        "wall_time_s": round(manifest.wall_time_s + time.perf_counter() - started, 3)})
    write_manifest(folder, manifest)
    return manifest


def _open_run(plan: RunPlan, options: RunOptions, suite_dir: Path, console: Console) -> tuple[Path, Manifest]:
    if options.resume_id:
        folder = suite_dir / options.resume_id
        if not (folder / "manifest.json").is_file():
            raise UserError(f"no run {options.resume_id!r} for suite {plan.suite.spec.name!r}",
                            file=str(folder), hint=f"runs are listed under {suite_dir}")
        manifest = read_manifest(folder)
        if manifest.work_fingerprint != plan.work_fingerprint:
            raise UserError(f"run {options.resume_id} was started with different requests "
                            "(the suite, prompt, data or slices changed since)", file=str(plan.suite.path),
                            hint="run without --resume to start a new run")
        console.print(f"Resuming run {manifest.run_id}")
        return folder, manifest
    previous = previous_runs(suite_dir)
    _warn_on_relabelled_prompt(plan, previous, console)
    if not options.force_new:
        for folder, manifest in previous:
            if manifest.work_fingerprint == plan.work_fingerprint and manifest.status != "complete":
                console.print(f"Resuming unfinished run {manifest.run_id} (use --new to start over)")
                return folder, manifest
    return _new_run(plan, suite_dir)


def _warn_on_relabelled_prompt(plan: RunPlan, previous: list[tuple[Path, Manifest]], console: Console) -> None:
    for _, manifest in previous:
        old = manifest.prompt
        if (old.name, old.version) == (plan.prompt.name, plan.prompt.version) and old.fingerprint != plan.prompt.fingerprint:
            console.print(f"[yellow]warning:[/] prompt {plan.prompt.label} changed since run {manifest.run_id} "
                          f"(fingerprint {old.fingerprint[:12]} -> {plan.prompt.fingerprint[:12]}) but kept its "
                          "version label; give the new text a new version so results stay comparable")
            return


def _new_run(plan: RunPlan, suite_dir: Path) -> tuple[Path, Manifest]:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    run_id = f"{stamp}-{plan.work_fingerprint[:8]}"
    suite_dir.mkdir(parents=True, exist_ok=True)
    for n in range(2, 1000):  # two runs of the same work within a second
        if not (suite_dir / run_id).exists():
            break
        run_id = f"{stamp}-{plan.work_fingerprint[:8]}-{n}"
    folder = suite_dir / run_id
    folder.mkdir(exist_ok=False)
    spec = plan.suite.spec
    manifest = Manifest(
        run_id=run_id, suite=spec.name, suite_file=str(plan.suite.path), work_fingerprint=plan.work_fingerprint,
        prompt=PromptRecord(name=plan.prompt.name, version=plan.prompt.version, fingerprint=plan.prompt.fingerprint,
                            kind=plan.prompt.kind, file=str(plan.prompt.path)),
        targets=[TargetRecord(label=t.label, provider=t.provider, model=t.model, base_url=t.base_url,
                              params=t.params.model_dump()) for t in spec.targets],
        scorers=[s.model_dump() for s in spec.scorers],
        dataset=DatasetRecord(source=plan.dataset.source, fingerprint=plan.dataset.fingerprint,
                              slices=[s.model_dump() for s in spec.slices], evaluated=plan.evaluated,
                              slice_fingerprint=plan.slice_fingerprint, item_count=len(plan.items),
                              sample=plan.options.sample, limit=plan.options.limit),
        epochs=spec.epochs, request_count=len(plan.requests), harness_version=__version__,
        git_commit=_git_commit(plan.suite.project_dir), started_at=now_iso())
    write_manifest(folder, manifest)
    return folder, manifest


def _git_commit(folder: Path) -> str | None:
    try:
        result = subprocess.run(["git", "-C", str(folder), "rev-parse", "HEAD"], capture_output=True,
                                text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() or None if result.returncode == 0 else None
