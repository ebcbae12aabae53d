"""Classifies HTTP failures from the official SDKs into transient (retry) or terminal (do not)."""

from __future__ import annotations

import email.utils
import json
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from http import HTTPStatus
from types import ModuleType

from harness.engine.providers.base import ErrorKind, ProviderError

TRANSIENT_STATUSES = {408, 409, 429, 500, 502, 503, 504, 529}
_CONTEXT_LENGTH_MARKERS = ("context_length", "context length", "maximum context", "too many tokens", "prompt is too long")
# A 429 that is about money, not pace: waiting will not help. Matched against the error's code
# and type, never its prose: OpenAI's rate-limit message for low tiers mentions billing too.
_QUOTA_CODES = frozenset({"insufficient_quota", "billing_hard_limit_reached", "enforced_spend_limit_reached",
                          "billing_error", "billing_not_active"})


def classify_status(status: int, body_text: str) -> ErrorKind:
    if status == 429 and _error_codes(body_text) & _QUOTA_CODES:
        return "terminal"
    if status in TRANSIENT_STATUSES or status >= 500:
        return "transient"
    return "terminal"


def _error_codes(body_text: str) -> set[str]:
    """The code/type strings of an error body, at any depth (OpenAI error.code/type, Anthropic
    error.type and error.details.error_code). A body that is not JSON: the quota codes it names."""
    try:
        body = json.loads(body_text)
    except ValueError:
        return {code for code in _QUOTA_CODES if code in body_text}
    codes: set[str] = set()
    stack = [body]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            codes.update(str(value) for key, value in node.items()
                         if key in ("code", "type", "error_code") and isinstance(value, str))
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return codes


def is_context_length_error(body_text: str) -> bool:
    lowered = body_text.lower()
    return any(marker in lowered for marker in _CONTEXT_LENGTH_MARKERS)


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """retry-after-ms first, then retry-after as seconds or an HTTP date (as the SDKs read them)."""
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, parsed.timestamp() - time.time())


def rate_limit_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The x-ratelimit-* / anthropic-ratelimit-* headers, kept for the limiter to learn from."""
    return {k.lower(): v for k, v in headers.items()
            if k.lower().startswith(("x-ratelimit-", "anthropic-ratelimit-"))}


def status_error(status: int, body_text: str, headers: Mapping[str, str], where: str = "") -> ProviderError:
    """The ProviderError for an HTTP error reply, with its retry class, Retry-After and rate-limit
    headers. A reply without a message names the status and where it came from instead (an
    empty 404 usually means a base_url without /v1)."""
    kind: ErrorKind = "terminal" if is_context_length_error(body_text) else classify_status(status, body_text)
    message = shorten(body_text)
    if not message:
        phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "error"
        message = f"{phrase} with an empty reply from {where or 'the server'}"
        if status == 404:
            message += " (is base_url right? OpenAI-compatible servers usually want it to end in /v1)"
    return ProviderError(message, kind=kind, status=status, retry_after_s=retry_after_seconds(headers),
                         rate_limits=rate_limit_headers(headers))


def shorten(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "..."


@contextmanager
def sdk_errors(sdk: ModuleType, timeout_s: float) -> Iterator[None]:
    """Turns the exceptions of the `openai` or `anthropic` SDK (they share their shapes) into
    classified ProviderErrors."""
    try:
        yield
    except sdk.APITimeoutError:
        raise ProviderError(f"timed out after {timeout_s:g} s", kind="transient") from None
    except sdk.APIConnectionError as exc:
        raise ProviderError(f"connection error: cannot reach {_where(exc)}: {_cause(exc)}", kind="transient",
                            no_reply=True) from None
    except sdk.APIStatusError as exc:
        raise status_error(exc.status_code, exc.response.text, exc.response.headers, _where(exc)) from None
    except (sdk.APIResponseValidationError, ValueError) as exc:
        raise ProviderError(f"malformed response: {exc}", kind="transient") from None


def _where(exc: Exception) -> str:
    """The method and URL of the failed call (the SDK error carries its request)."""
    request = getattr(exc, "request", None)
    if request is None:
        return "the server"
    return f"{request.method} {request.url}"


def _cause(exc: Exception) -> str:
    """The transport's own words (e.g. [Errno 111] Connection refused) rather than the SDK's
    generic 'Connection error.'."""
    causes: list[str] = []
    cause = exc.__cause__ or exc.__context__
    while cause is not None and len(causes) < 5:
        text = str(cause).strip()
        if text and text not in causes:
            causes.append(text)
        cause = cause.__cause__ or cause.__context__
    return causes[-1] if causes else str(exc)
