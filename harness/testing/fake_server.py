"""A fake LLM server on 127.0.0.1 speaking OpenAI Chat Completions and Anthropic Messages.

The real `openai` and `anthropic` clients talk to it over real HTTP. Replies are scripted,
faults are injected by rules (status codes with Retry-After, slow replies, malformed
bodies), and every request is counted per evalbatch request ID so tests can prove that
nothing was sent twice.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
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

REQUEST_ID_HEADER = "x-evalbatch-request-id"


@dataclass
class FaultRule:
    """Applies to the first `times` attempts of every request whose prompt contains `match`."""

    status: int | None = None
    times: int = 1
    match: str = ""
    retry_after: float | None = None
    delay_s: float = 0.0
    malformed: bool = False
    error_body: dict[str, Any] | None = None


@dataclass
class ServerLog:
    attempts: Counter = field(default_factory=Counter)
    successes: Counter = field(default_factory=Counter)
    total: int = 0

    def reset(self) -> None:
        self.attempts.clear()
        self.successes.clear()
        self.total = 0


Replier = Callable[[str], str]


def keyword_replier(rules: dict[str, str], default: str = "ok") -> Replier:
    """Replies with the value of the first key found in the prompt's last message."""

    def reply(prompt: str) -> str:
        return next((answer for key, answer in rules.items() if key in prompt), default)

    return reply


class FakeLLMServer:
    def __init__(self, replier: Replier | None = None, faults: list[FaultRule] | None = None,
                 latency_s: float = 0.0) -> None:
        self.replier = replier or keyword_replier({})
        self.faults = faults or []
        self.latency_s = latency_s
        self.log = ServerLog()
        self._lock = threading.Lock()
        self.app = Starlette(routes=[
            Route("/v1/chat/completions", self._openai, methods=["POST"]),
            Route("/v1/messages", self._anthropic, methods=["POST"]),
            Route("/_fake/stats", self._stats, methods=["GET"]),
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
        config = uvicorn.Config(self.app, log_level="warning", access_log=False, lifespan="off",
                                timeout_keep_alive=30, backlog=2048)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]}, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("fake server did not start")
            time.sleep(0.01)
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

    # -- request handling -------------------------------------------------------------------
    async def _prepare(self, request: Request) -> tuple[dict, str, FaultRule | None]:
        body = await request.json()
        prompt = _last_message(body)
        request_id = request.headers.get(REQUEST_ID_HEADER) or json.dumps(body, sort_keys=True)
        with self._lock:
            self.log.total += 1
            self.log.attempts[request_id] += 1
            attempt = self.log.attempts[request_id]
        fault = next((rule for rule in self.faults if rule.match in prompt and attempt <= rule.times), None)
        delay = self.latency_s + (fault.delay_s if fault else 0.0)
        if delay:
            await asyncio.sleep(delay)
        return body, request_id, fault

    def _fault_response(self, fault: FaultRule, style: str) -> Response | None:
        if fault.malformed:
            return Response('{"id": "broken", "choices": [', media_type="application/json")
        if fault.status is None:
            return None
        headers = {"retry-after": f"{fault.retry_after:g}"} if fault.retry_after is not None else {}
        if fault.error_body is not None:
            body = fault.error_body
        elif style == "anthropic":
            body = {"type": "error", "error": {"type": _anthropic_error_type(fault.status), "message": "injected"}}
        else:
            body = {"error": {"message": "injected fault", "type": "server_error", "code": None}}
        return JSONResponse(body, status_code=fault.status, headers=headers)

    def _count_success(self, request_id: str) -> None:
        with self._lock:
            self.log.successes[request_id] += 1

    async def _openai(self, request: Request) -> Response:
        body, request_id, fault = await self._prepare(request)
        if fault and (failed := self._fault_response(fault, "openai")) is not None:
            return failed
        text = self.replier(_last_message(body))
        self._count_success(request_id)
        usage_in, usage_out = _approx_tokens(json.dumps(body["messages"])), _approx_tokens(text)
        return JSONResponse({
            "id": f"chatcmpl-{self.log.total}", "object": "chat.completion", "created": int(time.time()),
            "model": body.get("model", "fake"),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": usage_in, "completion_tokens": usage_out, "total_tokens": usage_in + usage_out},
        }, headers={"x-ratelimit-limit-requests": "10000", "x-ratelimit-remaining-requests": "9999",
                    "x-ratelimit-reset-requests": "6ms"})

    async def _anthropic(self, request: Request) -> Response:
        body, request_id, fault = await self._prepare(request)
        if fault and (failed := self._fault_response(fault, "anthropic")) is not None:
            return failed
        text = self.replier(_last_message(body))
        self._count_success(request_id)
        usage_in, usage_out = _approx_tokens(json.dumps(body["messages"])), _approx_tokens(text)
        return JSONResponse({
            "id": f"msg_{self.log.total}", "type": "message", "role": "assistant", "model": body.get("model", "fake"),
            "content": [{"type": "text", "text": text}], "stop_reason": "end_turn", "stop_sequence": None,
            "usage": {"input_tokens": usage_in, "output_tokens": usage_out},
        }, headers={"anthropic-ratelimit-requests-limit": "4000", "anthropic-ratelimit-requests-remaining": "3999"})

    async def _stats(self, request: Request) -> Response:
        with self._lock:
            return JSONResponse({"total": self.log.total, "attempts": dict(self.log.attempts),
                                 "successes": dict(self.log.successes)})


def _last_message(body: dict) -> str:
    """Both APIs carry the prompt in the last entry of `messages`."""
    return str(body.get("messages", [{}])[-1].get("content", ""))


def _approx_tokens(text: str) -> int:
    return max(1, len(text) // 4)


def _anthropic_error_type(status: int) -> str:
    return {400: "invalid_request_error", 401: "authentication_error", 429: "rate_limit_error",
            500: "api_error", 529: "overloaded_error"}.get(status, "api_error")


def main() -> None:
    """`python -m harness.testing.fake_server`: serve until killed (for benchmarks and manual tests)."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--reply", default="ok", help="text every request gets back")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before each reply")
    args = parser.parse_args()
    server = FakeLLMServer(keyword_replier({}, default=args.reply), latency_s=args.latency).start()
    print(server.base_url, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
