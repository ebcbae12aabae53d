"""Watching live provider batches and collecting the ended ones into the run store.

Each look at a batch commits its status and counts (what `evalbatch status` shows). An ended
batch's result lines are reconciled by custom_id through the store's member table and
committed in one transaction with their scores and batch-priced cost; members without a line
(expired, cancelled, a batch that failed validation) go back to failed_retryable, to be sent
again by `evalbatch retry RUN --failed` or a resume.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from harness.cost.money import format_usd
from harness.cost.pricing import ModelPrice
from harness.engine.batch.base import BatchApi, BatchApiError, BatchInfo, ResultProblem
from harness.engine.batch.batch_store import BatchStore, Chunk, Settled
from harness.engine.batch.submit import Retries
from harness.engine.store import ScoreRow

Scoring = Callable[[str, str], list[ScoreRow]]
"""(request_id, output) -> the request's score rows."""


@dataclass
class TargetCollector:
    batches: BatchStore
    api: BatchApi
    label: str
    price: ModelPrice | None
    score: Scoring
    retries: Retries

    def live(self) -> list[Chunk]:
        """This target's batches that exist at the provider and are not collected yet."""
        return [chunk for chunk in self.batches.chunks(open_only=True)
                if chunk.target == self.label and chunk.batch_id is not None]

    async def look(self, chunk: Chunk) -> tuple[BatchInfo, str | None]:
        """Retrieves the batch, commits its news, and collects it when it has ended; returns its
        info and what was collected (None while it runs)."""
        assert chunk.batch_id is not None
        info = await self.retries.run(lambda: self.api.retrieve(chunk.batch_id or ""))
        self.batches.record_batch(chunk, info)
        if not info.ended:
            return info, None
        return info, await self.collect(self.batches.chunk(chunk.chunk), info)

    async def cancel(self, chunk: Chunk) -> BatchInfo:
        assert chunk.batch_id is not None
        info = await self.retries.run(lambda: self.api.cancel(chunk.batch_id or ""))
        self.batches.record_batch(chunk, info)
        return info

    async def collect(self, chunk: Chunk, info: BatchInfo) -> str:
        """Applies the ended batch's result lines. A line that cannot be read leaves only its own
        request without a result; a results file that cannot be read keeps the lines read so far
        but leaves the chunk open (BatchApiError naming the file), so nothing billed is lost."""
        members = self.batches.members(chunk)
        settled: list[Settled] = []
        unknown = 0
        problems: list[ResultProblem] = []
        async for line in self.api.results(info):
            if isinstance(line, ResultProblem):
                problems.append(line)
                continue
            request_id = members.get(line.custom_id)
            if request_id is None:
                unknown += 1  # not ours (or mangled): never applied to another request
                continue
            scores: list[ScoreRow] = []
            cost = None
            if line.completion is not None:
                scores = self.score(request_id, line.completion.text)
                cost = self._cost(line.completion)
            settled.append(Settled(request_id, line, scores, cost))
        unread = [problem for problem in problems if problem.whole_file]
        if unread:
            self.batches.collect(chunk, settled, "", finish=False)
            raise BatchApiError(f"batch {info.batch_id} ({info.status}): could not read its results "
                                f"({'; '.join(p.message for p in unread)}); {len(settled):,} line(s) kept, "
                                "the rest stays in the batch until the file can be read",
                                final=all(p.final for p in unread))
        why = f"batch {info.batch_id} {info.status}" + (f": {info.problem}" if info.problem else "") + \
            " with no result for this request" + \
            (f" (unreadable result line(s): {'; '.join(p.where for p in problems[:5])})" if problems else "")
        counts = self.batches.collect(chunk, settled, why)
        summary = ", ".join(f"{state} {count:,}" for state, count in sorted(counts.items())) or "nothing"
        spent = self.batches.cost_of(chunk)
        return f"collected batch {info.batch_id} ({info.status}): {summary}" + \
            ("" if spent is None else f"; {format_usd(spent)} at the batch price") + \
            (f"; {unknown} line(s) with an unknown custom_id ignored" if unknown else "") + \
            "".join(f"; {p.message}" for p in problems[:5])

    def _cost(self, completion) -> float | None:
        if self.price is None or completion.input_tokens is None or completion.output_tokens is None:
            return None
        return self.price.cost(completion.input_tokens, completion.output_tokens,
                               cached_input_tokens=completion.cached_input_tokens or 0, batch=True)
