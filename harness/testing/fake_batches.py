"""The fake server's Batch APIs: OpenAI /v1/files and /v1/batches, Anthropic /v1/messages/batches.

Objects and result lines have the providers' shapes (openai.types.Batch and FileObject,
anthropic.types.messages.MessageBatch and MessageBatchIndividualResponse), so the real clients
parse them. Lifecycles are scripted (harness/testing/fake_batch_lifecycle.py): a batch advances one
stage per retrieve. Inputs are validated as the providers do: an OpenAI batch with a bad line fails
at validation with errors.data naming the line; an Anthropic create with a bad custom_id is a 400.
Control: `FakeBatches.script` / `queue()` / `limits` in process, or POST /_fake/batches/script and
GET /_fake/batches/stats for a server in another process.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from harness.testing.fake_batch_lifecycle import (
    TERMINAL,
    BatchLimits,
    BatchLine,
    BatchLog,
    BatchScript,
    LiveBatch,
    line_error,
    settle,
)
from harness.testing.fake_batch_wire import (
    ANTHROPIC_CUSTOM_ID,
    OPENAI_ENDPOINTS,
    ApiError,
    StoredFile,
    anthropic_batch_object,
    anthropic_result_line,
    api_error_body,
    check_metadata,
    error_body,
    multipart,
    newest_first,
    openai_batch_object,
    openai_lines,
    openai_result_line,
    validation_error,
)

SERVED_ENDPOINT = "/v1/chat/completions"
SDK_ONLY_ARGUMENTS = frozenset({"extra_body", "extra_headers", "extra_query", "timeout"})

ReplyFn = Callable[[dict[str, Any], str, int], dict[str, Any]]
"""The fake model: (request body, "openai" | "anthropic", reply number) -> the provider's reply body."""


@dataclass
class FakeBatches:
    reply: ReplyFn
    script: BatchScript = field(default_factory=BatchScript)
    """The script of every batch created when the queue is empty."""
    limits: BatchLimits = field(default_factory=BatchLimits)
    log: BatchLog = field(default_factory=BatchLog)

    def __post_init__(self) -> None:
        self._next: deque[BatchScript] = deque()
        self._files: dict[str, StoredFile] = {}
        self._batches: dict[str, LiveBatch] = {}
        self._numbers = itertools.count(1)
        self._lock = threading.Lock()

    def queue(self, *scripts: BatchScript) -> None:
        """Scripts for the next batches created, in order (then `script` again)."""
        with self._lock:
            self._next.extend(scripts)

    def batch(self, batch_id: str) -> LiveBatch:
        return self._batches[batch_id]

    def batches(self) -> list[LiveBatch]:
        return list(self._batches.values())

    def file_bytes(self, file_id: str) -> bytes:
        return self._files[file_id].data

    def routes(self) -> list[Route]:
        return [
            Route("/v1/files", self._upload, methods=["POST"]),
            Route("/v1/files", self._list_files, methods=["GET"]),
            Route("/v1/files/{file_id}", self._retrieve_file, methods=["GET"]),
            Route("/v1/files/{file_id}", self._delete_file, methods=["DELETE"]),
            Route("/v1/files/{file_id}/content", self._file_content, methods=["GET"]),
            Route("/v1/batches", self._openai_create, methods=["POST"]),
            Route("/v1/batches", self._openai_list, methods=["GET"]),
            Route("/v1/batches/{batch_id}", self._openai_retrieve, methods=["GET"]),
            Route("/v1/batches/{batch_id}/cancel", self._openai_cancel, methods=["POST"]),
            Route("/v1/messages/batches", self._anthropic_create, methods=["POST"]),
            Route("/v1/messages/batches", self._anthropic_list, methods=["GET"]),
            Route("/v1/messages/batches/{batch_id}", self._anthropic_retrieve, methods=["GET"]),
            Route("/v1/messages/batches/{batch_id}", self._anthropic_delete, methods=["DELETE"]),
            Route("/v1/messages/batches/{batch_id}/cancel", self._anthropic_cancel, methods=["POST"]),
            Route("/v1/messages/batches/{batch_id}/results", self._anthropic_results, methods=["GET"]),
            Route("/_fake/batches/stats", self._stats, methods=["GET"]),
            Route("/_fake/batches/script", self._set_script, methods=["POST"]),
        ]

    # -- shared -------------------------------------------------------------------------------
    def _new_id(self, prefix: str) -> str:
        return f"{prefix}{next(self._numbers):08d}fake"

    def _next_script(self) -> BatchScript:
        return self._next.popleft() if self._next else self.script

    def _answer(self, line: BatchLine, batch: LiveBatch) -> tuple[int, dict[str, Any]]:
        """One line through the fake model, unless scripted to fail or malformed."""
        provider = batch.provider
        messages = line.body.get("messages")
        last = messages[-1] if isinstance(messages, list) and messages else None
        prompt = str(last.get("content", "")) if isinstance(last, dict) else ""
        if (status := line_error(prompt, batch.script)) is not None:
            return status, error_body(provider, status, "scripted line failure")
        if not isinstance(last, dict) or not line.body.get("model"):
            return 400, error_body(provider, 400, "model and messages are required")
        if misplaced := sorted(SDK_ONLY_ARGUMENTS & line.body.keys()):
            # The SDKs' own keyword arguments: a body that carries one was passed through unmerged.
            return 400, error_body(provider, 400, f"{misplaced[0]}: Extra inputs are not permitted")
        if provider == "anthropic" and not (isinstance(line.body.get("max_tokens"), int)
                                            and line.body["max_tokens"] >= 1):
            return 400, error_body(provider, 400, "max_tokens: Field required (an integer >= 1)")
        return 200, self.reply(line.body, provider, next(self._numbers))

    def _find(self, batch_id: str, provider: str) -> LiveBatch:
        batch = self._batches.get(batch_id)
        if batch is None or batch.provider != provider:
            raise ApiError(404, f"No batch found with id '{batch_id}'.")
        return batch

    def _poll(self, batch: LiveBatch) -> None:
        batch.polls += 1
        self.log.polls += 1
        self._settle(batch)

    def _settle(self, batch: LiveBatch) -> None:
        settle(batch, time.time(), self._answer, self.log)
        if batch.provider == "openai" and batch.results and batch.output_file_id is None \
                and batch.error_file_id is None:
            self._write_openai_files(batch)

    def _handled(self, work: Callable[[], Any]) -> Response:
        """An OpenAI endpoint's reply: the object `work` returns, or the error it raised."""
        try:
            with self._lock:
                return JSONResponse(work())
        except ApiError as error:
            return JSONResponse(api_error_body("openai", error), status_code=error.status)

    # -- OpenAI files ---------------------------------------------------------------------------
    async def _upload(self, request: Request) -> Response:
        form = multipart(request.headers.get("content-type", ""), await request.body())

        def upload() -> dict[str, Any]:
            purpose = form.get("purpose", (None, b""))[1].decode()
            if "file" not in form or not purpose:
                raise ApiError(400, "file and purpose are required", "file" if "file" not in form else "purpose")
            stored = StoredFile(self._new_id("file-"), form["file"][0] or "upload.jsonl", purpose,
                                form["file"][1], time.time())
            self._files[stored.id] = stored
            self.log.files_uploaded += 1
            return stored.as_object()

        return self._handled(upload)

    async def _list_files(self, request: Request) -> Response:
        purpose = request.query_params.get("purpose")
        return self._handled(lambda: {"object": "list", "has_more": False, "data": [
            f.as_object() for f in reversed(self._files.values()) if purpose in (None, f.purpose)]})

    def _file(self, request: Request) -> StoredFile:
        file_id = request.path_params["file_id"]
        if file_id not in self._files:
            raise ApiError(404, f"No such File object: {file_id}", "id")
        return self._files[file_id]

    async def _retrieve_file(self, request: Request) -> Response:
        return self._handled(lambda: self._file(request).as_object())

    async def _delete_file(self, request: Request) -> Response:
        def delete() -> dict[str, Any]:
            stored = self._file(request)
            del self._files[stored.id]
            return {"id": stored.id, "object": "file", "deleted": True}

        return self._handled(delete)

    async def _file_content(self, request: Request) -> Response:
        try:
            with self._lock:
                data = self._file(request).data
        except ApiError as error:
            return JSONResponse(api_error_body("openai", error), status_code=error.status)
        return Response(data, media_type="application/octet-stream")

    # -- OpenAI batches -------------------------------------------------------------------------
    async def _openai_create(self, request: Request) -> Response:
        try:
            params = await request.json()
        except ValueError:
            params = {}  # reported as the missing parameters it lacks

        def create() -> dict[str, Any]:
            try:
                return openai_batch_object(self._create_openai(params))
            except ApiError:
                self.log.rejected += 1
                raise

        return self._handled(create)

    def _create_openai(self, params: dict[str, Any]) -> LiveBatch:
        if params.get("completion_window") != "24h":
            raise ApiError(400, "Invalid value for 'completion_window': only '24h' is supported.", "completion_window")
        endpoint = params.get("endpoint")
        if endpoint not in OPENAI_ENDPOINTS:
            raise ApiError(400, f"Invalid value for 'endpoint': expected one of {', '.join(OPENAI_ENDPOINTS)}.",
                           "endpoint")
        if endpoint != SERVED_ENDPOINT:
            raise ApiError(400, f"The fake server runs batches for {SERVED_ENDPOINT} only.", "endpoint")
        check_metadata(params.get("metadata"))
        stored = self._files.get(str(params.get("input_file_id")))
        if stored is None or stored.purpose != "batch":
            raise ApiError(400, f"Invalid 'input_file_id': '{params.get('input_file_id')}'. No file with purpose "
                                "'batch' has this id.", "input_file_id")
        lines, errors = openai_lines(stored.data, endpoint, self.limits)
        script = self._next_script()
        if script.outcome == "failed" and not errors:
            errors = [validation_error("invalid_request", None, "The batch failed validation (scripted).")]
        batch = LiveBatch("openai", self._new_id("batch_"), lines, script, time.time(),
                          endpoint=endpoint, input_file_id=stored.id, metadata=params.get("metadata"),
                          validation_errors=errors)
        self._register(batch)
        return batch

    def _register(self, batch: LiveBatch) -> None:
        self._batches[batch.id] = batch
        self.log.creations[batch.provider] += 1
        if not batch.validation_errors:
            for line in batch.lines:
                self.log.submitted[line.custom_id] += 1
        self._settle(batch)

    async def _openai_retrieve(self, request: Request) -> Response:
        def retrieve() -> dict[str, Any]:
            batch = self._find(request.path_params["batch_id"], "openai")
            self._poll(batch)
            return openai_batch_object(batch)

        return self._handled(retrieve)

    async def _openai_cancel(self, request: Request) -> Response:
        return self._handled(lambda: openai_batch_object(self._cancel(request.path_params["batch_id"], "openai")))

    def _cancel(self, batch_id: str, provider: str) -> LiveBatch:
        batch = self._find(batch_id, provider)
        status = batch.status()
        if status in TERMINAL:
            raise ApiError(400,
                           f"Cannot cancel a batch with status '{status}'." if provider == "openai"
                           else "Cannot cancel a batch that has ended.")
        if batch.cancel_poll is None:
            batch.cancel_poll = batch.polls
            self.log.cancels += 1
            self._settle(batch)
        return batch

    async def _openai_list(self, request: Request) -> Response:
        def listing() -> dict[str, Any]:
            chosen, more = newest_first([b for b in self._batches.values() if b.provider == "openai"],
                         request.query_params.get("after"), int(request.query_params.get("limit", 20)))
            data = [openai_batch_object(b) for b in chosen]
            return {"object": "list", "data": data, "has_more": more,
                    "first_id": data[0]["id"] if data else None, "last_id": data[-1]["id"] if data else None}

        return self._handled(listing)

    def _write_openai_files(self, batch: LiveBatch) -> None:
        output: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        for result in batch.results or []:
            line = openai_result_line(self._new_id("batch_req_"), result)
            (output if result.kind == "succeeded" else errors).append(line)
        for lines, kind in ((output, "output"), (errors, "error")):
            if not lines:
                continue
            data = "".join(json.dumps(line) + "\n" for line in lines).encode()
            stored = StoredFile(self._new_id("file-"), f"{batch.id}_{kind}.jsonl", "batch_output", data, time.time())
            self._files[stored.id] = stored
            if kind == "output":
                batch.output_file_id = stored.id
            else:
                batch.error_file_id = stored.id

    # -- Anthropic message batches ----------------------------------------------------------------
    async def _anthropic_create(self, request: Request) -> Response:
        raw = await request.body()
        try:
            with self._lock:
                batch = self._create_anthropic(raw)
                return JSONResponse(anthropic_batch_object(batch, str(request.base_url)))
        except ApiError as error:
            with self._lock:
                self.log.rejected += 1
            return JSONResponse(api_error_body("anthropic", error), status_code=error.status)

    def _create_anthropic(self, raw: bytes) -> LiveBatch:
        if len(raw) > self.limits.anthropic_bytes:
            raise ApiError(413, f"Request exceeds the maximum size of {self.limits.anthropic_bytes} bytes "
                                "for a message batch.")
        try:
            requests = json.loads(raw).get("requests")
        except (ValueError, AttributeError):
            raise ApiError(400, "The request body is not a JSON object.") from None
        if not isinstance(requests, list) or not requests:
            raise ApiError(400, "requests: Field required (a non-empty list)")
        if len(requests) > self.limits.anthropic_requests:
            raise ApiError(400, f"requests: a message batch holds at most {self.limits.anthropic_requests} "
                                f"requests; got {len(requests)}")
        seen: set[str] = set()
        lines = []
        for index, entry in enumerate(requests):
            custom_id = entry.get("custom_id") if isinstance(entry, dict) else None
            if not isinstance(custom_id, str) or not ANTHROPIC_CUSTOM_ID.match(custom_id):
                raise ApiError(400, f"requests.{index}.custom_id: String should match pattern "
                                    f"'{ANTHROPIC_CUSTOM_ID.pattern}'")
            if custom_id in seen:
                raise ApiError(400, f"requests.{index}.custom_id: Duplicate custom_id '{custom_id}'; "
                                    "custom_id must be unique within a batch")
            if not isinstance(entry.get("params"), dict):
                raise ApiError(400, f"requests.{index}.params: Field required")
            seen.add(custom_id)
            lines.append(BatchLine(custom_id, entry["params"]))
        batch = LiveBatch("anthropic", self._new_id("msgbatch_"), lines, self._next_script(), time.time())
        self._register(batch)
        return batch

    def _anthropic_handled(self, request: Request, work: Callable[[], LiveBatch]) -> Response:
        try:
            with self._lock:
                return JSONResponse(anthropic_batch_object(work(), str(request.base_url)))
        except ApiError as error:
            return JSONResponse(api_error_body("anthropic", error), status_code=error.status)

    async def _anthropic_retrieve(self, request: Request) -> Response:
        def retrieve() -> LiveBatch:
            batch = self._find(request.path_params["batch_id"], "anthropic")
            self._poll(batch)
            return batch

        return self._anthropic_handled(request, retrieve)

    async def _anthropic_cancel(self, request: Request) -> Response:
        return self._anthropic_handled(request, lambda: self._cancel(request.path_params["batch_id"], "anthropic"))

    async def _anthropic_delete(self, request: Request) -> Response:
        batch_id = request.path_params["batch_id"]
        try:
            with self._lock:
                batch = self._find(batch_id, "anthropic")
                if batch.results is None:
                    raise ApiError(400, "A batch can be deleted only once it has ended; cancel it first.")
                del self._batches[batch_id]
        except ApiError as error:
            return JSONResponse(api_error_body("anthropic", error), status_code=error.status)
        return JSONResponse({"id": batch_id, "type": "message_batch_deleted"})

    async def _anthropic_results(self, request: Request) -> Response:
        try:
            with self._lock:
                batch = self._find(request.path_params["batch_id"], "anthropic")
                if batch.results is None:
                    raise ApiError(400, "Results are available once the batch has ended.")
                lines = [anthropic_result_line(r, self._new_id("req_")) for r in batch.results]
        except ApiError as error:
            return JSONResponse(api_error_body("anthropic", error), status_code=error.status)

        def stream() -> Iterator[bytes]:
            for line in lines:
                yield (json.dumps(line) + "\n").encode()

        return StreamingResponse(stream(), media_type="application/binary")

    async def _anthropic_list(self, request: Request) -> Response:
        def listing() -> dict[str, Any]:
            chosen, more = newest_first([b for b in self._batches.values() if b.provider == "anthropic"],
                         request.query_params.get("after_id"), int(request.query_params.get("limit", 20)))
            data = [anthropic_batch_object(b, str(request.base_url)) for b in chosen]
            return {"data": data, "has_more": more, "first_id": data[0]["id"] if data else None,
                    "last_id": data[-1]["id"] if data else None}

        try:
            with self._lock:
                return JSONResponse(listing())
        except ApiError as error:
            return JSONResponse(api_error_body("anthropic", error), status_code=error.status)

    # -- control ------------------------------------------------------------------------------------
    async def _stats(self, request: Request) -> Response:
        with self._lock:
            stats = self.log.snapshot()
            stats["batches"] = {b.id: b.status() for b in self._batches.values()}
        return JSONResponse(stats)

    async def _set_script(self, request: Request) -> Response:
        """{"script": {...BatchScript}, "next": [{...}, ...], "limits": {...BatchLimits}}: each part optional."""
        payload = await request.json()
        try:
            script = BatchScript.from_dict(payload["script"]) if "script" in payload else None
            queued = [BatchScript.from_dict(s) for s in payload.get("next", [])]
            limits = BatchLimits.from_dict(payload["limits"]) if "limits" in payload else None
        except (TypeError, ValueError) as error:
            return JSONResponse({"error": str(error)}, status_code=400)
        with self._lock:
            self.script = script or self.script
            self.limits = limits or self.limits
            self._next.extend(queued)
        return JSONResponse({"script": True})


