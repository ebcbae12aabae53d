"""OpenAI Chat Completions, for OpenAI and any OpenAI-compatible server (vLLM, llama.cpp, Ollama).

The client reads OPENAI_API_KEY / OPENAI_BASE_URL itself; a target's base_url wins over the
environment. The SDK's own retries are off (max_retries=0): the engine owns retries, so every
attempt is recorded in the run store and Retry-After is honoured whatever its size.

The body is sent with the client's documented `post` (its auth, headers, timeout and error
classes, as `chat.completions.create` uses them) and the reply is read as plain JSON: the body
is built from plain values here, so the SDK's typed-parameter transform has nothing to change,
and only a few fields of the reply are read, so building its pydantic model is wasted. Together
they were about a quarter of the client's CPU per request, which at high concurrency is what
bounds a run's rate.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from functools import cache
from typing import Any

import openai

from harness.config.suite import TargetSpec
from harness.engine.providers.base import Completion, ProviderError, ProviderRequest
from harness.engine.providers.http_errors import rate_limit_headers, sdk_errors
from harness.engine.providers.registry import register_provider

# Local OpenAI-compatible servers (vLLM, llama.cpp, Ollama) accept any key.
_PLACEHOLDER_KEY = "not-needed-for-local-servers"


@register_provider("openai")
class OpenAIChatProvider:
    enforces_timeout = True  # the SDK's own timeout; the engine need not wrap calls in wait_for
    def __init__(self, target: TargetSpec) -> None:
        self.target = target
        base_url = target.base_url or os.environ.get("OPENAI_BASE_URL")
        api_key = os.environ.get("OPENAI_API_KEY") or (_PLACEHOLDER_KEY if base_url else None)
        if api_key is None:
            raise ProviderError("OPENAI_API_KEY is not set (or set base_url for a local server)", kind="terminal")
        self.client = openai.AsyncOpenAI(api_key=api_key, base_url=base_url, max_retries=0)
        self._timeout_s: float | None = None

    def identity(self) -> dict[str, Any]:
        return {"provider": "openai", "model": self.target.model, "base_url": str(self.client.base_url)}

    def request_body(self, request: ProviderRequest) -> dict[str, Any]:
        """The API request body (no headers, no key): also what the response cache is keyed by."""
        params = self.target.params
        messages = [{"role": m.role, "content": m.content} for m in request.messages]
        if not messages:
            messages = [{"role": "user", "content": request.prompt or ""}]
        body: dict[str, Any] = {"model": self.target.model, "messages": messages,
                                "temperature": params.temperature, "max_tokens": params.max_tokens}
        if params.stop:
            body["stop"] = params.stop
        if params.top_p is not None:
            body["top_p"] = params.top_p
        if params.seed is not None:
            body["seed"] = params.seed
        return body

    async def complete(self, request: ProviderRequest) -> Completion:
        with sdk_errors(openai, request.timeout_s):
            reply = await self._client_for(request.timeout_s).post(
                "/chat/completions", body=self.request_body(request), cast_to=_http_response_class(),
                options={"headers": {"X-Evalbatch-Request-Id": request.request_id}, "security": {"bearer_auth": True}})
            return _completion(json.loads(reply.content), reply.headers)

    def _client_for(self, timeout_s: float):
        """The client with the engine's timeout set once (cheaper than passing it on every call)."""
        if self._timeout_s != timeout_s:
            self.client, self._timeout_s = self.client.with_options(timeout=timeout_s), timeout_s
        return self.client

    async def close(self) -> None:
        await self.client.close()


def _completion(body: Any, headers: Mapping[str, str]) -> Completion:
    """The answer in a Chat Completions reply; a reply without one is malformed (transient: a
    broken reply from a healthy server is worth another attempt)."""
    choices = body.get("choices") if isinstance(body, dict) else None
    first = choices[0] if isinstance(choices, list) and choices else None
    message = first.get("message") if isinstance(first, dict) else None
    if not isinstance(first, dict) or not isinstance(message, dict):
        raise ProviderError("malformed response: no choices", kind="transient")
    text = message.get("content")
    if text is not None and not isinstance(text, str):
        raise ProviderError(f"malformed response: content is {type(text).__name__}, not text", kind="transient")
    usage = body.get("usage") if isinstance(body.get("usage"), dict) else {}
    details = usage.get("prompt_tokens_details")
    return Completion(
        text=text or "",
        input_tokens=_count(usage.get("prompt_tokens")),
        output_tokens=_count(usage.get("completion_tokens")),
        finish_reason=first.get("finish_reason") if isinstance(first.get("finish_reason"), str) else None,
        rate_limits=rate_limit_headers(headers),
        cached_input_tokens=_count(details.get("cached_tokens")) if isinstance(details, dict) else None,
    )


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


@cache
def _http_response_class() -> type:
    """The Response class of the HTTP library the SDK is built on (httpx; httpx2 in newer SDKs):
    asked for it, the client returns the reply as it came, status errors still raised as the
    SDK's exceptions."""
    for base in openai.DefaultAsyncHttpxClient.__mro__:
        response = getattr(sys.modules.get(base.__module__.partition(".")[0]), "Response", None)
        if base.__name__ == "AsyncClient" and isinstance(response, type):
            return response
    raise RuntimeError("cannot tell which HTTP library the openai SDK uses")
