"""The OpenAI Batch API's JSONL line formats, which `vllm run-batch` reads and writes too.

Format version: FORMAT_VERSION below. The lines themselves carry no version field (the providers
define them); this module's models follow the Batch API as documented in Nov 2026 and vLLM's
BatchRequestInput / BatchRequestOutput. An output-file line and an error-file line share one shape:
`response` holds the HTTP reply (any status: a 4xx/5xx is an HTTP failure), `error` a failure that
got no HTTP reply (code "batch_expired", "batch_cancelled", ...; vLLM puts its ErrorResponse
there too). Check response.status_code; error.code is a name, never an HTTP status.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from harness.engine.providers.base import Completion
from harness.engine.providers.http_errors import shorten, status_error

FORMAT_VERSION = "openai-batch/1"
"""Bumped when the models below change their reading of a line."""

CHAT_URL = "/v1/chat/completions"
MAX_REQUESTS_PER_FILE = 50_000
MAX_BYTES_PER_FILE = 200 * 1024 * 1024


class BatchInputLine(BaseModel):
    """One request of a batch input file."""

    model_config = ConfigDict(extra="forbid")
    custom_id: str = Field(min_length=1, description="The request's ID (unique in its file).")
    method: Literal["POST"] = "POST"
    url: str = Field(default=CHAT_URL, description="The endpoint, the batch's `endpoint`.")
    body: dict[str, Any] = Field(description="Exactly the body a realtime call would send (one model per file).")

    def to_jsonl(self) -> str:
        return json.dumps(self.model_dump(), ensure_ascii=False, separators=(",", ":")) + "\n"


class BatchResponse(BaseModel):
    model_config = ConfigDict(extra="allow")
    status_code: int = Field(description="The HTTP status of the request's reply (200: answered).")
    request_id: str | None = None
    body: dict[str, Any] | None = Field(default=None, description="The reply body: a chat completion, or the "
                                                                  "provider's error body (vLLM leaves it null).")


class BatchOutputLine(BaseModel):
    """One line of an output file or an error file."""

    model_config = ConfigDict(extra="allow")
    id: str | None = Field(default=None, description="The line's own ID (batch_req_..., vllm-...).")
    custom_id: str = Field(min_length=1)
    response: BatchResponse | None = None
    error: Any = Field(default=None, description="A failure without an HTTP reply: {code, message} (OpenAI), "
                                                 "vLLM's ErrorResponse, or null.")

    @property
    def answered(self) -> bool:
        return self.response is not None and self.response.status_code == 200 and not self.error

    @property
    def echoed_model(self) -> str | None:
        """The model the reply says answered (OpenAI names a dated snapshot of the one asked for)."""
        body = self.response.body if self.response is not None else None
        model = body.get("model") if body else None
        return str(model) if model else None


class LineFailure(BaseModel):
    """Why a line did not answer: its HTTP status (None: no HTTP reply), a message, and whether
    sending the request again can help."""

    status: int | None
    message: str
    retryable: bool


def parse_input_line(text: str) -> BatchInputLine:
    """Raises ValueError with a short reason."""
    return _parse(BatchInputLine, text)


def parse_output_line(text: str) -> BatchOutputLine:
    """Raises ValueError with a short reason."""
    return _parse(BatchOutputLine, text)


def completion_of(line: BatchOutputLine) -> Completion:
    """The answer of a line that answered; ValueError when its body is no chat completion."""
    body = line.response.body if line.response is not None else None
    choices = (body or {}).get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise ValueError("status 200 but the body has no choices (not a chat completion)")
    usage = (body or {}).get("usage") or {}
    details = usage.get("prompt_tokens_details") or {}
    return Completion(text=(choices[0].get("message") or {}).get("content") or "",
                      input_tokens=usage.get("prompt_tokens"), output_tokens=usage.get("completion_tokens"),
                      finish_reason=choices[0].get("finish_reason"), cached_input_tokens=details.get("cached_tokens"))


def failure_of(line: BatchOutputLine) -> LineFailure:
    """A line that did not answer: an HTTP failure is classified as a realtime reply with that
    status would be; a line that never ran (expired, cancelled) can be sent again."""
    if line.response is not None and line.response.status_code != 200:
        body_text = json.dumps(line.response.body) if line.response.body else _error_text(line.error)
        failure = status_error(line.response.status_code, body_text, {})
        return LineFailure(status=line.response.status_code, message=failure.describe(),
                           retryable=failure.kind == "transient")
    return LineFailure(status=None, message=_error_text(line.error) or "no response for this request",
                       retryable=True)


def _error_text(error: Any) -> str:
    if isinstance(error, dict):
        nested = error.get("error")
        inner: dict[str, Any] = nested if isinstance(nested, dict) else error
        code, message = inner.get("code"), inner.get("message")
        return shorten(": ".join(str(part) for part in (code, message) if part)) or shorten(json.dumps(error))
    return shorten(str(error)) if error else ""


def _parse(model: type[Any], text: str) -> Any:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "line"
        raise ValueError(f"{where}: {first['msg']}") from None
