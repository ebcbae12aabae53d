"""Anthropic Message Batches (/v1/messages/batches).

No file: the requests go in the create call, each {"custom_id", "params"} with the params the
realtime provider builds (harness/engine/providers/anthropic_messages.py; its raw sampling
fields are merged into the params, as the SDK merges extra_body into the body). Results are
streamed from the batch's results_url once processing_status is `ended`, in any order, and
mapped: succeeded -> the message; errored -> failed (terminal for invalid requests);
canceled and expired -> retryable (never billed, never ran).
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anthropic
from anthropic.types.messages import MessageBatchIndividualResponse

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
from harness.engine.batch.registry import register_batch_api
from harness.engine.providers.base import Completion
from harness.engine.providers.http_errors import shorten

LIMITS = BatchLimits(max_requests=100_000, max_bytes=256 * 1024 * 1024)
_FIND_SLACK_S = 120.0
"""A batch created by a process that died may be this chunk's if created this soon before the
chunk was planned (clocks differ) or any time after; its results then tell."""

# Anthropic's error types and the HTTP status each stands for (provider-apis.md).
_ERROR_STATUS = {"invalid_request_error": 400, "authentication_error": 401, "billing_error": 402,
                 "permission_error": 403, "not_found_error": 404, "request_too_large": 413,
                 "rate_limit_error": 429, "api_error": 500, "timeout_error": 504, "overloaded_error": 529}
_RETRYABLE_TYPES = frozenset({"rate_limit_error", "api_error", "timeout_error", "overloaded_error"})


@register_batch_api("anthropic")
class AnthropicBatchApi:
    provider = "anthropic"
    limits = LIMITS
    tags_custom_ids = True
    framing_bytes = len(b'{"requests":[]}') - 1
    """The body is the lines without their newlines, joined by commas (one fewer than lines)."""

    def __init__(self, target: TargetSpec) -> None:
        api_key = os.environ.get("ANTHROPIC_API_KEY")
        if not api_key:
            raise BatchApiError("ANTHROPIC_API_KEY is not set", final=True)
        base_url = target.base_url or os.environ.get("ANTHROPIC_BASE_URL")
        self.client = anthropic.AsyncAnthropic(api_key=api_key, base_url=base_url, max_retries=0)
        self.base_url = str(self.client.base_url)

    def line(self, custom_id: str, body: dict[str, Any]) -> bytes:
        params = {key: value for key, value in body.items() if key != "extra_body"}
        params.update(body.get("extra_body") or {})
        return json.dumps({"custom_id": custom_id, "params": params}, separators=(",", ":"),
                          ensure_ascii=False).encode() + b"\n"

    async def submit(self, lines: list[bytes], on_file: Callable[[str, int], Awaitable[None]]) -> BatchInfo:
        requests = [json.loads(line) for line in lines]
        with batch_call(anthropic, "create the message batch"):
            batch = await self.client.messages.batches.create(requests=requests)
        return _info(batch)

    async def create_from_file(self, file_id: str) -> BatchInfo:
        raise BatchApiError("Anthropic message batches have no input file", final=True)

    async def find(self, key: ChunkKey) -> BatchInfo | Unproven | None:
        """The batch of this chunk among those of its size created since it was planned and not
        recorded by this run. Anthropic keeps no link to our chunk, so a batch counts as the
        chunk's only when its results carry the chunk's (tagged, so chunk-specific) custom_ids;
        a live candidate cannot be proven yet, so the answer is Unproven until it ends."""
        candidates = []
        with batch_call(anthropic, "list message batches"):
            async for batch in self.client.messages.batches.list(limit=100):
                if batch.created_at.timestamp() < key.planned_at - _FIND_SLACK_S:
                    break
                if batch.id not in key.known and _info(batch).total == key.total:
                    candidates.append(_info(batch))
        live = []
        for listed in candidates:
            info = listed if listed.ended else await self.retrieve(listed.batch_id)  # its state now
            if not info.ended:
                live.append(info.batch_id)
            elif await self._holds(info, key.custom_ids):
                return info
        return Unproven(tuple(live)) if live else None

    async def _holds(self, info: BatchInfo, custom_ids: frozenset[str]) -> bool:
        """Whether the ended batch's results are of these custom_ids (the first readable line tells)."""
        async for line in self.results(info):
            if isinstance(line, LineResult):
                return line.custom_id in custom_ids
            if line.whole_file:
                raise BatchApiError(f"could not tell whether batch {info.batch_id} is this run's: {line.message}",
                                    final=False)
        return False

    async def retrieve(self, batch_id: str) -> BatchInfo:
        with batch_call(anthropic, f"retrieve message batch {batch_id}"):
            return _info(await self.client.messages.batches.retrieve(batch_id))

    async def cancel(self, batch_id: str) -> BatchInfo:
        with batch_call(anthropic, f"cancel message batch {batch_id}"):
            return _info(await self.client.messages.batches.cancel(batch_id))

    async def results(self, info: BatchInfo) -> AsyncIterator[LineResult | ResultProblem]:
        """Each line is read on its own (not through the SDK's decoder, which stops at the first
        line that is not JSON): a bad line costs only its own request."""
        where = f"the results of message batch {info.batch_id}"
        number = 0
        try:
            with batch_call(anthropic, f"stream {where}"):
                decoder = await self.client.messages.batches.results(info.batch_id)
                try:
                    async for text in decoder.http_response.aiter_lines():
                        number += 1
                        if text.strip():
                            yield _read_line(text, f"{where}, line {number}")
                finally:
                    await decoder.close()
        except BatchApiError as error:
            yield ResultProblem(where, f"{error} (after {number} line(s))", whole_file=True, final=error.final)

    async def close(self) -> None:
        await self.client.close()


def _read_line(text: str, where: str) -> LineResult | ResultProblem:
    try:
        data = json.loads(text)
        custom_id = data.get("custom_id") if isinstance(data, dict) else None
    except ValueError as exc:
        return ResultProblem(where, f"{where} is not JSON ({exc}): {shorten(text, 120)}")
    if not isinstance(custom_id, str) or not custom_id:
        return ResultProblem(where, f"{where} has no custom_id: {shorten(text, 120)}")
    try:
        return _line(MessageBatchIndividualResponse.construct(**data))
    except (AttributeError, TypeError, ValueError) as exc:
        return LineResult(custom_id, error=f"{where} is no message batch result ({exc})", status=None, final=False)


def _line(entry: Any) -> LineResult:
    custom_id, result = entry.custom_id, entry.result
    if result.type == "succeeded":
        message = result.message
        text = "".join(getattr(block, "text", "") for block in (message.content or []))
        usage = message.usage
        return LineResult(custom_id, completion=Completion(
            text=text, input_tokens=usage.input_tokens if usage else None,
            output_tokens=usage.output_tokens if usage else None, finish_reason=message.stop_reason))
    if result.type == "errored":
        inner = getattr(result.error, "error", None)
        kind = getattr(inner, "type", "api_error")
        message = getattr(inner, "message", "") or kind
        status = _ERROR_STATUS.get(kind)
        return LineResult(custom_id, error=f"HTTP {status}: {kind}: {message}" if status else f"{kind}: {message}",
                          status=status, final=kind not in _RETRYABLE_TYPES)
    # canceled / expired: the request never ran.
    return LineResult(custom_id, error=f"batch line {result.type}", status=None, final=False)


def _info(batch: Any) -> BatchInfo:
    counts = batch.request_counts
    total = counts.processing + counts.succeeded + counts.errored + counts.canceled + counts.expired
    return BatchInfo(batch_id=batch.id, status=batch.processing_status, ended=batch.processing_status == "ended",
                     total=total, completed=counts.succeeded,
                     failed=counts.errored + counts.canceled + counts.expired,
                     created_at=batch.created_at.timestamp(),
                     expires_at=batch.expires_at.timestamp() if batch.expires_at else None)
