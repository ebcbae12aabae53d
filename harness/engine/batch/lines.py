"""A stored request's API body, built by the target's realtime provider: a batch line carries the
very body a realtime call would send, so both modes get the same answers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from harness.config.prompts import ChatMessage
from harness.engine.providers.base import ProviderRequest, RequestBodies
from harness.engine.store import StoredRequest


@dataclass(frozen=True)
class BodyBuilder:
    provider: RequestBodies

    def body(self, request: StoredRequest) -> dict[str, Any]:
        payload = request.payload
        messages = tuple(ChatMessage(m["role"], m["content"]) for m in payload.get("messages") or ())
        return self.provider.request_body(ProviderRequest(request.request_id, payload.get("prompt"), messages))
