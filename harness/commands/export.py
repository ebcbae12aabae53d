"""`evalbatch export RUN --format openai-batch`: a run's requests waiting to be sent as OpenAI batch input
JSONL, which the OpenAI Batch API and `vllm run-batch` accept. custom_id is the request ID and the
body is exactly what the engine would send (built by the target's own provider), so `evalbatch
import` can reconcile the outputs into the run. One model per file: one file per target, split at
the Batch API's per-file limits.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from harness.commands.common import console, reports_user_errors
from harness.engine.batch.openai_format import MAX_BYTES_PER_FILE, MAX_REQUESTS_PER_FILE, BatchInputLine
from harness.engine.requests import WorkRequest
from harness.engine.states import RequestState
from harness.engine.store import NewRequest, RunStore, StoredItem
from harness.errors import UserError
from harness.plan import RunPlan
from harness.runs.manifest import Manifest

FORMATS = ("openai-batch",)
EXPORTABLE_PROVIDERS = ("openai",)
"""Providers whose requests are OpenAI Chat Completions bodies (vLLM, llama.cpp, Ollama and OpenAI itself)."""


@dataclass
class HeldRun:
    """A run this process alone works on (its run lock held), with the plan it was made from."""

    folder: Path
    manifest: Manifest
    plan: RunPlan
    store: RunStore


@contextmanager
def held_run(run: str, suite: Path | None, reports_dir: Path | None) -> Iterator[HeldRun]:
    """RUN by ID or folder, or a suite file: then its unfinished run of the same work, or a new run,
    with every request stored and nothing sent."""
    if Path(run).suffix in (".yaml", ".yml") and Path(run).is_file():
        with _claimed_from_suite(run, reports_dir) as held:
            yield held
        return
    from harness.commands.jobs import _frozen_plan, _locate, _suite_file  # the run's own work, as `retry` uses
    from harness.runs.lock import RunLock

    folder, manifest = _locate(run, suite, reports_dir)
    plan = _frozen_plan(_suite_file(manifest, folder, suite), folder, manifest)
    with RunLock.acquire(folder, manifest.run_id):
        store = RunStore.existing(folder)
        try:
            yield HeldRun(folder, manifest, plan, store)
        finally:
            store.close()


@contextmanager
def _claimed_from_suite(suite_file: str, reports_dir: Path | None) -> Iterator[HeldRun]:
    from harness.plan import plan_run
    from harness.runs.claim import RunChoice, claim_run
    from harness.runs.manifest import write_manifest

    plan = plan_run(suite_file)
    with claim_run(plan, RunChoice(reports_dir=reports_dir), console()) as claimed:
        store_plan(plan, claimed.store, claimed.manifest.run_id)
        manifest = claimed.manifest
        if manifest.status == "running":  # nothing is sending it: say so, as an interrupted run would
            manifest = manifest.model_copy(update={"status": "incomplete"})
            write_manifest(claimed.folder, manifest)
        yield HeldRun(claimed.folder, manifest, plan, claimed.store)


def store_plan(plan: RunPlan, store: RunStore, run_id: str) -> None:
    """The run's items and requests, as `run` stores them (inserts ignore what is there)."""
    store.set_meta("run_id", run_id)
    store.set_meta("work_fingerprint", plan.work_fingerprint)
    store.add_requests((), (StoredItem(i.id, i.location, tuple(i.slices), i.cluster, i.fields) for i in plan.items()))
    store.add_requests(NewRequest(r.request_id, r.item.id, r.target.label, r.sample_index, r.payload())
                       for r in plan.requests())


def request_states(store: RunStore) -> dict[str, RequestState]:
    return {request.request_id: request.state for request in store.requests()}


class BodyMaker:
    """The body the engine sends for a request, from the target's own provider (no key needed:
    the body holds none, and nothing is sent)."""

    def __init__(self) -> None:
        self._providers: dict[str, Any] = {}

    def body(self, request: WorkRequest) -> dict[str, Any]:
        from harness.engine.providers.base import ProviderRequest

        provider = self._provider(request)
        return provider.request_body(ProviderRequest(request.request_id, request.prompt.text,
                                                     request.prompt.messages))

    def _provider(self, request: WorkRequest) -> Any:
        label = request.target.label
        if label not in self._providers:
            from harness.engine.providers.openai_chat import OpenAIChatProvider

            # A placeholder endpoint only lets the client be built without a key; bodies never hold it.
            target = request.target.model_copy(update={"base_url": request.target.base_url or "http://unused.invalid"})
            self._providers[label] = OpenAIChatProvider(target)
        return self._providers[label]


SENDABLE = (RequestState.QUEUED, RequestState.FAILED_RETRYABLE)
"""What export writes: requests waiting to be sent (never one that succeeded, nor one inside a live
provider batch)."""


@click.command("export")
@click.argument("run")
@click.option("--format", "fmt", type=click.Choice(FORMATS), required=True,
              help="openai-batch: the JSONL of the OpenAI Batch API and `vllm run-batch` (custom_id = request ID).")
@click.option("--failed", "include_failed", is_flag=True,
              help="Also the requests that failed terminally, in a new retry round (as `retry --failed` does).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="The file to write (default: RUN_FOLDER/exports/openai-batch.jsonl). Several files "
                   "(several targets, or over 50,000 requests or 200 MB) are named <stem>.<target>[.<part>]<suffix>.")
@click.option("--suite", type=click.Path(dir_okay=False, path_type=Path),
              help="The suite (default: the one the run was made from).")
@click.option("--reports-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where runs are found (default: found from the current directory; RUN may be a folder's path).")
@reports_user_errors
def export(run: str, fmt: str, include_failed: bool, out: Path | None, suite: Path | None,
           reports_dir: Path | None) -> None:
    """Write RUN's requests waiting to be sent as batch input files, one model per file, to run with
    the OpenAI Batch API or `vllm run-batch` and read back with `evalbatch import RUN FILE`. RUN may
    also be a suite file: its run is created (or its unfinished run taken) without sending anything."""
    out_console = console()
    with held_run(run, suite, reports_dir) as held:
        held.store.requeue_unfinished()  # we hold the run: what is still "processing" was abandoned
        if include_failed:
            held.store.requeue_failed()
        states = request_states(held.store)
        todo = [r for r in held.plan.requests() if states.get(r.request_id) in SENDABLE]
        failed = sum(1 for state in states.values() if state == RequestState.FAILED_TERMINAL)
        if failed:
            out_console.print(f"{failed} request(s) failed terminally and are not exported; add --failed to "
                              "export them too (a new retry round)", soft_wrap=True)
        skipped = sorted({r.target.label for r in todo if r.target.provider not in EXPORTABLE_PROVIDERS})
        exportable = [r for r in todo if r.target.provider in EXPORTABLE_PROVIDERS]
        if skipped:
            out_console.print(f"skipped target(s) {', '.join(skipped)}: only OpenAI-compatible targets "
                              f"(provider {', '.join(EXPORTABLE_PROVIDERS)}) export as {fmt}", soft_wrap=True)
        if not exportable:
            if skipped:
                raise UserError(f"run {held.manifest.run_id} has no requests of an OpenAI-compatible target to export",
                                hint="batch other providers with `evalbatch run --mode batch`")
            out_console.print(f"run {held.manifest.run_id}: no request is waiting to be sent; nothing to export")
            return
        files = _write_files(exportable, out or held.folder / "exports" / "openai-batch.jsonl")
    for path, count, target in files:
        out_console.print(f"wrote {count} request(s) of target {target.label} (model {target.model}) to {path}",
                          soft_wrap=True)
    first = files[0]
    out_console.print(f"run them with: vllm run-batch -i {first[0]} -o outputs.jsonl --model {first[2].model} "
                      f"(or upload to the OpenAI Batch API), then: evalbatch import {held.manifest.run_id} "
                      "outputs.jsonl", soft_wrap=True)


def _write_files(requests: list[WorkRequest], base: Path) -> list[tuple[Path, int, Any]]:
    from harness.runs.files import write_atomically

    by_target: dict[str, list[WorkRequest]] = {}
    for request in requests:
        by_target.setdefault(request.target.label, []).append(request)
    maker = BodyMaker()
    chunks = [(label, part, lines) for label, group in by_target.items()
              for part, lines in enumerate(_chunks(BatchInputLine(custom_id=r.request_id, body=maker.body(r)).to_jsonl()
                                                   for r in group), start=1)]
    base.parent.mkdir(parents=True, exist_ok=True)
    written = []
    for label, part, lines in chunks:
        path = base if len(chunks) == 1 else _part_path(base, label, part if _parts(chunks, label) > 1 else None)
        write_atomically(path, "".join(lines))
        written.append((path, len(lines), by_target[label][0].target))
    return written


def _chunks(lines: Iterator[str], max_requests: int = MAX_REQUESTS_PER_FILE,
            max_bytes: int = MAX_BYTES_PER_FILE) -> Iterator[list[str]]:
    """Lines in files the Batch API takes: at most max_requests lines and max_bytes bytes each."""
    chunk: list[str] = []
    size = 0
    for line in lines:
        length = len(line.encode())
        if chunk and (len(chunk) >= max_requests or size + length > max_bytes):
            yield chunk
            chunk, size = [], 0
        chunk.append(line)
        size += length
    if chunk:
        yield chunk


def _parts(chunks: list[tuple[str, int, list[str]]], label: str) -> int:
    return sum(1 for chunk_label, _, _ in chunks if chunk_label == label)


def _part_path(base: Path, label: str, part: int | None) -> Path:
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", label)
    return base.with_name(f"{base.stem}.{safe}" + (f".{part}" if part else "") + base.suffix)
