"""OpenAI Chat Completions, for OpenAI and any OpenAI-compatible server (vLLM, llama.cpp, Ollama).

The client reads OPENAI_API_KEY / OPENAI_BASE_URL itself; a target's base_url wins over the
environment. The SDK's own retries are off (max_retries=0): the engine owns retries, so every
attempt is recorded in the run store and Retry-After is honoured whatever its size.
"""

from __future__ import annotations

import os
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
            raw = await self._client_for(request.timeout_s).chat.completions.with_raw_response.create(
                **self.request_body(request), extra_headers={"X-Evalbatch-Request-Id": request.request_id})
            response = raw.parse()
        choices = getattr(response, "choices", None)
        if not choices:
            raise ProviderError("malformed response: no choices", kind="transient")
        usage = response.usage
        return Completion(
            text=choices[0].message.content or "",
            input_tokens=usage.prompt_tokens if usage else None,
            output_tokens=usage.completion_tokens if usage else None,
            finish_reason=choices[0].finish_reason,
            rate_limits=rate_limit_headers(raw.headers),
            cached_input_tokens=getattr(getattr(usage, "prompt_tokens_details", None), "cached_tokens", None),
        )

    def _client_for(self, timeout_s: float):
        """The client with the engine's timeout set once (cheaper than passing it on every call)."""
        if self._timeout_s != timeout_s:
            self.client, self._timeout_s = self.client.with_options(timeout=timeout_s), timeout_s
        return self.client

    async def close(self) -> None:
        await self.client.close()
