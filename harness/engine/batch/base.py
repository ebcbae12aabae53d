"""The one interface every provider's batch API implements, and the shapes it returns."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol

from harness.engine.providers.base import Completion


@dataclass(frozen=True)
class BatchLimits:
    """How much one provider batch may hold (an input file, for OpenAI)."""

    max_requests: int
    max_bytes: int

    def lowered(self, max_requests: int | None, max_bytes: int | None) -> BatchLimits:
        """The suite's engine.batch limits, never above the provider's."""
        return BatchLimits(min(self.max_requests, max_requests or self.max_requests),
                           min(self.max_bytes, max_bytes or self.max_bytes))


@dataclass(frozen=True)
class BatchInfo:
    """A provider batch as last retrieved (times are Unix seconds)."""

    batch_id: str
    status: str
    ended: bool
    """No line will change any more: its results (if any) can be collected."""
    total: int = 0
    completed: int = 0
    failed: int = 0
    created_at: float | None = None
    expires_at: float | None = None
    output_file_id: str | None = None
    error_file_id: str | None = None
    problem: str | None = None
    """Why the whole batch failed (e.g. validation errors), when it did."""


@dataclass(frozen=True)
class LineResult:
    """One result line: a completion, or a failure with its HTTP status (None: no HTTP reply,
    e.g. expired or cancelled) and whether trying again can help."""

    custom_id: str
    completion: Completion | None = None
    error: str | None = None
    status: int | None = None
    final: bool = False


@dataclass(frozen=True)
class ResultProblem:
    """Something of an ended batch's results that could not be read: one line (`where` names the
    file or batch and the line number; its request, if any, is left without a result), or a
    whole results file (`whole_file`: the chunk cannot be collected until it is read)."""

    where: str
    message: str
    whole_file: bool = False
    final: bool = True
    """For a whole file: whether reading it again cannot help (a 404) rather than may (a 5xx)."""


@dataclass(frozen=True)
class Unproven:
    """`find` saw batches that may be the chunk's but cannot prove it yet (their results, which
    carry the chunk's custom_ids, come only once they end): neither adopt nor create again."""

    batch_ids: tuple[str, ...]


@dataclass(frozen=True)
class ChunkKey:
    """What identifies a chunk's batch at the provider."""

    input_file_id: str | None
    planned_at: float
    total: int
    custom_ids: frozenset[str]
    known: frozenset[str]
    """Batch IDs this run already records (never another chunk's)."""


class BatchApi(Protocol):
    """One per batch target, over the provider's official client."""

    provider: str
    limits: BatchLimits
    tags_custom_ids: bool
    """Whether a chunk's custom_ids carry a per-chunk tag, so that its batch's results prove the
    batch is the chunk's (Anthropic: no input file links a batch to a chunk)."""
    framing_bytes: int
    """What a batch's request body adds to the sum of its lines (Anthropic's {"requests":[...]}
    wrapper and commas; 0 for a file of lines): chunks are sized by the exact body."""
    base_url: str
    """Where the API is (named in errors, so a user sees which endpoint and key refused)."""

    def line(self, custom_id: str, body: dict[str, Any]) -> bytes:
        """The request as one line of the batch (its size counts against max_bytes)."""
        ...

    async def submit(self, lines: list[bytes], on_file: Any) -> BatchInfo:
        """Uploads (where the API takes a file) and creates the batch. `on_file(file_id, size)`
        is awaited between the two, so the file's ID is committed before the batch is created."""
        ...

    async def create_from_file(self, file_id: str) -> BatchInfo:
        """Creates the batch from an input file uploaded earlier (by a process that died)."""
        ...

    async def find(self, key: ChunkKey) -> BatchInfo | Unproven | None:
        """A batch created for this chunk by a process that died (or lost the reply) before
        recording its ID; Unproven while a batch that may be it cannot be told apart yet."""
        ...

    async def retrieve(self, batch_id: str) -> BatchInfo: ...

    async def cancel(self, batch_id: str) -> BatchInfo: ...

    def results(self, info: BatchInfo) -> AsyncIterator[LineResult | ResultProblem]:
        """Every result line of an ended batch, in whatever order the provider gives them; a line
        or a file that cannot be read comes as a ResultProblem, and the others still come."""
        ...

    async def close(self) -> None: ...


class BatchApiError(Exception):
    """A batch API call failed: `final` when repeating it cannot help (e.g. a 400 on create)."""

    def __init__(self, message: str, *, final: bool, status: int | None = None) -> None:
        super().__init__(message)
        self.final = final
        self.status = status
        """The HTTP status of the reply, when there was one (a 413 splits a chunk)."""
