"""`evalbatch import RUN FILE`: outputs produced elsewhere (vLLM run-batch, an OpenAI Batch API
download) reconciled into a run by custom_id (the request ID).

Every line is checked before anything is stored: a line that is not an OpenAI batch output line,
names no request of the run (or a request twice), answers with another model than the request
asked for, or (with --requests) was made from a body other than the one the run would send, is
rejected with its file and line, and nothing is imported (exit 2). Answers are then recorded and
scored as the engine records its own (origin "import"); error lines are recorded as failed
attempts, retryable or not as a realtime reply with that status would be. A request that already
succeeded is never overwritten.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from harness.commands.common import EXIT_FAILED_REQUESTS, console, reports_user_errors
from harness.commands.export import EXPORTABLE_PROVIDERS, BodyMaker, HeldRun, held_run, request_states
from harness.engine.batch.openai_format import (
    BatchOutputLine,
    completion_of,
    failure_of,
    parse_input_line,
    parse_output_line,
)
from harness.engine.providers.base import Completion
from harness.engine.requests import WorkRequest
from harness.engine.states import RequestState
from harness.engine.store import ScoreRow
from harness.errors import UserError

_SHOWN_PROBLEMS = 20


@dataclass
class Checked:
    """The lines of an output file, each tied to its request, or the problems that reject the file."""

    answers: list[tuple[WorkRequest, Completion]] = field(default_factory=list)
    failures: list[tuple[WorkRequest, BatchOutputLine]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


@dataclass
class Tally:
    imported: int = 0
    failed: int = 0
    kept: int = 0
    skipped: list[str] = field(default_factory=list)


@click.command("import")
@click.argument("run")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--requests", "requests_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The batch input file the outputs were made from: each of its lines must carry exactly the "
                   "body the run would send for that request.")
@click.option("--suite", type=click.Path(dir_okay=False, path_type=Path),
              help="The suite (default: the one the run was made from).")
@click.option("--reports-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where runs are found (default: found from the current directory; RUN may be a folder's path).")
@reports_user_errors
def import_outputs(run: str, file: Path, requests_file: Path | None, suite: Path | None,
                   reports_dir: Path | None) -> None:
    """Read FILE, an OpenAI batch output or error file (from `vllm run-batch`, or downloaded from the
    OpenAI Batch API) for requests of RUN exported with `evalbatch export`, into RUN: answers are
    recorded and scored as the engine's own, error lines as failed attempts. Any bad line rejects the
    whole file (exit 2, naming file:line); requests that already succeeded are kept as they are.
    Exit code 1 when error lines were recorded."""
    out = console()
    with held_run(run, suite, reports_dir) as held:
        requests = {r.request_id: r for r in held.plan.requests()}
        maker = BodyMaker()
        problems = _check_requests_file(requests_file, requests, maker) if requests_file else []
        checked = _check_outputs(file, requests, maker, problems)
        if not (checked.answers or checked.failures or checked.problems):
            raise UserError("no output lines in the file", file=str(file),
                            hint="give the output (or error) file of `vllm run-batch` or the OpenAI Batch API")
        checked.problems[:0] = problems
        if checked.problems:
            shown = checked.problems[:_SHOWN_PROBLEMS]
            more = len(checked.problems) - len(shown)
            raise UserError(f"{len(checked.problems)} line(s) rejected; nothing was imported:\n  " + "\n  ".join(shown)
                            + (f"\n  ... and {more} more" if more else ""),
                            hint="import only outputs of requests exported from this run with "
                                 f"`evalbatch export {held.manifest.run_id} --format openai-batch`")
        tally = _record(held, checked)
        status = _finish(held)
    out.print(f"imported {tally.imported} answer(s) and {tally.failed} failure(s) from {file} into run "
              f"{held.manifest.run_id}" + (f"; kept {tally.kept} request(s) that had already succeeded"
                                           if tally.kept else "") + f"; the run is {status}", soft_wrap=True)
    for reason in tally.skipped[:_SHOWN_PROBLEMS]:
        out.print(f"not imported: {reason}", soft_wrap=True)
    if tally.failed:
        sys.exit(EXIT_FAILED_REQUESTS)


def _check_requests_file(path: Path, requests: dict[str, WorkRequest], maker: BodyMaker) -> list[str]:
    problems = []
    for number, text in _lines(path):
        try:
            line = parse_input_line(text)
        except ValueError as exc:
            problems.append(f"{path}:{number}: not an OpenAI batch input line ({exc})")
            continue
        request = requests.get(line.custom_id)
        if request is None:
            problems.append(f"{path}:{number}: custom_id {line.custom_id!r} is no request of this run")
        elif _canonical(line.body) != _canonical(maker.body(request)):
            problems.append(f"{path}:{number}: custom_id {line.custom_id!r}: the body differs from the one the run "
                            f"sends for this request (fields {_differing(line.body, maker.body(request))})")
    return problems


def _check_outputs(path: Path, requests: dict[str, WorkRequest], maker: BodyMaker, problems: list[str]) -> Checked:
    checked = Checked()
    seen: dict[str, int] = {}
    for number, text in _lines(path):
        where = f"{path}:{number}"
        try:
            line = parse_output_line(text)
        except ValueError as exc:
            checked.problems.append(f"{where}: not an OpenAI batch output line ({exc})")
            continue
        request = requests.get(line.custom_id)
        if request is None:
            checked.problems.append(f"{where}: custom_id {line.custom_id!r} is no request of this run")
            continue
        if request.target.provider not in EXPORTABLE_PROVIDERS:
            checked.problems.append(f"{where}: custom_id {line.custom_id!r} is a request of target "
                                    f"{request.target.label!r} (provider {request.target.provider}), not an "
                                    "OpenAI-compatible one")
            continue
        if line.custom_id in seen:
            checked.problems.append(f"{where}: custom_id {line.custom_id!r} again (first at line {seen[line.custom_id]})")
            continue
        seen[line.custom_id] = number
        asked = maker.body(request)["model"]
        if line.echoed_model is not None and not _same_model(line.echoed_model, asked):
            checked.problems.append(f"{where}: custom_id {line.custom_id!r} was answered by model "
                                    f"{line.echoed_model!r}, but the request asks for {asked!r}")
            continue
        if not line.answered:
            checked.failures.append((request, line))
            continue
        try:
            checked.answers.append((request, completion_of(line)))
        except ValueError as exc:
            checked.problems.append(f"{where}: {exc}")
    return checked


def _record(held: HeldRun, checked: Checked) -> Tally:
    """Each line its own committed transaction, as the engine records its answers."""
    store, tally = held.store, Tally()
    states = request_states(store)
    for request, completion in checked.answers:
        if states.get(request.request_id) == RequestState.SUCCEEDED:
            tally.kept += 1
        elif store.reuse(request.request_id, completion, "import", _scores(held, request, completion.text),
                         cost_usd=None):
            tally.imported += 1
        else:
            tally.skipped.append(_why_not(request, states))
    for request, line in checked.failures:
        if states.get(request.request_id) == RequestState.SUCCEEDED:
            tally.kept += 1
            continue
        attempt = store.start_attempt(request.request_id)
        failure = failure_of(line)
        if attempt is not None and store.fail(request.request_id, attempt.number, final=not failure.retryable,
                                              error=f"imported: {failure.message}", status=failure.status):
            tally.failed += 1
        else:
            tally.skipped.append(_why_not(request, states))
    return tally


def _why_not(request: WorkRequest, states: dict[str, RequestState]) -> str:
    state = states.get(request.request_id)
    hint = (" (it takes an answer again once in a new retry round: `evalbatch export RUN --failed`)"
            if state == RequestState.FAILED_TERMINAL else "")
    return f"request {request.request_id} is {state}{hint}"


def _scores(held: HeldRun, request: WorkRequest, output: str) -> list[ScoreRow]:
    """Stored with the answer, as the engine stores them (the end-of-import pass rescores all)."""
    rows: list[ScoreRow] = []
    for scorer in held.plan.scorers:
        try:
            result = scorer.score(output, request.item.fields)
        except Exception:  # noqa: BLE001 - the scoring pass below reports it
            return []
        rows.append((request.request_id, scorer.name, result.value, result.passed, result.detail))
    return rows


def _finish(held: HeldRun) -> str:
    """Scores, results.jsonl and the manifest's status, as at the end of a run."""
    from harness.engine.metrics import run_metrics
    from harness.engine.states import UNFINISHED_STATES
    from harness.runs.manifest import now_iso, write_manifest
    from harness.runs.results_writer import write_store_results
    from harness.scoring.apply import score_run

    store = held.store
    score_run(store, held.plan.scorers)
    write_store_results(held.folder, store)
    counts = store.state_counts()
    unfinished = any(counts[state] for state in UNFINISHED_STATES) or counts[RequestState.FAILED_TERMINAL]
    status = "incomplete" if unfinished else "complete"
    write_manifest(held.folder, held.manifest.model_copy(update={"status": status, "ended_at": now_iso(),
                                                                 "metrics": run_metrics(store)}))
    return status


_SNAPSHOT_SUFFIX = re.compile(r"-(\d{4}-\d{2}-\d{2}|\d{8})")
"""A dated snapshot: OpenAI's -YYYY-MM-DD, Anthropic's (and some others') -YYYYMMDD."""


def _same_model(echoed: str, asked: str) -> bool:
    """The model asked for, or a dated snapshot of it (gpt-4o-mini -> gpt-4o-mini-2024-07-18); never
    another model whose name merely starts the same (gpt-4o is not gpt-4o-mini)."""
    return echoed == asked or (echoed.startswith(asked) and _SNAPSHOT_SUFFIX.fullmatch(echoed[len(asked):]) is not None)


def _lines(path: Path):
    try:
        with path.open(encoding="utf-8") as handle:
            for number, text in enumerate(handle, start=1):
                if text.strip():
                    yield number, text
    except UnicodeDecodeError as exc:
        raise UserError(f"not UTF-8 text ({exc.reason})", file=str(path)) from None


def _canonical(body: dict[str, Any]) -> str:
    return json.dumps(body, sort_keys=True, separators=(",", ":"))


def _differing(given: dict[str, Any], expected: dict[str, Any]) -> str:
    names = sorted(name for name in given.keys() | expected.keys() if given.get(name) != expected.get(name))
    return ", ".join(names)
