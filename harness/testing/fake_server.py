"""A fake LLM server on 127.0.0.1 speaking OpenAI Chat Completions and Anthropic Messages.

The real `openai` and `anthropic` clients talk to it over real HTTP. Replies are scripted;
faults are injected by rules (status codes with Retry-After, slow replies, malformed bodies,
quota 429s) or at random for a seeded fraction of attempts (429, 5xx, 529, dropped
connections, replies past the timeout, malformed JSON); per-minute request and token limits
are enforced in windows, with the providers' rate-limit headers on every reply (a server with
no limit sends none, as vLLM and llama.cpp do: a client paces by any limit a server states).
Every request is counted per evalbatch request ID so tests can prove that nothing was answered twice.
The providers' Batch APIs are mounted from harness/testing/fake_batches.py (`server.batches`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from harness.testing.fake_batch_lifecycle import BatchLimits, BatchScript
from harness.testing.fake_batches import FakeBatches
from harness.testing.fake_limits import (
    FAULT_KINDS,
    RandomFaults,
    WindowLimiter,
    WindowLimits,
    approx_tokens,
    limit_headers,
    request_cost,
    retry_after_headers,
)

REQUEST_ID_HEADER = "x-evalbatch-request-id"
_TRANSPORT_KEY = "fake.transport"


@dataclass
class FaultRule:
    """Applies to the first `times` attempts of every request whose prompt contains `match`.

    `quota` makes it a 429 about money (OpenAI insufficient_quota, Anthropic's spend limit),
    which clients must not retry."""

    status: int | None = None
    times: int = 1
    match: str = ""
    retry_after: float | None = None
    delay_s: float = 0.0
    malformed: bool = False
    error_body: dict[str, Any] | None = None
    quota: bool = False


@dataclass
class ServerLog:
    """What the server saw. `successes` counts well-formed 200 replies: a request answered twice
    shows as 2. Times are time.monotonic(), comparable across processes on one machine."""

    attempts: Counter = field(default_factory=Counter)
    successes: Counter = field(default_factory=Counter)
    total: int = 0
    accepted_times: list[float] = field(default_factory=list)
    """Arrival of every request the rate limiter admitted (it counts against its window); with no
    faults injected these are exactly the 200 replies. Every request when no limit is set."""
    accepted_tokens: list[int] = field(default_factory=list)
    """What each of accepted_times counted against the token limit (0 when no limit is set)."""
    rejected_429: list[float] = field(default_factory=list)
    """Arrival of every request answered 429 (over the limit, injected, or quota)."""
    limited: int = 0
    """429s for being over the rate limit (the rest of rejected_429 were injected)."""
    faults: Counter = field(default_factory=Counter)
    """Random faults injected, by kind."""

    def reset(self) -> None:
        self.attempts.clear()
        self.successes.clear()
        self.total = 0
        self.accepted_times.clear()
        self.accepted_tokens.clear()
        self.rejected_429.clear()
        self.limited = 0
        self.faults.clear()

    def snapshot(self) -> dict[str, Any]:
        return {"total": self.total, "attempts": dict(self.attempts), "successes": dict(self.successes),
                "accepted_times": list(self.accepted_times), "accepted_tokens": list(self.accepted_tokens),
                "rejected_429": list(self.rejected_429),
                "limited": self.limited, "faults": dict(self.faults)}


Replier = Callable[[str], str]


def keyword_replier(rules: dict[str, str], default: str = "ok") -> Replier:
    """Replies with the value of the first key found in the prompt's last message."""

    def reply(prompt: str) -> str:
        return next((answer for key, answer in rules.items() if key in prompt), default)

    return reply


class FakeLLMServer:
    """`rpm`/`tpm` are per-minute limits enforced in tumbling windows of `window_s` seconds
    (capacity rpm * window_s / 60 per window; see harness/testing/fake_limits.py). The headers and
    429 bodies follow the endpoint's provider unless `limit_style` names one. `fault_rate` of
    attempts get one of `fault_kinds`, chosen by a RNG seeded with (fault_seed, request ID,
    attempt); a `slow` fault answers 503 after `slow_s`, so set it past the client's timeout."""

    def __init__(self, replier: Replier | None = None, faults: list[FaultRule] | None = None,
                 latency_s: float = 0.0, *, rpm: float | None = None, tpm: float | None = None,
                 window_s: float = 60.0, limit_style: str | None = None, fault_rate: float = 0.0,
                 fault_seed: int = 0, fault_kinds: tuple[str, ...] = FAULT_KINDS, slow_s: float = 2.0) -> None:
        if limit_style not in (None, "openai", "anthropic"):
            raise ValueError("limit_style must be openai or anthropic")
        self.replier = replier or keyword_replier({})
        self.faults = faults or []
        self.latency_s = latency_s
        self.cached_share = 0.0
        """OpenAI replies report this share of prompt tokens as served by the prompt cache."""
        self.limits = WindowLimits(rpm, tpm, window_s) if rpm is not None or tpm is not None else None
        self.limit_style = limit_style
        self.random_faults = RandomFaults(fault_rate, fault_seed, tuple(fault_kinds), slow_s) if fault_rate else None
        self.log = ServerLog()
        self._lock = threading.Lock()
        self._limiter: WindowLimiter | None = None
        self.batches = FakeBatches(self.reply_body)
        """OpenAI /v1/files + /v1/batches and Anthropic /v1/messages/batches (harness/testing/fake_batches.py),
        answered by the same fake model."""
        self.app = Starlette(routes=[*self.batches.routes(),
            Route("/v1/chat/completions", self._openai, methods=["POST"]),
            Route("/v1/messages", self._anthropic, methods=["POST"]),
            Route("/_fake/stats", self._stats, methods=["GET"]),
            Route("/_fake/reset", self._reset, methods=["POST"]),
        ])
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> FakeLLMServer:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(self._asgi, log_level="warning", access_log=False, lifespan="off", interface="asgi3",
                                timeout_keep_alive=30, backlog=2048)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]}, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("fake server did not start")
            time.sleep(0.01)
        if self.limits is not None:
            self._limiter = WindowLimiter(self.limits, time.monotonic())
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> FakeLLMServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def accepted_per_window(self) -> list[int]:
        """Admitted requests in each of the limiter's windows, from the first to the last one used."""
        if self._limiter is None:
            raise RuntimeError("no rate limit is set")
        with self._lock:
            windows = Counter(self._limiter.window_of(moment) for moment in self.log.accepted_times)
        return [windows[w] for w in range(min(windows), max(windows) + 1)] if windows else []

    async def _asgi(self, scope: dict, receive: Callable, send: Callable) -> None:
        # uvicorn's receive is a method of the connection's request cycle, which holds the
        # transport: the only handle that can drop a connection without replying.
        scope[_TRANSPORT_KEY] = getattr(getattr(receive, "__self__", None), "transport", None)
        await self.app(scope, receive, send)

    # -- request handling -------------------------------------------------------------------
    async def _handle(self, request: Request, style: str) -> Response:
        body = await request.json()
        prompt = _last_message(body)
        request_id = request.headers.get(REQUEST_ID_HEADER) or json.dumps(body, sort_keys=True)
        arrived = time.monotonic()
        with self._lock:
            self.log.total += 1
            self.log.attempts[request_id] += 1
            attempt = self.log.attempts[request_id]
            cost = request_cost(body) if self._limiter else 0
            admission = self._limiter.admit(arrived, cost) if self._limiter else None
            if admission is None or admission.admitted:
                self.log.accepted_times.append(arrived)
                self.log.accepted_tokens.append(cost)
        headers = limit_headers(self.limits, admission, self.limit_style or style) \
            if self.limits is not None and admission is not None else {}
        if admission is not None and not admission.admitted:
            return self._over_limit(arrived, admission.exceeded or "requests", admission.reset_s, headers, style)
        rule = next((rule for rule in self.faults if rule.match in prompt and attempt <= rule.times), None)
        delay = self.latency_s + (rule.delay_s if rule else 0.0)
        if delay:
            await asyncio.sleep(delay)
        if rule is not None and (failed := self._rule_response(rule, style, headers, arrived)) is not None:
            return failed
        kind = self.random_faults.pick(request_id, attempt) if self.random_faults else None
        if kind is not None:
            return await self._random_fault(kind, request, style, headers, arrived)
        with self._lock:
            self.log.successes[request_id] += 1
            number = self.log.total
        return JSONResponse(self.reply_body(body, style, number), headers=headers)

    def reply_body(self, body: dict[str, Any], style: str, number: int) -> dict[str, Any]:
        """The fake model's answer to one request body, as the provider's reply body (realtime and batch alike)."""
        text = self.replier(_last_message(body))
        usage_in, usage_out = approx_tokens(json.dumps(body["messages"])), approx_tokens(text)
        if style == "anthropic":
            return {
                "id": f"msg_{number}", "type": "message", "role": "assistant", "model": body.get("model", "fake"),
                "content": [{"type": "text", "text": text}], "stop_reason": "end_turn", "stop_sequence": None,
                "usage": {"input_tokens": usage_in, "output_tokens": usage_out},
            }
        return {
            "id": f"chatcmpl-{number}", "object": "chat.completion", "created": int(time.time()),
            "model": body.get("model", "fake"),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": usage_in, "completion_tokens": usage_out, "total_tokens": usage_in + usage_out,
                      "prompt_tokens_details": {"cached_tokens": int(usage_in * self.cached_share)}},
        }

    def _over_limit(self, arrived: float, exceeded: str, reset_s: float, headers: dict[str, str],
                    style: str) -> Response:
        with self._lock:
            self.log.rejected_429.append(arrived)
            self.log.limited += 1
        message = f"Rate limit reached for {exceeded} per min. Please try again in {reset_s:.3f}s."
        return JSONResponse(_rate_limit_body(style, exceeded, message), status_code=429,
                            headers={**headers, **retry_after_headers(reset_s)})

    def _rule_response(self, rule: FaultRule, style: str, headers: dict[str, str], arrived: float) -> Response | None:
        if rule.malformed:
            return Response('{"id": "broken", "choices": [', media_type="application/json", headers=headers)
        status = 429 if rule.quota else rule.status
        if status is None:
            return None
        if rule.retry_after is not None:
            headers = {**headers, "retry-after": f"{rule.retry_after:g}"}
        if rule.error_body is not None:
            body = rule.error_body
        elif rule.quota:
            body = _quota_body(style)
        else:
            body = _error_body(style, status, "injected fault")
        if status == 429:
            with self._lock:
                self.log.rejected_429.append(arrived)
        return JSONResponse(body, status_code=status, headers=headers)

    async def _random_fault(self, kind: str, request: Request, style: str, headers: dict[str, str],
                            arrived: float) -> Response:
        assert self.random_faults is not None
        with self._lock:
            self.log.faults[kind] += 1
        if kind == "reset":
            _drop_connection(request.scope.get(_TRANSPORT_KEY))
            await asyncio.sleep(0.01)  # connection_lost runs first, so uvicorn discards this reply
            return Response(status_code=500)
        if kind == "malformed":
            return Response('{"id": "broken", "choices": [', media_type="application/json", headers=headers)
        if kind == "slow":
            # Past the client's timeout, then a failure: the server never answers a request the
            # client has given up on, so "answered twice" stays provable.
            await asyncio.sleep(self.random_faults.slow_s)
            return JSONResponse(_error_body(style, 503, "slow fault"), status_code=503, headers=headers)
        if kind == "429":
            with self._lock:
                self.log.rejected_429.append(arrived)
            wait_s = self.random_faults.retry_after_ms / 1000
            return JSONResponse(_rate_limit_body(style, "requests", "Rate limit reached for requests (injected)"),
                                status_code=429, headers={**headers, **retry_after_headers(wait_s)})
        status = int(kind)
        return JSONResponse(_error_body(style, status, "injected fault"), status_code=status, headers=headers)

    async def _openai(self, request: Request) -> Response:
        return await self._handle(request, "openai")

    async def _anthropic(self, request: Request) -> Response:
        return await self._handle(request, "anthropic")

    async def _stats(self, request: Request) -> Response:
        with self._lock:
            stats = self.log.snapshot()
        stats["window_origin"] = self._limiter.origin if self._limiter else None
        stats["window_s"] = self.limits.window_s if self.limits else None
        return JSONResponse(stats)

    async def _reset(self, request: Request) -> Response:
        with self._lock:
            self.log.reset()
            self.batches.log.reset()
        return JSONResponse({"reset": True})


def _drop_connection(transport: Any) -> None:
    """Closes the connection at once with a TCP reset: the client sees no reply at all."""
    if transport is None:
        raise RuntimeError("the server runs without uvicorn's transport; cannot drop a connection")
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


def _error_body(style: str, status: int, message: str) -> dict[str, Any]:
    if style == "anthropic":
        return {"type": "error", "error": {"type": _anthropic_error_type(status), "message": message}}
    kind = "overloaded_error" if status == 529 else "server_error"
    return {"error": {"message": message, "type": kind, "code": None}}


def _rate_limit_body(style: str, exceeded: str, message: str) -> dict[str, Any]:
    if style == "anthropic":
        return {"type": "error", "error": {"type": "rate_limit_error", "message": message}}
    return {"error": {"message": message, "type": exceeded, "code": "rate_limit_exceeded"}}


def _quota_body(style: str) -> dict[str, Any]:
    if style == "anthropic":
        return {"type": "error", "error": {"type": "rate_limit_error", "message": "Spend limit reached",
                                           "details": {"error_code": "enforced_spend_limit_reached"}}}
    return {"error": {"message": "You exceeded your current quota, please check your plan and billing details.",
                      "type": "insufficient_quota", "code": "insufficient_quota"}}


def _last_message(body: dict) -> str:
    """Both APIs carry the prompt in the last entry of `messages`."""
    return str(body.get("messages", [{}])[-1].get("content", ""))


def _anthropic_error_type(status: int) -> str:
    return {400: "invalid_request_error", 401: "authentication_error", 429: "rate_limit_error",
            500: "api_error", 529: "overloaded_error"}.get(status, "api_error")


def main() -> None:
    """`python -m harness.testing.fake_server`: serve until killed (for benchmarks and manual tests)."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--reply", default="ok", help="text every request gets back")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before each reply")
    parser.add_argument("--rpm", type=float, help="requests per minute to enforce")
    parser.add_argument("--tpm", type=float, help="tokens per minute to enforce (prompt estimate + max_tokens)")
    parser.add_argument("--window", type=float, default=60.0, help="length of a limit window in seconds")
    parser.add_argument("--limit-style", choices=["openai", "anthropic"], help="headers and 429 bodies of this provider")
    parser.add_argument("--fault-rate", type=float, default=0.0, help="fraction of attempts that get a random fault")
    parser.add_argument("--fault-seed", type=int, default=0)
    parser.add_argument("--fault-kinds", default=",".join(FAULT_KINDS), help="comma-separated fault kinds")
    parser.add_argument("--slow", type=float, default=2.0, help="seconds a slow fault waits before its 503")
    parser.add_argument("--batch-script", type=json.loads, default={},
                        help='JSON of a BatchScript for every batch, e.g. {"outcome": "expired", "done_lines": 2}')
    parser.add_argument("--batch-limits", type=json.loads, default={},
                        help='JSON of BatchLimits, e.g. {"openai_requests": 3, "anthropic_bytes": 4000}')
    args = parser.parse_args()
    server = FakeLLMServer(keyword_replier({}, default=args.reply), latency_s=args.latency, rpm=args.rpm,
                           tpm=args.tpm, window_s=args.window, limit_style=args.limit_style,
                           fault_rate=args.fault_rate, fault_seed=args.fault_seed,
                           fault_kinds=tuple(args.fault_kinds.split(",")), slow_s=args.slow)
    server.batches.script = BatchScript.from_dict(args.batch_script)
    server.batches.limits = BatchLimits.from_dict(args.batch_limits)
    server.start()
    print(server.base_url, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
