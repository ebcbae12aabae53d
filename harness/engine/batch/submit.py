"""Putting a target's waiting requests into provider batches, and finishing chunks a killed
process left between two steps.

A chunk's members are planned (and moved to in_batch) before its lines are uploaded; its file
ID and batch ID are committed as the provider returns them (harness/engine/batch/batch_store.py).
A chunk found without a batch ID on resume may have had its batch created by the process that
died (or whose create reply was lost): the provider's batch list is searched first (OpenAI: the
batch made from the chunk's input file; Anthropic: a batch whose results carry the chunk's
tagged custom_ids, so a live candidate leaves the chunk unresolved until it ends), so a batch is
created at most once per chunk and another run's batch is never adopted; only when none can be
the chunk's is it created, from the recorded file when there is one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from dataclasses import dataclass

from harness.engine.batch.base import BatchApi, BatchApiError, BatchInfo, BatchLimits, Unproven
from harness.engine.batch.batch_store import PLANNED, UNRESOLVED, UPLOADED, BatchStore, Chunk
from harness.engine.batch.custom_ids import chunk_tag, custom_id_for
from harness.engine.batch.lines import BodyBuilder
from harness.engine.states import RequestState


@dataclass(frozen=True)
class Retries:
    """How often a failed batch API call (upload, create, retrieve) is tried again, and the backoff."""

    max_retries: int
    base_s: float
    max_s: float

    async def run(self, call):
        """Awaits call() until it succeeds, fails finally, or the retries are spent."""
        for tried in range(self.max_retries + 1):
            try:
                return await call()
            except BatchApiError as error:
                if error.final or tried == self.max_retries:
                    raise
                await asyncio.sleep(min(self.max_s, self.base_s * 2 ** tried))
        raise AssertionError("unreachable")


@dataclass
class TargetSubmitter:
    """One batch target's submissions within a session."""

    batches: BatchStore
    api: BatchApi
    label: str
    bodies: BodyBuilder
    limits: BatchLimits
    retries: Retries

    async def finish_open(self, *, unresolved_only: bool = False, quiet: bool = False) -> list[str]:
        """Chunks of this target that a stopped process left before their batch existed: each is
        adopted (its batch found) or created, or left unresolved while a batch that may be its own
        runs (`quiet`: said only the first time). Returns what was done, for the console."""
        done = []
        for chunk in self.batches.chunks(open_only=True):
            if chunk.target != self.label or chunk.batch_id is not None:
                continue
            if unresolved_only and chunk.status != UNRESOLVED:
                continue
            found = await self.retries.run(lambda c=chunk: self.api.find(self.batches.key(c)))
            if isinstance(found, Unproven):
                if quiet and chunk.status == UNRESOLVED:
                    continue
                self.batches.mark_unresolved(chunk)
                done.append(f"{chunk.total:,} request(s) planned by an earlier process wait to be identified: "
                            f"batch(es) {', '.join(found.batch_ids)} may be theirs (a create whose reply was lost) "
                            "and are still running; their results will tell, so nothing is created again until "
                            "they end (run `evalbatch collect RUN` then)")
                continue
            if found is not None:
                self.batches.record_batch(chunk, found)
                done.append(f"re-attached to batch {found.batch_id} (created before the previous process stopped)")
                continue
            info = await self._create(chunk)
            if info is not None:
                done.append(f"submitted batch {info.batch_id} of {chunk.total} request(s) planned by an earlier process")
        return done

    async def submit_waiting(self, cancelled, held: Collection[str] = ()) -> list[str]:
        """Plans and submits chunks of the target's waiting requests, up to the limits per batch,
        until none is left (or `cancelled()` says stop); `held` requests stay out (they wait for
        an identical request's answer: harness/engine/batch/answers.py)."""
        done = []
        while not cancelled():
            members, lines = self._next_chunk(held)
            if not members:
                break
            chunk_id, joined = self.batches.plan(self.api.provider, self.label, members)
            if not joined:
                continue
            chunk = self.batches.chunk(chunk_id)
            if chunk.total and lines[0] is None:  # a single request over the byte limit: no batch can hold it
                self.batches.abandon(chunk, f"the request is larger than the batch limit of {self.limits.max_bytes:,} "
                                     "bytes", final=True)
                done.append("1 request larger than the batch limit failed")
                continue
            info = await self._create(chunk)
            if info is not None:
                done.append(f"submitted batch {info.batch_id} with {chunk.total:,} request(s)")
        return done

    def _next_chunk(self, held: Collection[str]) -> tuple[list[tuple[str, str]], list[bytes | None]]:
        """The next requests that fit one batch: at most max_requests, at most max_bytes of body
        (the lines and the API's framing; a first line alone over max_bytes comes back alone,
        with no line)."""
        members: list[tuple[str, str]] = []
        lines: list[bytes | None] = []
        size, after = self.api.framing_bytes, 0
        tag = chunk_tag() if self.api.tags_custom_ids else None
        while page := self.batches.sendable(self.label, after, min(2000, self.limits.max_requests)):
            for position, request in page:
                after = position
                if request.request_id in held:
                    continue
                custom_id = custom_id_for(request.request_id, tag)
                line = self.api.line(custom_id, self.bodies.body(request))
                if size + len(line) > self.limits.max_bytes and not members:
                    return [(request.request_id, custom_id)], [None]
                if len(members) >= self.limits.max_requests or size + len(line) > self.limits.max_bytes:
                    return members, lines
                members.append((request.request_id, custom_id))
                lines.append(line)
                size += len(line)
        return members, lines

    async def _create(self, chunk: Chunk) -> BatchInfo | None:
        """Creates the chunk's batch (from its recorded file, or uploading its lines) and commits
        its ID. A refusal the provider says is final fails the chunk's requests (terminal); a
        transient failure leaves the chunk for the next session."""
        try:
            if chunk.status == UPLOADED and chunk.input_file_id:
                try:
                    info = await self._create_once(chunk, chunk.input_file_id)
                except BatchApiError as error:
                    if not error.final:
                        raise
                    info = await self._upload_and_create(chunk)  # the file is gone (expired, deleted)
            else:
                assert chunk.status in (PLANNED, UPLOADED, UNRESOLVED)
                info = await self._upload_and_create(chunk)
        except BatchApiError as error:
            if error.status == 413 and chunk.total > 1:
                # Too large for the provider after all (its limit is below ours): the requests go
                # back to wait, and the next chunks are planned at half this one's size.
                self.batches.abandon(chunk, str(error), final=False)
                self.limits = BatchLimits(max(1, chunk.total // 2), self.limits.max_bytes)
                return None
            if error.final:
                self.batches.abandon(chunk, str(error), final=True)
                return None
            raise
        self.batches.record_batch(chunk, info)
        return info

    async def _create_once(self, chunk: Chunk, file_id: str) -> BatchInfo:
        """Creates the batch from the chunk's file, retrying a transient failure only after the
        provider's list shows no batch made from that file: a create whose reply was lost may
        have made one, and a second would answer (and bill) every request twice."""
        tried = 0
        while True:
            try:
                return await self.api.create_from_file(file_id)
            except BatchApiError as error:
                if error.final or tried == self.retries.max_retries:
                    raise
                await asyncio.sleep(min(self.retries.max_s, self.retries.base_s * 2 ** tried))
                tried += 1
            found = await self.retries.run(lambda: self.api.find(self.batches.key(chunk)))
            if isinstance(found, BatchInfo):
                return found

    async def _upload_and_create(self, chunk: Chunk) -> BatchInfo:
        lines = [self.api.line(custom_id, self.bodies.body(request))
                 for members in self.batches.member_requests(chunk)
                 for custom_id, request in members if request.state == RequestState.IN_BATCH]

        async def record_file(file_id: str, size: int) -> None:
            self.batches.record_file(chunk, file_id, size)

        # Not retried here as a whole: a retried upload would leave a second file. The calls
        # inside are single; a transient failure leaves the chunk to the next session.
        return await self.api.submit(lines, record_file)
