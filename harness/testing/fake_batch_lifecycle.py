"""How a fake provider batch lives: its scripted stages, counted in polls, and the result of each line.

A batch advances one stage per retrieve (a poll), never by the clock, so tests are fast and give the
same answer every time. With the default script an OpenAI batch is `validating` when created, then
`in_progress`, `finalizing` and `completed` on the first three retrieves; an Anthropic batch is
`in_progress` when created and `ended` on the second retrieve. Lines are answered once, when the
batch reaches its end, by the same fake model that answers realtime requests.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any, Literal

Outcome = Literal["completed", "failed", "expired"]
LineKind = Literal["succeeded", "errored", "expired", "canceled"]

AnswerFn = Callable[["BatchLine", "LiveBatch"], tuple[int, dict[str, Any]]]
"""Answers one line of a batch: (HTTP status, the reply body or the provider's error body)."""

TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})


@dataclass
class BatchScript:
    """What happens to a batch created on the fake server (see `FakeBatches.script`/`queue`)."""

    outcome: Outcome = "completed"
    """completed; failed (at validation, with errors.data; an Anthropic batch has no such state, so
    there every line ends errored 500); expired (the first `done_lines` lines are answered, the
    rest end batch_expired / expired)."""
    validating_polls: int = 1
    """Polls that still see `validating` (OpenAI; the create reply counts as the first)."""
    in_progress_polls: int = 1
    """Polls that see `in_progress`."""
    finalizing_polls: int = 1
    """Polls that see `finalizing` (OpenAI)."""
    cancel_polls: int = 1
    """Polls that see `cancelling` / `canceling` after a cancel (the cancel reply counts as the first)."""
    done_lines: int | None = None
    """Lines (in input order) processed before an expiry or a cancel in progress; None: half."""
    line_errors: dict[str, int] = field(default_factory=dict)
    """Prompt substring -> HTTP status: that line fails with this status (error file / errored)."""
    shuffle_seed: int | None = 0
    """Results are written in an order shuffled with this seed (providers promise no order); None
    keeps the input order."""

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BatchScript:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown batch script fields {sorted(unknown)}; expected some of {sorted(known)}")
        return cls(**data)

    def stages(self, provider: str) -> list[str]:
        """The non-terminal status seen at poll 0, 1, 2, ... (poll 0 is the create reply)."""
        if provider == "anthropic":
            return ["in_progress"] * max(1, self.validating_polls + self.in_progress_polls)
        validating = ["validating"] * max(1, self.validating_polls)
        if self.outcome == "failed":
            return validating
        running = validating + ["in_progress"] * self.in_progress_polls
        return running if self.outcome == "expired" else running + ["finalizing"] * self.finalizing_polls


@dataclass
class BatchLimits:
    """Per-batch limits (the providers' by default; tests lower them to prove splitting)."""

    openai_requests: int = 50_000
    openai_bytes: int = 200 * 1024 * 1024
    anthropic_requests: int = 100_000
    anthropic_bytes: int = 256 * 1024 * 1024

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BatchLimits:
        return cls(**data)


@dataclass
class BatchLog:
    """What the server saw of batches. `answered` counts lines answered (a 200 / succeeded) per
    custom_id over all batches: a request answered twice shows as 2."""

    creations: Counter = field(default_factory=Counter)
    """Batches created, by provider ("openai", "anthropic"), including ones that fail validation."""
    files_uploaded: int = 0
    answered: Counter = field(default_factory=Counter)
    submitted: Counter = field(default_factory=Counter)
    """Lines per custom_id over all created batches (a request in two batches shows as 2)."""
    polls: int = 0
    cancels: int = 0
    rejected: int = 0
    """Creates refused with an HTTP error (bad request, over a limit)."""

    def reset(self) -> None:
        self.creations.clear()
        self.answered.clear()
        self.submitted.clear()
        self.files_uploaded = self.polls = self.cancels = self.rejected = 0

    def snapshot(self) -> dict[str, Any]:
        return {"creations": dict(self.creations), "files_uploaded": self.files_uploaded,
                "answered": dict(self.answered), "submitted": dict(self.submitted), "polls": self.polls,
                "cancels": self.cancels, "rejected": self.rejected}


@dataclass
class BatchLine:
    """One request of a batch: its custom_id and the body (OpenAI) or params (Anthropic)."""

    custom_id: str
    body: dict[str, Any]


@dataclass
class LineResult:
    custom_id: str
    kind: LineKind
    status: int = 200
    """HTTP status of an answered or errored line."""
    body: dict[str, Any] | None = None
    """The reply body (a completion or the provider's error body)."""


@dataclass
class LiveBatch:
    """A batch on the fake server: everything its provider's object and result lines are built from."""

    provider: str
    id: str
    lines: list[BatchLine]
    script: BatchScript
    created_at: float
    endpoint: str = ""
    input_file_id: str = ""
    metadata: dict[str, str] | None = None
    validation_errors: list[dict[str, Any]] = field(default_factory=list)
    polls: int = 0
    cancel_poll: int | None = None
    """The poll count when a cancel arrived."""
    reached: dict[str, float] = field(default_factory=dict)
    """Each status, when it was first seen."""
    results: list[LineResult] | None = None
    """Set once, when the batch reaches its end."""
    output_file_id: str | None = None
    error_file_id: str | None = None

    @property
    def model(self) -> str | None:
        return str(self.lines[0].body.get("model")) if self.lines else None

    def status(self) -> str:
        """OpenAI's status vocabulary, from the poll count alone."""
        stages = (["validating"] * max(1, self.script.validating_polls) if self.validation_errors
                  else self.script.stages(self.provider))
        if self.cancel_poll is not None:
            return "cancelling" if self.polls - self.cancel_poll < self.script.cancel_polls else "cancelled"
        if self.polls < len(stages):
            return stages[self.polls]
        if self.validation_errors:
            return "failed"
        if self.provider == "anthropic":
            return "expired" if self.script.outcome == "expired" else "completed"
        return self.script.outcome

    def processed_before_end(self) -> int:
        """Lines processed before the batch ended: all, or `done_lines` for an expiry or a cancel
        (none if cancelled while still validating)."""
        status = self.status()
        if status == "completed":
            return len(self.lines)
        if status == "cancelled":
            assert self.cancel_poll is not None
            stages = self.script.stages(self.provider)
            if self.cancel_poll < len(stages) and stages[self.cancel_poll] == "validating":
                return 0
        done = self.script.done_lines
        return min(len(self.lines), len(self.lines) // 2 if done is None else done)


def settle(batch: LiveBatch, now: float, answer: AnswerFn, log: BatchLog) -> None:
    """Records when the current status was reached and, the first time the batch is at its end,
    answers its lines."""
    status = batch.status()
    batch.reached.setdefault(status, now)
    if status not in TERMINAL or batch.results is not None:
        return
    if batch.validation_errors or status == "failed":  # nothing of an invalid or failed batch ran
        batch.results = []
        return
    batch.results = _line_results(batch, answer, log)


def _line_results(batch: LiveBatch, answer: AnswerFn, log: BatchLog) -> list[LineResult]:
    processed = batch.processed_before_end()
    unprocessed_kind: LineKind = "canceled" if batch.status() == "cancelled" else "expired"
    results: list[LineResult] = []
    for index, line in enumerate(batch.lines):
        if index >= processed:
            results.append(LineResult(line.custom_id, unprocessed_kind))
            continue
        if batch.provider == "anthropic" and batch.script.outcome == "failed":
            status, body = 500, {"type": "error", "error": {"type": "api_error", "message": "scripted failure"}}
        else:
            status, body = answer(line, batch)
        if status == 200:
            log.answered[line.custom_id] += 1
        results.append(LineResult(line.custom_id, "succeeded" if status == 200 else "errored", status, body))
    if batch.script.shuffle_seed is not None:
        random.Random(batch.script.shuffle_seed).shuffle(results)
    return results


def line_error(prompt: str, script: BatchScript) -> int | None:
    return next((status for match, status in script.line_errors.items() if match in prompt), None)
