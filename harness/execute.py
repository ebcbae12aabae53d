"""A run's life: claim (or resume) its folder, send what is unfinished, score, write the reports."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, cast

from rich.console import Console

from harness.collector import collector_paused
from harness.config.suite import RateLimits
from harness.cost.pricing import price_for
from harness.engine.batch.in_run import BatchPart, check_batch_options, run_mode
from harness.engine.feed import RequestFeed, StoreFeed
from harness.engine.interrupts import Terminated, signals_cancel
from harness.engine.metrics import run_metrics
from harness.engine.progress import RichProgress
from harness.engine.providers.base import ProviderError
from harness.engine.providers.registry import create_provider
from harness.engine.requests import WorkRequest
from harness.engine.runner import Engine, Scorer, TargetLane
from harness.engine.stages import LookSchedule, StageMonitor
from harness.engine.states import UNFINISHED_STATES, RequestState
from harness.engine.store import NewRequest, RunStore, ScoreRow, StoredItem
from harness.errors import UserError
from harness.plan import RunPlan, batches
from harness.report.summary import LinesByItem
from harness.runs.claim import RunChoice, claim_run
from harness.runs.commands import worth_retrying
from harness.runs.manifest import Manifest, now_iso, write_manifest
from harness.runs.results import ResultLine, iter_summary_lines, read_run_lines, summary_lines
from harness.runs.results_writer import write_store_results
from harness.scoring.apply import score_run


@dataclass(frozen=True)
class RunOptions:
    resume_id: str | None = None
    force_new: bool = False
    retry_failed: bool = False
    reports_dir: Path | None = None
    monitor: StageMonitor | None = None
    full_promotion: bool = False
    limits: RateLimits | None = None
    """--rpm/--tpm: rate limits for every target, over the suite's."""
    mode: str | None = None
    """--mode realtime|batch for every target (None: the run's recorded --mode, else each target's own)."""
    collect_only: bool = False
    """`evalbatch collect`: re-attach to the run's provider batches; submit and send nothing new."""
    wait: bool = True
    """Wait for live provider batches to end (False: collect only those that have ended)."""
    retry_worthwhile: bool = False
    """Give the terminal failures another round that a retry may fix (not those rejected for their
    content): what a re-triggered CI job does."""


@dataclass(frozen=True)
class RunOutcome:
    manifest: Manifest
    folder: Path

    @cached_property
    def lines(self) -> list[ResultLine]:
        """The run's result lines, read from its store when first asked for (after the run, whose
        own work streamed them), not held while the run works. Whole lines only for a promotion's
        full run, which writes them to validated.jsonl and needs_review.jsonl; otherwise the
        summary's lines (SummaryLine: no item, prompt, output or score details; nothing printed
        reads them)."""
        if self.manifest.options.full_promotion:
            return read_run_lines(self.folder)
        # SummaryLine has every attribute the summary and print_what_is_left read.
        return cast(list[ResultLine], summary_lines(self.folder))

    def summary_source(self) -> list[ResultLine] | LinesByItem:
        """What the end-of-run summary sums: the lines already read, else the store's lines read
        as they are summed, a (target, item) at a time, so a large run's lines are never all held."""
        if "lines" in self.__dict__ or self.manifest.options.full_promotion:
            return self.lines
        return LinesByItem(cast(Iterator[ResultLine], iter_summary_lines(self.folder, by_item=True)))


class RunInterrupted(Exception):
    """Ctrl-C or SIGTERM: everything finished is stored, results.jsonl written, the run resumable."""

    def __init__(self, manifest: Manifest, folder: Path) -> None:
        super().__init__(manifest.run_id)
        self.manifest, self.run_id, self.folder = manifest, manifest.run_id, folder


def execute(plan: RunPlan, options: RunOptions, console: Console) -> RunOutcome:
    # Opening the providers imports their SDKs: some 10^5 objects, all of which live on.
    with collector_paused():
        lanes = _open_lanes(plan, options.limits)
        # What is alive now (modules, the providers' SDKs and their types, the plan) lives as long
        # as the run: the collector need not walk it again while requests are in flight.
        gc.freeze()
    try:
        check_batch_options(plan, options)  # before a run folder exists
        choice = RunChoice(options.resume_id, options.force_new, options.reports_dir, options.full_promotion)
        with claim_run(plan, choice, console) as claimed:
            if claimed.resumed:
                console.print(f"Resuming {'run' if options.resume_id else 'unfinished run'} {claimed.manifest.run_id}"
                              + ("" if options.resume_id else " (use --new to start over)"))
            return _run_in_store(plan, options, RunContext(claimed.folder, claimed.manifest, claimed.store, lanes),
                                 console)
    finally:
        gc.unfreeze()  # a process that goes on (tests, a promotion's full run) collects it as before


@dataclass(frozen=True)
class RunContext:
    folder: Path
    manifest: Manifest
    store: RunStore
    lanes: dict[str, TargetLane]


def _run_in_store(plan: RunPlan, options: RunOptions, run: RunContext, console: Console) -> RunOutcome:
    folder, store = run.folder, run.store
    stopped_at = _stopped_look(run.manifest)
    if stopped_at is not None:
        return _stays_stopped(plan, run, stopped_at, console)
    session = _begin_session(store, run.manifest)
    store.set_meta("lanes_stopped", {})  # a new session tries every target again
    if run.manifest.status == "cancelled" and store.cancel_requested():
        # Resuming is how a cancelled run goes on; a request made after this is honoured again.
        store.clear_cancel()
        console.print(f"Run {run.manifest.run_id} was cancelled; the cancel request is cleared and the run continues")
    _store_plan(plan, store, run.manifest.run_id)
    # A run with no success before this session has every success scored as it arrived, by
    # these scorers: the end-of-run pass then scores only what was not (batch results, a scorer
    # that failed in flight). Otherwise earlier sessions' scorers may differ: all are rescored.
    rescore_all = store.state_counts()[RequestState.SUCCEEDED] > 0
    store.requeue_unfinished()  # what a killed process had in flight is sent again
    if options.retry_failed:
        store.requeue_failed()
    elif options.retry_worthwhile:
        store.requeue_failed(only=worth_retrying(store.terminal_failures(), plan.suite.spec.engine.max_retries))
    staged = _staged_work(plan, options.monitor, run.manifest)
    mode = run_mode(store, options.mode)
    batch = BatchPart.of_run(plan, run, options, mode, console.print)
    targets = plan.suite.spec.targets
    realtime = [] if options.collect_only else targets if batch is None else batch.realtime_targets(targets)
    limits = options.limits or RateLimits()
    manifest = run.manifest.model_copy(update={"status": "running", "ended_at": None, "looks": staged.looks,
                                               "options": run.manifest.options.model_copy(
                                                   update={"rpm": limits.rpm, "tpm": limits.tpm,
                                                           "mode": mode}),
                                               "look_schedule": staged.schedule})
    write_manifest(folder, manifest)
    looks = list(staged.looks)
    if staged.looks and staged.schedule is not None:
        decided = "look 1" if len(staged.looks) == 1 else f"looks 1-{len(staged.looks)}"
        console.print(f"Continuing the sequential sample at look {len(staged.looks) + 1}/{staged.schedule.looks} "
                      f"({decided} decided before, kept as decided)")

    def after_stage(position: int) -> bool:
        """Scores and writes what is done so far, then lets the monitor decide; True stops the run."""
        look = staged.stage_looks[position]
        if look is None or store.cancel_requested():  # a cancelled stage is partial: no look judges it
            return False
        assert options.monitor is not None and staged.schedule is not None  # looks exist only with a monitor
        _write_results(plan, store, folder, rescore_all)
        decision = options.monitor.decide(look, folder, staged.schedule)
        looks.append(decision.record)
        write_manifest(folder, manifest.model_copy(update={"looks": looks}))
        return decision.stop

    # The realtime engine's share, read from the store stage by stage (requests in a live batch excluded).
    feeds: list[RequestFeed] = [StoreFeed(store, realtime, wanted) for wanted in staged.stages]
    remaining = sum(feeds[0].pending(target.label) for target in realtime)
    total = plan.request_count if batch is None else batch.realtime_total(plan)
    try:
        if batch is not None:
            batch.submit()
        with RichProgress(total, total - remaining, console) as progress:
            engine = Engine(store, run.lanes, plan.suite.spec.engine, progress, _scorer(plan),
                            shared_payloads=plan.tally.shared_payloads)
            stopped = asyncio.run(_drive(engine, feeds, run.lanes, after_stage if options.monitor else None))
        if batch is not None:
            batch.collect()
    except (KeyboardInterrupt, Terminated) as stop:
        try:
            store.requeue_unfinished()
            _write_results(plan, store, folder, rescore_all)
            manifest = _finish(folder, manifest.model_copy(update={"looks": looks}), "interrupted", store, session)
        finally:
            if isinstance(stop, Terminated):
                stop.restore_signals()
        raise RunInterrupted(manifest, folder) from None
    for label, reason in engine.stopped_lanes().items():
        console.print(f"Target {label} was stopped early: {reason}. Its unsent requests stay queued: fix the "
                      f"endpoint, key, quota or model and run the same command again to resume (with "
                      f"--retry-failed for the requests that already failed).", soft_wrap=True)
    _write_results(plan, store, folder, rescore_all)
    manifest = _finish(folder, manifest.model_copy(update={"looks": looks}), _status(store, stopped), store, session)
    return RunOutcome(manifest, folder)


@dataclass(frozen=True)
class StagedWork:
    """What is left to send, stage by stage, and the look (0-based) after each stage (None: none).
    A stage is a filter on the store's unfinished requests (by item), not a list of them."""

    stages: list[Callable[[str], bool] | None]
    """Per stage, which items' requests it sends (None: every unfinished request)."""
    stage_looks: list[int | None]
    looks: list[dict[str, Any]]
    """Looks decided by earlier processes, kept as they were."""
    schedule: LookSchedule | None


def _staged_work(plan: RunPlan, monitor: StageMonitor | None, manifest: Manifest) -> StagedWork:
    """The run's stages as planned when it started: a resumed run continues from its next undecided
    look, and what earlier stages left unfinished is sent before that look."""
    if monitor is None:  # a sample started sequential keeps the looks it had decided
        return StagedWork([None], [None], list(manifest.looks) if manifest.look_schedule else [],
                          manifest.look_schedule)
    # Runs from before schedules were stored re-plan from their first look, as they always did.
    schedule, kept = ((manifest.look_schedule, list(manifest.looks)) if manifest.look_schedule is not None
                      else (monitor.schedule([item.id for item in plan.items()]), []))
    stage_of = schedule.stage_of()
    missing = sorted({item.id for item in plan.items()} - stage_of.keys())
    if missing:
        raise UserError(f"run {manifest.run_id}'s sequential schedule does not hold item(s) {missing[:5]}",
                        file=str(plan.suite.path), hint="start a new sample with --new")
    next_look = len(kept)
    if next_look >= schedule.looks:  # every look decided: only retries are left, and no look after them
        return StagedWork([None], [None], kept, schedule)

    def in_stage(stage: int) -> Callable[[str], bool]:
        # What an earlier stage left unfinished goes with the next undecided look.
        return lambda item_id: max(stage_of[item_id], next_look) == stage

    stages = list(range(next_look, schedule.looks))
    return StagedWork([in_stage(stage) for stage in stages], list(stages), kept, schedule)


def _stopped_look(manifest: Manifest) -> dict[str, Any] | None:
    """The look that stopped the sample early, if one did (also when the process died before it
    could mark the run stopped_early)."""
    stopping = [look for look in manifest.looks if look.get("stop")]
    if stopping:
        return stopping[0]
    if manifest.status == "stopped_early":
        return manifest.looks[-1] if manifest.looks else {"look": "?", "of": "?", "decision": "stopped"}
    return None


def _stays_stopped(plan: RunPlan, run: RunContext, look: dict[str, Any], console: Console) -> RunOutcome:
    """A sample the sequential design stopped stays stopped: resuming it sends nothing."""
    console.print(f"Run {run.manifest.run_id} is a sequential sample that stopped early at look {look['look']}/"
                  f"{look['of']} ({look['decision']}); nothing is sent (use --new to draw a new sample)")
    manifest = run.manifest
    if manifest.status != "stopped_early":
        manifest = manifest.model_copy(update={"status": "stopped_early", "ended_at": manifest.ended_at or now_iso()})
        write_manifest(run.folder, manifest)
    return RunOutcome(manifest, run.folder)


def _status(store: RunStore, stopped_by_monitor: bool) -> str:
    """Only a monitor's decision makes a run stopped_early and only a cancel request makes it
    cancelled; requests left for any other reason make it incomplete (resumable), like terminal
    failures."""
    if stopped_by_monitor:
        return "stopped_early"
    counts = store.state_counts()
    unfinished = any(counts[state] for state in UNFINISHED_STATES)
    if unfinished and store.cancel_requested():
        return "cancelled"  # the engine stopped sending for `evalbatch cancel`; resuming goes on
    if unfinished or counts[RequestState.FAILED_TERMINAL]:
        return "incomplete"
    return "complete"


def _store_plan(plan: RunPlan, store: RunStore, run_id: str) -> None:
    """The requests and their items, so the store alone can rebuild every result line; rendered
    and stored in batches (each its own transaction), so only a batch is ever in memory. A
    process killed between batches stored part of them; the next one adds the rest (inserts
    ignore what is there)."""
    store.set_meta("run_id", run_id)
    store.set_meta("work_fingerprint", plan.work_fingerprint)
    for items in batches(plan.items(), _STORE_BATCH):
        store.add_requests((), (StoredItem(i.id, i.location, tuple(i.slices), i.cluster, i.fields) for i in items))
    for requests in batches(plan.requests(), _STORE_BATCH):
        store.add_requests(NewRequest(r.request_id, r.item.id, r.target.label, r.sample_index, r.payload())
                           for r in requests)
    plan.dataset.check_unchanged()


_STORE_BATCH = 2000


def _scorer(plan: RunPlan) -> Scorer:
    def score(request: WorkRequest, output: str) -> list[ScoreRow]:
        rows = []
        for scorer in plan.scorers:
            result = scorer.score(output, request.item.fields)
            rows.append((request.request_id, scorer.name, result.value, result.passed, result.detail))
        return rows

    return score


def _write_results(plan: RunPlan, store: RunStore, folder: Path, rescore_all: bool = True) -> None:
    """Scores and results.jsonl, both streamed through the store in batches."""
    score_run(store, plan.scorers, only_unscored=not rescore_all)
    write_store_results(folder, store)


async def _drive(engine: Engine, stages: list[RequestFeed], lanes: dict[str, TargetLane],
                 after_stage: Callable[[int], bool] | None) -> bool:
    """Runs the stages in order; True when the monitor stopped the run early."""
    try:
        with signals_cancel(asyncio.current_task()) as stop:
            try:
                for look, feed in enumerate(stages):
                    await engine.run(feed)
                    if after_stage is not None and after_stage(look):
                        return True
                return False
            except asyncio.CancelledError:
                if stop.received:
                    raise Terminated(stop.previous) from None
                raise
    finally:
        engine.close()
        await asyncio.gather(*(lane.provider.close() for lane in lanes.values()), return_exceptions=True)


def _open_lanes(plan: RunPlan, limits: RateLimits | None) -> dict[str, TargetLane]:
    """Providers are created before anything is sent: a missing API key stops the run here."""
    lanes = {}
    for target in plan.suite.spec.targets:
        if limits is not None:
            target = target.model_copy(update={"limits": limits.merged_over(target.limits or RateLimits())})
        try:
            provider = create_provider(target)
        except ProviderError as exc:
            raise UserError(str(exc), file=str(plan.suite.path), location=f"target {target.label!r}") from None
        limit = min(plan.suite.spec.engine.concurrency, getattr(provider, "max_concurrency", 1 << 30))
        lanes[target.label] = TargetLane.open(provider, target, plan.suite.spec.engine, price_for(target), limit)
    return lanes


def _begin_session(store: RunStore, manifest: Manifest) -> int:
    # Runs from before sessions were recorded keep the time their manifest had counted.
    if store.get_meta("wall_time_before_sessions") is None:
        store.set_meta("wall_time_before_sessions", manifest.wall_time_s)
    return store.begin_session()


def _finish(folder: Path, manifest: Manifest, status: str, store: RunStore, session: int) -> Manifest:
    store.end_session(session)
    if store.cancel_requested():
        if status == "interrupted":
            status = "cancelled"  # stopped by hand while cancelling: resuming it clears the request
        elif status != "cancelled":
            store.clear_cancel()  # it came when nothing was left to stop: it must not stop the next session
    wall_time = store.get_meta("wall_time_before_sessions", 0.0) + store.active_time_s()
    manifest = manifest.model_copy(update={"status": status, "ended_at": now_iso(), "wall_time_s": round(wall_time, 3),
                                           "metrics": run_metrics(store)})
    write_manifest(folder, manifest)
    return manifest
