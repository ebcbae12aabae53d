"""The OpenAI Batch API (/v1/files + /v1/batches) for chat completions.

One JSONL input file per batch, one model per file (a target is one model); each line is
{"custom_id", "method": "POST", "url": "/v1/chat/completions", "body"} with the body the
realtime provider builds (harness/engine/providers/openai_chat.py), so a batch answer is the
answer the realtime API gives. Results come from BOTH the output file and the error file, in
any order, reconciled by custom_id. A line's HTTP outcome is its response.status_code; its
error.code (e.g. batch_expired) is no HTTP status and is never read as one.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Final

import openai

from harness.config.suite import TargetSpec
from harness.engine.batch.base import (
    BatchApiError,
    BatchInfo,
    BatchLimits,
    ChunkKey,
    LineResult,
    ResultProblem,
    Unproven,
)
from harness.engine.batch.calls import batch_call
from harness.engine.batch.openai_format import (
    MAX_BYTES_PER_FILE,
    MAX_REQUESTS_PER_FILE,
    BatchInputLine,
    completion_of,
    failure_of,
    parse_output_line,
)
from harness.engine.batch.registry import register_batch_api
from harness.engine.providers.http_errors import shorten

ENDPOINT: Final = "/v1/chat/completions"
LIMITS = BatchLimits(max_requests=MAX_REQUESTS_PER_FILE, max_bytes=MAX_BYTES_PER_FILE)
_ENDED = frozenset({"completed", "failed", "expired", "cancelled"})
_PLACEHOLDER_KEY = "not-needed-for-local-servers"
_FIND_WINDOW_S = 3600.0
"""How far before a chunk was planned `find` looks back through the batch list."""


@register_batch_api("openai")
class OpenAIBatchApi:
    provider = "openai"
    limits = LIMITS
    framing_bytes = 0
    tags_custom_ids = False  # the input file proves which batch is the chunk's

    def __init__(self, target: TargetSpec) -> None:
        base_url = target.base_url or os.environ.get("OPENAI_BASE_URL")
        api_key = os.environ.get("OPENAI_API_KEY") or (_PLACEHOLDER_KEY if base_url else None)
        if api_key is None:
            raise BatchApiError("OPENAI_API_KEY is not set (or set base_url)", final=True)
        # The engine owns retries (see harness/engine/providers/openai_chat.py).
        self.client = openai.AsyncOpenAI(api_key=api_key, base_url=base_url, max_retries=0)
        self.base_url = str(self.client.base_url)

    def line(self, custom_id: str, body: dict[str, Any]) -> bytes:
        return BatchInputLine(custom_id=custom_id, url=ENDPOINT, body=body).to_jsonl().encode()

    async def submit(self, lines: list[bytes], on_file: Callable[[str, int], Awaitable[None]]) -> BatchInfo:
        content = b"".join(lines)
        with batch_call(openai, "upload the batch input file"):
            uploaded = await self.client.files.create(file=("batch_input.jsonl", content, "application/jsonl"),
                                                      purpose="batch")
        await on_file(uploaded.id, len(content))
        return await self.create_from_file(uploaded.id)

    async def create_from_file(self, file_id: str) -> BatchInfo:
        with batch_call(openai, "create the batch"):
            batch = await self.client.batches.create(input_file_id=file_id, endpoint=ENDPOINT,
                                                     completion_window="24h",
                                                     metadata={"created_by": "evalbatch"})
        return _info(batch)

    async def find(self, key: ChunkKey) -> BatchInfo | Unproven | None:
        """The batch made from this input file, if a process created it and died before
        recording it: the list is newest first, so it is read back only to the chunk's time."""
        input_file_id, planned_at, known = key.input_file_id, key.planned_at, key.known
        if input_file_id is None:
            return None  # no file, so no batch could have been made from it
        with batch_call(openai, "list batches"):
            async for batch in self.client.batches.list(limit=100):
                if batch.input_file_id == input_file_id and batch.id not in known:
                    return _info(batch)
                if batch.created_at < planned_at - _FIND_WINDOW_S:
                    break
        return None

    async def retrieve(self, batch_id: str) -> BatchInfo:
        with batch_call(openai, f"retrieve batch {batch_id}"):
            return _info(await self.client.batches.retrieve(batch_id))

    async def cancel(self, batch_id: str) -> BatchInfo:
        with batch_call(openai, f"cancel batch {batch_id}"):
            return _info(await self.client.batches.cancel(batch_id))

    async def results(self, info: BatchInfo) -> AsyncIterator[LineResult | ResultProblem]:
        for file_id in (info.output_file_id, info.error_file_id):
            if not file_id:
                continue
            number = 0
            try:
                with batch_call(openai, f"download batch results file {file_id}"):
                    async with self.client.files.with_streaming_response.content(file_id) as response:
                        async for text in response.iter_lines():
                            number += 1
                            if text.strip():
                                yield read_output_line(text, f"file {file_id} line {number}")
            except BatchApiError as error:
                # The lines read so far stand; the chunk waits until the rest can be read.
                yield ResultProblem(f"file {file_id}", f"{error} (after {number} line(s))", whole_file=True,
                                    final=error.final)

    async def close(self) -> None:
        await self.client.close()


def read_output_line(text: str, where: str) -> LineResult | ResultProblem:
    """One line of an output or error file (OpenAI's, or vLLM run-batch's, which has its shape);
    `where` names the file and line. A line that is no batch output line is a ResultProblem,
    tied to its custom_id when one can be read, so only its own request goes without a result."""
    try:
        line = parse_output_line(text)
    except ValueError as exc:
        return _unreadable(text, f"{where} is not an OpenAI batch output line ({exc}): {shorten(text, 120)}", where)
    if line.answered:
        try:
            return LineResult(line.custom_id, completion=completion_of(line))
        except ValueError as exc:
            return LineResult(line.custom_id, error=f"malformed response ({where}): {exc}", status=200, final=False)
    failure = failure_of(line)
    return LineResult(line.custom_id, error=failure.message, status=failure.status, final=not failure.retryable)


def _unreadable(text: str, message: str, where: str) -> LineResult | ResultProblem:
    try:
        custom_id = json.loads(text).get("custom_id")
    except (ValueError, AttributeError):
        custom_id = None
    if isinstance(custom_id, str) and custom_id:
        return LineResult(custom_id, error=message, status=None, final=False)
    return ResultProblem(where, message)


def _info(batch: Any) -> BatchInfo:
    counts = batch.request_counts
    problem = None
    if batch.status == "failed" and batch.errors is not None and batch.errors.data:
        problem = "; ".join(f"{e.code}: {e.message}" + (f" (line {e.line})" if e.line else "")
                            for e in batch.errors.data[:5])
    return BatchInfo(batch_id=batch.id, status=batch.status, ended=batch.status in _ENDED,
                     total=counts.total if counts else 0, completed=counts.completed if counts else 0,
                     failed=counts.failed if counts else 0, created_at=float(batch.created_at),
                     expires_at=float(batch.expires_at) if batch.expires_at else None,
                     output_file_id=batch.output_file_id, error_file_id=batch.error_file_id, problem=problem)
