"""The providers' batch wire formats, as the fake server writes and checks them: file and batch
objects, OpenAI input-line validation (errors.data), result lines, error bodies, multipart uploads."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any

from harness.testing.fake_batch_lifecycle import TERMINAL, BatchLimits, BatchLine, LineResult, LiveBatch
from harness.testing.fake_limits import rfc3339

ANTHROPIC_CUSTOM_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
OPENAI_ENDPOINTS = ("/v1/responses", "/v1/chat/completions", "/v1/embeddings", "/v1/completions",
                    "/v1/moderations")
DAY_S = 24 * 3600

@dataclass
class StoredFile:
    id: str
    filename: str
    purpose: str
    data: bytes
    created_at: float

    def as_object(self) -> dict[str, Any]:
        return {"id": self.id, "object": "file", "bytes": len(self.data), "created_at": int(self.created_at),
                "filename": self.filename, "purpose": self.purpose, "status": "processed",
                "expires_at": int(self.created_at) + 30 * DAY_S, "status_details": None}


class ApiError(Exception):
    def __init__(self, status: int, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.param = status, message, param


def openai_batch_object(batch: LiveBatch) -> dict[str, Any]:
    status = batch.status()
    moments = {f"{name}_at": int(at) for name, at in batch.reached.items() if name != "validating"}
    results = batch.results or []
    answered = [r for r in results if r.kind == "succeeded"]
    usage_in = sum(r.body["usage"]["prompt_tokens"] for r in answered if r.body)
    usage_out = sum(r.body["usage"]["completion_tokens"] for r in answered if r.body)
    cached = sum((r.body["usage"].get("prompt_tokens_details") or {}).get("cached_tokens", 0)
                 for r in answered if r.body)
    ended = batch.results is not None
    failed_validation = bool(batch.validation_errors)
    return {
        "id": batch.id, "object": "batch", "endpoint": batch.endpoint, "model": batch.model,
        "input_file_id": batch.input_file_id, "completion_window": "24h", "status": status,
        "output_file_id": batch.output_file_id, "error_file_id": batch.error_file_id,
        "errors": {"object": "list", "data": batch.validation_errors} if failed_validation else None,
        "created_at": int(batch.created_at), "expires_at": int(batch.created_at) + DAY_S,
        "in_progress_at": None, "finalizing_at": None, "completed_at": None, "failed_at": None,
        "expired_at": None, "cancelling_at": None, "cancelled_at": None, **moments,
        "request_counts": {"total": 0 if failed_validation else len(batch.lines),
                           "completed": len(answered) if ended else 0,
                           "failed": len(results) - len(answered) if ended else 0},
        "metadata": batch.metadata,
        "usage": {"input_tokens": usage_in, "input_tokens_details": {"cached_tokens": cached},
                  "output_tokens": usage_out, "output_tokens_details": {"reasoning_tokens": 0},
                  "total_tokens": usage_in + usage_out},
    }


def anthropic_batch_object(batch: LiveBatch, base_url: str) -> dict[str, Any]:
    status = batch.status()
    processing = {"cancelling": "canceling"}.get(status, "ended" if status in TERMINAL else "in_progress")
    kinds = [r.kind for r in batch.results or []]
    ended = batch.results is not None
    created = datetime.fromtimestamp(batch.created_at, UTC)
    cancel_at = batch.reached.get("cancelling")
    end_at = next((batch.reached[s] for s in TERMINAL if s in batch.reached), None)
    return {
        "id": batch.id, "type": "message_batch", "processing_status": processing,
        "request_counts": {"processing": 0 if ended else len(batch.lines),
                           **{kind: kinds.count(kind) for kind in ("succeeded", "errored", "canceled", "expired")}},
        "created_at": rfc3339(created), "expires_at": rfc3339(created + timedelta(days=1)),
        "ended_at": rfc3339(datetime.fromtimestamp(end_at, UTC)) if ended and end_at else None,
        "cancel_initiated_at": rfc3339(datetime.fromtimestamp(cancel_at, UTC)) if cancel_at else None,
        "archived_at": None,
        "results_url": f"{base_url.rstrip('/')}/v1/messages/batches/{batch.id}/results" if ended else None,
    }


def openai_lines(data: bytes, endpoint: str, limits: BatchLimits) -> tuple[list[BatchLine], list[dict[str, Any]]]:
    """The input file's lines, or the validation errors OpenAI would report (errors.data)."""
    if len(data) > limits.openai_bytes:
        return [], [validation_error("file_too_large", None, f"The input file is {len(data)} bytes; a batch input file "
                                f"may be at most {limits.openai_bytes} bytes.")]
    lines: list[BatchLine] = []
    errors: list[dict[str, Any]] = []
    seen: set[str] = set()
    for number, text in enumerate(data.decode("utf-8", errors="replace").splitlines(), start=1):
        if not text.strip():
            continue
        try:
            entry = json.loads(text)
        except json.JSONDecodeError:
            errors.append(validation_error("invalid_json_line", number, "This line is not parseable as valid JSON."))
            continue
        problem = _line_problem(entry, endpoint, seen, lines[0].body.get("model") if lines else None)
        if problem is not None:
            errors.append(validation_error(problem[0], number, problem[1], problem[2]))
            continue
        seen.add(entry["custom_id"])
        lines.append(BatchLine(entry["custom_id"], entry["body"]))
    if len(lines) > limits.openai_requests:
        errors.append(validation_error("too_many_requests", None, f"The input file has {len(lines)} requests; a batch "
                                  f"may hold at most {limits.openai_requests}."))
    if not lines and not errors:
        errors.append(validation_error("empty_file", None, "The input file has no requests."))
    return lines, errors


def _line_problem(entry: Any, endpoint: str, seen: set[str], model: str | None) -> tuple[str, str, str] | None:
    """(code, message, param) of the first problem with one input line, if any."""
    if not isinstance(entry, dict):
        return "invalid_request", "Each line must be a JSON object.", ""
    for name in ("custom_id", "method", "url", "body"):
        if name not in entry:
            return "missing_required_parameter", f"Missing required parameter: '{name}'.", name
    if entry["method"] != "POST":
        return "invalid_method", "The method must be POST.", "method"
    if entry["url"] != endpoint:
        return ("mismatched_endpoint", f"The url '{entry['url']}' does not match the batch endpoint '{endpoint}'.",
                "url")
    if entry["custom_id"] in seen:
        return ("duplicate_custom_id", "The custom_id for this request is a duplicate of another request. The "
                "custom_id parameter must be unique for each request in a batch.", "custom_id")
    if not isinstance(entry["body"], dict) or not entry["body"].get("model"):
        return "missing_required_parameter", "Missing required parameter: 'body.model'.", "body.model"
    if model is not None and entry["body"]["model"] != model:
        return ("model_mismatch", f"The model '{entry['body']['model']}' differs from '{model}' used by the other "
                "requests; a batch input file may use only one model.", "body.model")
    return None


def validation_error(code: str, line: int | None, message: str, param: str | None = None) -> dict[str, Any]:
    """One entry of a failed batch's errors.data (line is 1-based)."""
    return {"code": code, "line": line, "message": message, "param": param or None}


def check_metadata(metadata: Any) -> None:
    if metadata is None:
        return
    if not isinstance(metadata, dict) or len(metadata) > 16 or any(
            len(str(k)) > 64 or not isinstance(v, str) or len(v) > 512 for k, v in metadata.items()):
        raise ApiError(400, "metadata: at most 16 pairs of string keys (<= 64 chars) and string values (<= 512 "
                            "chars).", "metadata")


def openai_result_line(line_id: str, result: LineResult) -> dict[str, Any]:
    if result.kind in ("succeeded", "errored"):
        return {"id": line_id, "custom_id": result.custom_id, "error": None,
                "response": {"status_code": result.status, "request_id": line_id.replace("batch_req_", "req_"),
                             "body": result.body}}
    code, message = (("batch_expired", "This request could not be executed before the completion window expired.")
                     if result.kind == "expired" else
                     ("batch_cancelled", "This request was not executed because the batch was cancelled."))
    return {"id": line_id, "custom_id": result.custom_id, "response": None, "error": {"code": code, "message": message}}


def anthropic_result_line(result: LineResult, request_id: str) -> dict[str, Any]:
    if result.kind == "succeeded":
        return {"custom_id": result.custom_id, "result": {"type": "succeeded", "message": result.body}}
    if result.kind == "errored":
        error = dict(result.body or {})
        error["request_id"] = request_id
        return {"custom_id": result.custom_id, "result": {"type": "errored", "error": error}}
    return {"custom_id": result.custom_id, "result": {"type": result.kind}}


def newest_first(batches: list[LiveBatch], after: str | None, limit: int) -> tuple[list[LiveBatch], bool]:
    """Newest first, starting after the batch `after`."""
    ordered = list(reversed(batches))
    if after is not None:
        ids = [b.id for b in ordered]
        ordered = ordered[ids.index(after) + 1:] if after in ids else []
    return ordered[:limit], len(ordered) > limit


def error_body(provider: str, status: int, message: str) -> dict[str, Any]:
    if provider == "anthropic":
        kind = {400: "invalid_request_error", 404: "not_found_error", 409: "invalid_request_error",
                413: "request_too_large", 429: "rate_limit_error", 529: "overloaded_error"}.get(status, "api_error")
        return {"type": "error", "error": {"type": kind, "message": message}}
    kind = "invalid_request_error" if status < 500 else "server_error"
    return {"error": {"message": message, "type": kind, "param": None, "code": None}}


def api_error_body(provider: str, error: ApiError) -> dict[str, Any]:
    body = error_body(provider, error.status, error.message)
    if provider == "openai":
        body["error"]["param"] = error.param
    return body


def multipart(content_type: str, body: bytes) -> dict[str, tuple[str | None, bytes]]:
    """The parts of a multipart/form-data body: name -> (filename, bytes). The stdlib's MIME parser
    reads form data, so the fake needs no python-multipart."""
    message = BytesParser(policy=HTTP).parsebytes(b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body)
    parts: dict[str, tuple[str | None, bytes]] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if name:
            payload = part.get_payload(decode=True)
            parts[str(name)] = (part.get_filename(), payload if isinstance(payload, bytes) else b"")
    return parts
