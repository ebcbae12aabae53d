"""A run's operating metrics, computed from its store: how much was sent, how it went, what it cost.

Stored in the manifest at the end of each session, printed after a run and by `evalbatch status`.
Everything is counted with SQL aggregates over the store (two extra one-row queries for the
latency percentiles), so a run of 100,000 requests is measured without loading its rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from pydantic import BaseModel, Field

from harness.engine.states import RequestState
from harness.engine.store import RunStore

METRICS_VERSION: Final = 1
PAUSED_META_KEY: Final = "rate_limit_paused_s"
"""Store meta key the engine adds the seconds a lane was paused by rate limits to."""


class RunMetrics(BaseModel):
    """Rates are None when their denominator is 0; costs are None when no request has a known cost.
    "Item" here is one request: one dataset item for one target and epoch."""

    version: Literal[1] = METRICS_VERSION
    submitted: int = Field(description="Requests in the run.")
    sent: int = Field(description="Requests with at least one attempt (cache hits and duplicates have none).")
    completed: int = Field(description="Requests in a final state: succeeded or failed_terminal.")
    succeeded: int = Field(description="Requests that succeeded, however answered (sent, cache, duplicate).")
    failed_terminal: int = Field(description="Requests that failed for good (until a retry round).")
    success_rate: float | None = Field(description="succeeded / completed.")
    terminal_failure_rate: float | None = Field(description="failed_terminal / completed.")
    attempts: int = Field(description="Every attempt ever made, abandoned ones (cut off by a kill) included.")
    retry_rate: float | None = Field(description="Attempts beyond each request's first, per request sent: "
                                     "(attempts - sent) / sent.")
    rate_limited: int = Field(description="Attempts answered HTTP 429.")
    rate_limit_paused_s: float = Field(description="Seconds lanes were paused by rate limits (summed over lanes).")
    input_tokens_per_item: float | None = Field(description="Mean input tokens over requests with usage recorded.")
    output_tokens_per_item: float | None = Field(description="Mean output tokens over requests with usage recorded.")
    latency_p50_ms: float | None = Field(description="Median latency of requests answered by the provider.")
    latency_p95_ms: float | None = Field(description="95th percentile latency (linear interpolation).")
    cost_usd: float | None = Field(description="Summed cost of the requests whose cost is known.")
    cost_per_item_usd: float | None = Field(description="cost_usd / completed.")
    cost_per_success_usd: float | None = Field(description="cost_usd / succeeded: what one useful answer cost.")
    from_cache: int = Field(description="Succeeded requests answered by the shared response cache.")
    duplicates: int = Field(description="Succeeded requests answered by an identical request of the same run.")


def run_metrics(store: RunStore) -> RunMetrics:
    """The metrics of the store's current committed state (one read transaction)."""
    with store.reading():
        if not store.has_table("requests"):  # a store a kill left before its tables existed
            return _metrics(_Counts(), store)
        return _metrics(_count(store), store)


@dataclass(frozen=True)
class _Counts:
    submitted: int = 0
    succeeded: int = 0
    failed_terminal: int = 0
    sent: int = 0
    attempts: int = 0
    rate_limited: int = 0
    with_usage: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    costed: int = 0
    cost_usd: float = 0.0
    from_cache: int = 0
    duplicates: int = 0
    latencies: int = 0
    p50: float | None = None
    p95: float | None = None


def _count(store: RunStore) -> _Counts:
    db = store.db
    # Stores written before migration 5 have no cost or origin: nothing was cached or priced then.
    columns = {row[1] for row in db.execute("PRAGMA table_info(requests)")}
    cost = "cost_usd" if "cost_usd" in columns else "NULL"
    origin = "origin" if "origin" in columns else "'sent'"
    row = db.execute(
        f"SELECT COUNT(*), SUM(state = ?), SUM(state = ?), SUM(attempts > 0),"
        f" SUM(input_tokens IS NOT NULL OR output_tokens IS NOT NULL),"
        f" COALESCE(SUM(input_tokens), 0), COALESCE(SUM(output_tokens), 0),"
        f" COUNT({cost}), COALESCE(SUM({cost}), 0),"
        f" SUM(state = ? AND {origin} = 'cache'), SUM(state = ? AND {origin} = 'duplicate')"
        f" FROM requests",
        (RequestState.SUCCEEDED, RequestState.FAILED_TERMINAL, RequestState.SUCCEEDED,
         RequestState.SUCCEEDED)).fetchone()
    attempts, rate_limited = db.execute("SELECT COUNT(*), COALESCE(SUM(status = 429), 0) FROM attempts").fetchone()
    # Latency is the provider's: requests answered from the cache or a duplicate took no time.
    latency_query = (f"SELECT latency_ms FROM requests WHERE state = ? AND {origin} = 'sent'"
                     " AND latency_ms IS NOT NULL")
    latencies = db.execute(f"SELECT COUNT(*) FROM ({latency_query})", (RequestState.SUCCEEDED,)).fetchone()[0]

    def percentile(q: float) -> float | None:
        """Linear interpolation between the two closest ranks (numpy's default)."""
        if not latencies:
            return None
        position = q * (latencies - 1)
        low_rank = int(position)
        values = [value for (value,) in db.execute(f"{latency_query} ORDER BY latency_ms LIMIT 2 OFFSET ?",
                                                   (RequestState.SUCCEEDED, low_rank))]
        if len(values) == 1:
            return float(values[0])
        return float(values[0] + (values[1] - values[0]) * (position - low_rank))

    return _Counts(submitted=row[0], succeeded=row[1] or 0, failed_terminal=row[2] or 0, sent=row[3] or 0,
                   attempts=attempts, rate_limited=rate_limited, with_usage=row[4] or 0, input_tokens=row[5],
                   output_tokens=row[6], costed=row[7], cost_usd=float(row[8]), from_cache=row[9] or 0,
                   duplicates=row[10] or 0, latencies=latencies, p50=percentile(0.5), p95=percentile(0.95))


def _metrics(counts: _Counts, store: RunStore) -> RunMetrics:
    completed = counts.succeeded + counts.failed_terminal
    cost = counts.cost_usd if counts.costed else None
    paused = store.get_meta(PAUSED_META_KEY, 0.0) if store.has_table("meta") else 0.0
    return RunMetrics(
        submitted=counts.submitted, sent=counts.sent, completed=completed, succeeded=counts.succeeded,
        failed_terminal=counts.failed_terminal, success_rate=_ratio(counts.succeeded, completed),
        terminal_failure_rate=_ratio(counts.failed_terminal, completed), attempts=counts.attempts,
        retry_rate=_ratio(counts.attempts - counts.sent, counts.sent), rate_limited=counts.rate_limited,
        rate_limit_paused_s=round(float(paused or 0.0), 3),
        input_tokens_per_item=_ratio(counts.input_tokens, counts.with_usage),
        output_tokens_per_item=_ratio(counts.output_tokens, counts.with_usage),
        latency_p50_ms=counts.p50, latency_p95_ms=counts.p95, cost_usd=cost,
        cost_per_item_usd=None if cost is None else _ratio(cost, completed),
        cost_per_success_usd=None if cost is None else _ratio(cost, counts.succeeded),
        from_cache=counts.from_cache, duplicates=counts.duplicates)


def _ratio(numerator: float, denominator: int) -> float | None:
    return numerator / denominator if denominator else None
