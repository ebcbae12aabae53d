"""The one interface every provider implements, and the error shape the engine retries on."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

if TYPE_CHECKING:  # for annotations only: the run store reads Completion without the config's imports
    from harness.config.prompts import ChatMessage
    from harness.config.suite import TargetSpec

ErrorKind = Literal["transient", "terminal"]


@dataclass(frozen=True)
class ProviderRequest:
    """What the engine hands a provider: a rendered prompt (text or chat) and the request's ID."""

    request_id: str
    prompt: str | None = None
    messages: tuple[ChatMessage, ...] = ()
    timeout_s: float = 60.0


@dataclass(frozen=True)
class Completion:
    text: str
    input_tokens: int | None = None
    output_tokens: int | None = None
    finish_reason: str | None = None
    rate_limits: dict[str, str] = field(default_factory=dict)
    cached_input_tokens: int | None = None
    """The part of input_tokens the provider's prompt cache served (billed at the cached price)."""


class ProviderError(Exception):
    """A failed call, classified so the engine knows whether trying again can help."""

    def __init__(self, message: str, *, kind: ErrorKind, status: int | None = None,
                 retry_after_s: float | None = None, rate_limits: dict[str, str] | None = None,
                 no_reply: bool = False) -> None:
        super().__init__(message)
        self.no_reply = no_reply
        """The connection failed before any HTTP reply: the lane gives back what the request was
        counted as (usually the server never saw it; a dropped connection is counted back too)."""
        self.kind = kind
        self.status = status
        self.retry_after_s = retry_after_s
        self.rate_limits = rate_limits or {}
        """The reply's rate-limit headers (a 429 carries them too), for the lane's pacer."""

    def describe(self) -> str:
        return f"HTTP {self.status}: {self}" if self.status else str(self)


class Provider(Protocol):
    """One per target. Created once per run; `close` is awaited when the run ends."""

    def __init__(self, target: TargetSpec) -> None: ...

    async def complete(self, request: ProviderRequest) -> Completion: ...

    async def close(self) -> None: ...

    def identity(self) -> dict[str, Any]:
        """What the manifest records about this model (never secrets)."""
        ...


@runtime_checkable
class RequestBodies(Protocol):
    """Optional for a provider: the body it would send for a request (never headers or keys).
    Identical bodies are identical requests: a run sends them once, and the response cache is
    keyed by them (harness/engine/reuse.py)."""

    def request_body(self, request: ProviderRequest) -> dict[str, Any]: ...
