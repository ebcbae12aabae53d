"""Anthropic Messages API through the official client (ANTHROPIC_API_KEY / ANTHROPIC_BASE_URL).

As with OpenAI, the SDK's retries are off and the engine owns them.
"""

from __future__ import annotations

import os
from typing import Any

import anthropic

from harness.config.suite import TargetSpec
from harness.engine.providers.base import Completion, ProviderError, ProviderRequest
from harness.engine.providers.http_errors import rate_limit_headers, sdk_errors
from harness.engine.providers.registry import register_provider


@register_provider("anthropic")
class AnthropicMessagesProvider:
    enforces_timeout = True  # the SDK's own timeout; the engine need not wrap calls in wait_for
    def __init__(self, target: TargetSpec) -> None:
        self.target = target
        base_url = target.base_url or os.environ.get("ANTHROPIC_BASE_URL")
        api_key = os.environ.get("ANTHROPIC_API_KEY")
        if not api_key:
            raise ProviderError("ANTHROPIC_API_KEY is not set", kind="terminal")
        self.client = anthropic.AsyncAnthropic(api_key=api_key, base_url=base_url, max_retries=0)
        self._timeout_s: float | None = None

    def identity(self) -> dict[str, Any]:
        return {"provider": "anthropic", "model": self.target.model, "base_url": str(self.client.base_url)}

    def request_body(self, request: ProviderRequest) -> dict[str, Any]:
        """The API request body (no headers, no key): also what the response cache is keyed by."""
        params = self.target.params
        system = "\n\n".join(m.content for m in request.messages if m.role == "system")
        messages = [{"role": m.role, "content": m.content} for m in request.messages if m.role != "system"]
        if not messages:
            messages = [{"role": "user", "content": request.prompt or ""}]
        body: dict[str, Any] = {"model": self.target.model, "messages": messages, "max_tokens": params.max_tokens}
        if system:
            body["system"] = system
        if params.stop:
            body["stop_sequences"] = params.stop
        # anthropic 2.x dropped sampling arguments from create() (newer models reject them); send
        # them as raw body fields, and only when the suite sets them, for the models that take them.
        sampling = {name: getattr(params, name) for name in ("temperature", "top_p")
                    if name in params.model_fields_set and getattr(params, name) is not None}
        if sampling:
            body["extra_body"] = sampling
        return body

    async def complete(self, request: ProviderRequest) -> Completion:
        with sdk_errors(anthropic, request.timeout_s):
            raw = await self._client_for(request.timeout_s).messages.with_raw_response.create(
                **self.request_body(request), extra_headers={"X-Evalbatch-Request-Id": request.request_id})
            message = await raw.parse()  # anthropic 2.x: async raw responses
        blocks = getattr(message, "content", None)
        if blocks is None:
            raise ProviderError("malformed response: no content", kind="transient")
        text = "".join(getattr(block, "text", "") for block in blocks)
        usage = message.usage
        return Completion(
            text=text,
            input_tokens=usage.input_tokens if usage else None,
            output_tokens=usage.output_tokens if usage else None,
            finish_reason=message.stop_reason,
            rate_limits=rate_limit_headers(raw.headers),
        )

    def _client_for(self, timeout_s: float):
        """The client with the engine's timeout set once (cheaper than passing it on every call)."""
        if self._timeout_s != timeout_s:
            self.client, self._timeout_s = self.client.with_options(timeout=timeout_s), timeout_s
        return self.client

    async def close(self) -> None:
        await self.client.close()
