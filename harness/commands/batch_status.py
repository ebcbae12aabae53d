"""The batch parts of `evalbatch status` and `cancel`: a run's provider batches, listed and cancelled."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.config.suite import EngineSpec, TargetSpec
from harness.cost.money import format_usd
from harness.engine.batch.batch_store import UNRESOLVED, BatchStore, has_batches
from harness.engine.batch.session import BatchSession, BatchTarget
from harness.engine.store import RunStore
from harness.runs.manifest import Manifest


def batch_rows(store: RunStore, now: float) -> list[dict[str, Any]]:
    """Every provider batch of the run as a dict (for --json and the lines below)."""
    if not has_batches(store):
        return []
    batches = BatchStore(store)
    return [{"target": chunk.target, "provider": chunk.provider, "batch_id": chunk.batch_id,
             "input_file_id": chunk.input_file_id, "status": chunk.status, "requests": chunk.total,
             "completed": chunk.completed, "failed": chunk.failed, "collected": chunk.collected,
             "age_s": round(now - (chunk.created_at or chunk.planned_at), 1),
             "expires_in_s": None if chunk.expires_at is None else round(chunk.expires_at - now, 1),
             "cost_usd": batches.cost_of(chunk), "priced_at": "batch"}
            for chunk in batches.chunks()]


def batch_lines(rows: list[dict[str, Any]]) -> list[str]:
    lines = []
    for row in rows:
        name = row["batch_id"] or (
            "(waiting to be identified: a batch that may be its own is still running)"
            if row["status"] == UNRESOLVED else f"(not created yet; input file {row['input_file_id'] or 'not uploaded'})")
        expiry = "" if row["expires_in_s"] is None or row["collected"] else (
            f", expires in {_age(row['expires_in_s'])}" if row["expires_in_s"] > 0 else ", past its expiry")
        cost = "" if row["cost_usd"] is None else f", {format_usd(row['cost_usd'])} at the batch price"
        lines.append(f"batch {name} ({row['provider']}, target {row['target']}): {row['status']}, "
                     f"{row['completed']:,}/{row['requests']:,} done, {row['failed']:,} failed, "
                     f"age {_age(row['age_s'])}{expiry}{cost}" + ("; collected" if row["collected"] else ""))
    return lines


def cancel_provider_batches(folder: Path, manifest: Manifest) -> list[str]:
    """Asks the provider to cancel the run's live batches (what they completed stays and is
    collected); returns what was done. Nothing when the run has none."""
    store = RunStore.existing(folder)
    try:
        if not has_batches(store):
            return []
        live = {chunk.target for chunk in BatchStore(store).chunks(open_only=True) if chunk.batch_id}
        targets = [_target(record) for record in manifest.targets if record.label in live]
        if not targets:
            return []
        session = BatchSession(store, [BatchTarget(t, None, new_work=False) for t in targets],  # type: ignore[arg-type]
                               EngineSpec(), lambda request_id, output: [], lambda line: None)
        return [f"cancel requested at the provider: {done}" for done in session.cancel()]
    finally:
        store.close()


def _target(record) -> TargetSpec:
    """The target as the run recorded it: enough to reach its batch API (no suite needed)."""
    return TargetSpec(name=record.label, provider=record.provider, model=record.model, base_url=record.base_url)


def _age(seconds: float) -> str:
    whole = int(round(seconds))
    if whole >= 86400:
        return f"{whole // 86400}d {whole % 86400 // 3600}h"
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"
