"""Job control: `evalbatch status`, `cancel` and `retry --failed` on a run found by ID or folder.

`status` only reads (a read-only store, one read transaction, the run lock looked at but never
taken), so it can watch a run another process is sending. `cancel` sets the store's cancel flag,
which the running engine polls: it stops sending, lets its in-flight requests finish and exits
with the run `cancelled` and resumable. `retry --failed` sends a run's failed_terminal requests
again in a new retry round, with the prompt version frozen in its manifest.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import click

from harness.commands.batch_status import batch_lines, batch_rows, cancel_provider_batches
from harness.commands.collect import mode_option
from harness.commands.common import console, exit_interrupted, reports_user_errors, stop_on_sigterm
from harness.cost.money import format_usd
from harness.engine.metrics import RunMetrics, run_metrics
from harness.engine.states import UNFINISHED_STATES, RequestState
from harness.engine.store import RunStore
from harness.errors import UserError
from harness.runs.lock import RUN_LOCK, RunLock
from harness.runs.manifest import Manifest, read_manifest, write_manifest

RATE_WINDOW_S = 60.0
"""The completion rate (and so the ETA) follows the last minute, not the whole run."""

_FINISHED = ("complete", "stopped_early")


def _locate(run: str, suite: Path | None, reports_dir: Path | None) -> tuple[Path, Manifest]:
    from harness.config.loader import load_suite
    from harness.runs.locate import find_run, search_dirs

    given = load_suite(suite) if suite else None
    folder = find_run(run, search_dirs(reports_dir, given), given.spec.name if given else None)
    try:
        return folder, read_manifest(folder)
    except (OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"the run's manifest cannot be read ({first})", file=str(folder / "manifest.json"),
                        hint="restore manifest.json from a backup") from None


def _suite_file(manifest: Manifest, folder: Path, given: Path | None) -> str:
    """The suite the run was made from: the one given, the recorded path, or, when the project
    moved (another checkout, a CI workspace), the file at the same place around the run folder."""
    recorded = Path(manifest.suite_file)
    if given is not None or recorded.is_file():
        return str(given or recorded)
    for ancestor in folder.parents:
        for moved in (ancestor / recorded.parent.name / recorded.name, ancestor / recorded.name):
            if moved.is_file():
                return str(moved)
    return str(recorded)


# -- who is running a run ------------------------------------------------------------------
def lock_holder(folder: Path) -> str | None:
    """Who holds the run's run.lock (its PID, host and start time), or None when no process does.
    Read from /proc/locks, so a watcher never holds the lock itself, even for an instant (a run
    starting at that instant would be refused); elsewhere a non-blocking shared lock is tried."""
    path = folder / RUN_LOCK
    # The folder's lock too: it holds while run.lock is deleted by hand (harness.runs.lock).
    if not any(held.exists() and _flock_held(held) for held in (path, folder)):
        return None
    try:
        holder = json.loads(path.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        holder = {}
    if not isinstance(holder, dict) or "pid" not in holder:
        return "another process"
    return f"process {holder['pid']} on {holder.get('host', '?')} (since {holder.get('started_at', '?')})"


def _flock_held(path: Path) -> bool:
    try:
        stat = path.stat()
    except FileNotFoundError:  # deleted meanwhile (run.lock by hand)
        return False
    wanted = f"{os.major(stat.st_dev):02x}:{os.minor(stat.st_dev):02x}:{stat.st_ino}"
    try:
        table = Path("/proc/locks").read_text(encoding="utf-8")
    except OSError:
        return _probe(path)
    # "1: FLOCK  ADVISORY  WRITE 9760 fe:00:2179653 0 EOF"; waiters ("->") hold nothing.
    return any(fields[1:2] == ["FLOCK"] and fields[5:6] == [wanted]
               for fields in (line.split() for line in table.splitlines()) if "->" not in fields)


def _probe(path: Path) -> bool:
    fd = os.open(path, os.O_RDONLY)  # a file or the run folder
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


# -- status --------------------------------------------------------------------------------
@dataclass(frozen=True)
class JobStatus:
    run_id: str
    suite: str
    folder: str
    status: str
    """The manifest's status (a run whose process was killed still says running)."""
    running: str | None
    """The process holding the run lock, None when none is working on the run."""
    requests: int
    states: dict[str, int]
    remaining: int
    rate_per_s: float | None
    """Requests that succeeded per second over the last minute (or since the process started)."""
    eta_s: float | None
    spend_usd: float | None
    cancel_requested: bool
    stopped_lanes: dict[str, str]
    """Targets the circuit breaker stopped in the latest session, and why."""
    metrics: RunMetrics
    batches: list[dict[str, Any]] = field(default_factory=list)
    """The run's provider batches (batch mode), oldest first: see harness/commands/batch_status.py."""

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["metrics"] = self.metrics.model_dump()
        return data


def job_status(folder: Path, manifest: Manifest, now: float | None = None) -> JobStatus:
    now = time.time() if now is None else now
    running = lock_holder(folder)
    store = RunStore.read_only(folder / RunStore.FILENAME)
    try:
        with store.reading():
            if store.has_table("requests"):
                states = {state.value: count for state, count in store.state_counts().items()}
                rate = _recent_rate(store, now) if running else None
            elif manifest.status == "running":  # a store a kill left before its tables existed
                states, rate = {state.value: 0 for state in RequestState}, None
            else:
                raise UserError("the run store is empty or was overwritten (it has no run tables)",
                                file=str(folder / RunStore.FILENAME), hint="restore run.sqlite from a backup, "
                                "or start over with `evalbatch run SUITE --new` (a new run re-sends every request)")
            cancel = store.has_table("meta") and store.cancel_requested()
            stopped = (store.get_meta("lanes_stopped", {}) if store.has_table("meta") else {}) or {}
            metrics = run_metrics(store)
            batches = batch_rows(store, now)
    finally:
        store.close()
    remaining = sum(states[state.value] for state in UNFINISHED_STATES)
    eta = 0.0 if remaining == 0 else (remaining / rate if rate else None)
    return JobStatus(manifest.run_id, manifest.suite, str(folder), manifest.status, running, sum(states.values()),
                     states, remaining, rate, eta, metrics.cost_usd, cancel, dict(stopped), metrics, batches)


def _recent_rate(store: RunStore, now: float) -> float | None:
    """Succeeded requests per second over the window, measured from when the current process
    began if that is later (a rate over 60 s of a run 10 s old would be 6 times too low)."""
    since = now - RATE_WINDOW_S
    if store.has_table("sessions"):
        began = store.db.execute("SELECT MAX(started_at) FROM sessions WHERE ended_at IS NULL").fetchone()[0]
        since = max(since, began or since)
    if now - since <= 0:
        return None
    done = store.db.execute("SELECT COUNT(*) FROM requests WHERE state = ? AND updated_at >= ?",
                            (RequestState.SUCCEEDED, since)).fetchone()[0]
    return done / (now - since)


def status_lines(job: JobStatus, suite_arg: str, manifest: Manifest) -> list[str]:
    from harness.report.run_view import run_metrics_lines
    from harness.runs.commands import resume_command

    if job.running:
        state = f"running: {job.running}" + ("; cancel requested, stopping" if job.cancel_requested else "")
    elif job.status == "running":
        state = "not running: its process stopped without finishing (killed?)"
    else:
        state = job.status
    lines = [f"run {job.run_id} ({job.suite}): {state}",
             f"requests {job.requests:,}: " + ", ".join(f"{name} {count:,}" for name, count in job.states.items())]
    if job.running:
        rate = "no request succeeded in the last minute" if not job.rate_per_s else \
            f"{job.rate_per_s:,.1f} req/s over the last minute"
        eta = "ETA unknown" if job.eta_s is None else f"ETA {_clock(job.eta_s)}"
        lines.append(f"{rate}; {eta} for {job.remaining:,} remaining")
    elif job.remaining and job.status not in _FINISHED:
        lines.append(f"{job.remaining:,} request(s) not finished. Resume with: {resume_command(suite_arg, manifest)}")
    lines += [f"target {label} stopped: {reason}" for label, reason in job.stopped_lanes.items()]
    lines.append("spend so far: " + ("unknown (no prices)" if job.spend_usd is None else format_usd(job.spend_usd))
                 + (" (requests sent in provider batches at the batch price)" if job.batches else ""))
    lines += batch_lines(job.batches)
    return lines + run_metrics_lines(job.metrics)


def _clock(seconds: float) -> str:
    whole = int(round(seconds))
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


_RUN_ARGUMENT = click.argument("run", metavar="RUN")
_SUITE_OPTION = click.option("--suite", "suite", type=click.Path(dir_okay=False, path_type=Path),
                             help="The suite (default: the one the run was made from; needed to find a run ID "
                                  "from outside its project).")
_REPORTS_OPTION = click.option("--reports-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
                               help="Where runs are found (default: the suite's output.dir or <project>/reports, "
                                    "found from the current directory; RUN can also be a run folder's path).")


@click.command("status")
@_RUN_ARGUMENT
@_SUITE_OPTION
@_REPORTS_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print JSON for machines.")
@reports_user_errors
def status(run: str, suite: Path | None, reports_dir: Path | None, as_json: bool) -> None:
    """Show RUN (an ID or a run folder): requests by state, whether a process is running it now,
    the completion rate over the last minute and the ETA, spend so far and the run's metrics.
    Safe while another process runs it: reads only, and never takes its lock."""
    folder, manifest = _locate(run, suite, reports_dir)
    job = job_status(folder, manifest)
    if as_json:
        click.echo(json.dumps(job.as_json(), indent=2))
        return
    out = console()
    for line in status_lines(job, _suite_file(manifest, folder, suite), manifest):
        out.print(line, soft_wrap=True)


# -- cancel --------------------------------------------------------------------------------
@click.command("cancel")
@_RUN_ARGUMENT
@_SUITE_OPTION
@_REPORTS_OPTION
@reports_user_errors
def cancel(run: str, suite: Path | None, reports_dir: Path | None) -> None:
    """Cancel RUN: a process running it stops sending, lets its in-flight requests finish and
    exits, leaving the run `cancelled`; an idle run is marked `cancelled` at once. Either way
    `evalbatch run ... --resume RUN_ID` goes on with it."""
    from harness.runs.commands import resume_command

    folder, manifest = _locate(run, suite, reports_dir)
    resume = resume_command(_suite_file(manifest, folder, suite), manifest)
    cancelled = cancel_provider_batches(folder, manifest)
    for line in cancelled:
        click.echo(line)
    if cancelled and lock_holder(folder) is None:  # no process watches them: collect what ended now
        from harness.commands.collect import collect_run

        collect_run(folder, manifest, _suite_file(manifest, folder, suite), wait=False)
        manifest = read_manifest(folder)
    if manifest.status in _FINISHED and lock_holder(folder) is None:
        click.echo(f"run {manifest.run_id} is {manifest.status.replace('_', ' ')}; nothing to cancel")
        return
    store = RunStore.existing(folder)
    try:
        store.request_cancel()
    finally:
        store.close()
    holder = lock_holder(folder)
    if holder is None:
        holder = _mark_cancelled(folder, manifest)
    if holder is _NOTHING_LEFT:
        click.echo(f"run {manifest.run_id} has nothing left to send; nothing to cancel")
    elif holder is not None:
        click.echo(f"cancel requested: {holder} stops sending now and exits after its in-flight requests finish; "
                   f"run {manifest.run_id} stays resumable (status cancelled). Resume with: {resume}")
    else:
        click.echo(f"run {manifest.run_id} cancelled (no process was running it). Resume with: {resume}")


_NOTHING_LEFT = "nothing left to send"


def _mark_cancelled(folder: Path, manifest: Manifest) -> str | None:
    """Marks an idle run cancelled under its run lock, so a process starting meanwhile cannot have
    its manifest overwritten; returns that process instead when it got the lock first, and
    _NOTHING_LEFT when the run has nothing left to send."""
    try:
        lock = RunLock.acquire(folder, manifest.run_id)
    except UserError:
        return lock_holder(folder) or "the process that just started it"
    with lock:
        current = read_manifest(folder)
        if current.status in ("complete", "stopped_early") or not _has_unfinished(folder):
            # It finished between our first look and the lock, or only terminal failures are
            # left (nothing to stop): cancelling it would only keep it from being promoted.
            with _store(folder) as store:
                store.clear_cancel()
            return _NOTHING_LEFT
        if current.status != "cancelled":
            write_manifest(folder, current.model_copy(update={"status": "cancelled"}))
    return None


@contextmanager
def _store(folder: Path) -> Iterator[RunStore]:
    store = RunStore.existing(folder)
    try:
        yield store
    finally:
        store.close()


def _has_unfinished(folder: Path) -> bool:
    with _store(folder) as store:
        return any(store.state_counts()[state] for state in UNFINISHED_STATES)


# -- retry --failed ------------------------------------------------------------------------
@click.command("retry")
@_RUN_ARGUMENT
@click.option("--failed", is_flag=True, help="Send the run's failed_terminal requests again, in a new retry round "
              "with a fresh retry budget, with the prompt version frozen in the run.")
@_SUITE_OPTION
@_REPORTS_OPTION
@mode_option
@reports_user_errors
def retry(run: str, failed: bool, suite: Path | None, reports_dir: Path | None, mode: str | None = None) -> None:
    """Send RUN's failed requests again (--failed): every earlier attempt is kept, succeeded
    requests are never sent again, and the prompt is the version the run was made with, whatever
    the suite names now. Requests the run had not finished (interrupted, cancelled) are sent too.
    In batch mode the failed ones (and lines a batch left expired or cancelled) go into a new
    provider batch; --mode realtime sends them realtime instead. Exit codes as for `run`."""
    from harness.config.suite import RateLimits
    from harness.execute import RunInterrupted, RunOptions, execute
    from harness.report.run_view import print_outcome

    if not failed:
        raise click.UsageError("say what to retry: --failed (the run's failed_terminal requests)")
    folder, manifest = _locate(run, suite, reports_dir)
    suite_arg = _suite_file(manifest, folder, suite)
    plan = _frozen_plan(suite_arg, folder, manifest)
    failures, unfinished = _left_to_send(folder)
    out = console()
    if not failures:
        out.print(f"run {manifest.run_id} has no failed requests; nothing to retry"
                  + (f" ({unfinished} not finished: resume it with `evalbatch run ... --resume {manifest.run_id}`)"
                     if unfinished else ""), soft_wrap=True)
        return
    out.print(f"Retrying {failures} failed request(s) of run {manifest.run_id} with prompt {plan.prompt.label} "
              f"(frozen in the run)" + (f" and sending its {unfinished} unfinished request(s)" if unfinished else ""),
              soft_wrap=True)
    stop_on_sigterm()  # a cancelled CI job stops as cleanly as Ctrl-C
    recorded = manifest.options  # the rate limits the run was sent under hold for its retries too
    limits = RateLimits(rpm=recorded.rpm, tpm=recorded.tpm) if recorded.rpm or recorded.tpm else None
    options = RunOptions(resume_id=manifest.run_id, retry_failed=True, reports_dir=_reports_dir_of(folder, plan),
                         monitor=_monitor(plan, manifest), limits=limits, mode=mode)
    try:
        outcome = execute(plan, options, out)
    except RunInterrupted as stop:
        exit_interrupted(suite_arg, stop)
    print_outcome(out, suite_arg, plan, outcome)
    if outcome.manifest.status not in _FINISHED:
        sys.exit(1)


def _frozen_plan(suite_arg: str, folder: Path, manifest: Manifest):
    """The run's own work: its options, and its prompt version (not the one the suite names now)."""
    from harness.plan import PlanOptions, plan_run

    options = manifest.options
    plan = plan_run(suite_arg, PlanOptions(slices=tuple(options.slices), limit=options.limit,
                                           prompt_version=manifest.prompt.version, sample=options.sample))
    if plan.suite.spec.name != manifest.suite:
        raise UserError(f"run {manifest.run_id} is of suite {manifest.suite!r}, not {plan.suite.spec.name!r}",
                        file=suite_arg)
    if plan.prompt.fingerprint != manifest.prompt.fingerprint:
        raise UserError(f"prompt {plan.prompt.label} changed since run {manifest.run_id} was made (fingerprint "
                        f"{manifest.prompt.fingerprint[:12]} -> {plan.prompt.fingerprint[:12]}); retrying would mix "
                        "two prompt texts in one run", file=str(plan.prompt.path),
                        hint="restore the prompt's text, or give the new text a new version and start a new run")
    if folder.parent.name != manifest.suite:
        raise UserError(f"run folder {folder} is not under a folder named after its suite ({manifest.suite})",
                        file=str(folder))
    return plan


def _reports_dir_of(folder: Path, plan) -> Path | None:
    """Where the run was found, for the claim to find it again (None: the suite's default place)."""
    from harness.runs.locate import reports_dir

    found = folder.parent.parent.resolve()
    return None if found == reports_dir(plan.suite).resolve() else found


def _monitor(plan, manifest: Manifest):
    """A sequential sample goes on being watched, as `run --sample` does."""
    if manifest.options.sample is None:
        return None
    from harness.compare.sequential import sequential_monitor

    return sequential_monitor(plan)


def _left_to_send(folder: Path) -> tuple[int, int]:
    """Failed requests (terminal, and retryable ones a provider batch left: expired, cancelled,
    failed lines) and the other unfinished ones; an empty or overwritten store is bad input."""
    with _store(folder) as store:
        counts = store.state_counts()
    failed = counts[RequestState.FAILED_TERMINAL] + counts[RequestState.FAILED_RETRYABLE]
    return failed, sum(counts[state] for state in UNFINISHED_STATES if state != RequestState.FAILED_RETRYABLE)


