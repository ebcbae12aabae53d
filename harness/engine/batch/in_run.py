"""Where a run meets batch mode: which targets go through batches, and the session for them.

The mode of a target is the suite's `mode:` unless a `--mode` overrides every target; the
override given last is kept in the run store (meta `mode`), so a resume, `evalbatch collect`
or `retry` of the run goes on in the mode it was started in.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from harness.config.suite import TargetSpec
from harness.engine.batch.batch_store import BatchStore
from harness.engine.batch.registry import batch_providers
from harness.engine.batch.session import BatchSession, BatchTarget
from harness.engine.providers.base import RequestBodies
from harness.engine.store import RunStore, ScoreRow
from harness.errors import UserError

if TYPE_CHECKING:
    from harness.execute import RunContext, RunOptions
    from harness.plan import RunPlan

MODE_META = "mode"


def run_mode(store: RunStore, override: str | None) -> str | None:
    """The run's --mode: the one given now (recorded), else the one recorded earlier, else None
    (each target's own)."""
    if override is not None:
        store.set_meta(MODE_META, override)
        return override
    return store.get_meta(MODE_META)


def batch_targets(targets: list[TargetSpec], mode: str | None, where: str) -> list[TargetSpec]:
    """The targets sent through batches; --mode batch on a target without a batch API is bad input."""
    chosen = [t for t in targets if (mode or t.mode) == "batch"]
    for target in chosen:
        if target.provider not in batch_providers():
            raise UserError(f"target {target.label!r} (provider {target.provider!r}) has no batch API; batch mode "
                            f"needs one of {sorted(batch_providers())}", file=where,
                            hint="run it with --mode realtime, or set mode: batch only on targets that have one")
    return chosen


def check_batch_options(plan: RunPlan, options: RunOptions) -> None:
    """What can be refused before a run folder exists: a --mode batch (or a suite's mode: batch)
    on a target without a batch API, or on a sequential sample."""
    chosen = batch_targets(plan.suite.spec.targets, options.mode, str(plan.suite.path))
    if chosen and options.monitor is not None:
        raise _sequential_refused(plan)


def _sequential_refused(plan: RunPlan) -> UserError:
    return UserError("a sequential sample cannot be sent in batch mode: its looks need the results of each "
                     "stage as it finishes", file=str(plan.suite.path), hint="use --mode realtime")


@dataclass(frozen=True)
class BatchPart:
    """A run's batch work in one session: what execute asks of it."""

    session: BatchSession
    wait: bool

    @classmethod
    def of_run(cls, plan: RunPlan, run: RunContext, options: RunOptions, mode: str | None,
               say: Callable[[str], None]) -> BatchPart | None:
        """The run's batch work under `mode` (the run's --mode); None when no target is in batch
        mode and no batch of an earlier session is open."""
        store = run.store
        targets = plan.suite.spec.targets
        chosen = {t.label for t in batch_targets(targets, mode, str(plan.suite.path))}
        open_labels = {chunk.target for chunk in BatchStore(store).chunks(open_only=True)}
        involved = [t for t in targets if t.label in chosen or t.label in open_labels]
        if not involved:
            return None
        if chosen and options.monitor is not None:
            raise _sequential_refused(plan)
        new_work = {label for label in chosen if not options.collect_only}
        session = BatchSession(store, [BatchTarget(t, _bodies(run.lanes[t.label].provider, t), t.label in new_work)
                                       for t in involved],
                               plan.suite.spec.engine, item_scorer(store, plan.scorers), say)
        return cls(session, options.wait)

    def realtime_targets(self, targets: list[TargetSpec]) -> list[TargetSpec]:
        """The targets the realtime engine sends for: those without new batch work (requests
        sitting in a live batch of an earlier session are never fed to it: they are in_batch)."""
        labels = {t.target.label for t in self.session.targets if t.new_work}
        return [target for target in targets if target.label not in labels]

    def realtime_total(self, plan: RunPlan) -> int:
        """How many of the run's requests the realtime engine is responsible for (its progress total):
        every target has the same requests (one per item and sample)."""
        per_target = plan.request_count // len(plan.suite.spec.targets)
        return per_target * len(self.realtime_targets(plan.suite.spec.targets))

    def submit(self) -> None:
        self.session.submit()

    def collect(self) -> None:
        self.session.collect(wait=self.wait)


def _bodies(provider: object, target: TargetSpec) -> RequestBodies:
    """The target's realtime provider, which builds the bodies its batch lines carry."""
    if not isinstance(provider, RequestBodies):
        raise UserError(f"target {target.label!r}: provider {target.provider!r} cannot build request bodies, so "
                        "it cannot be sent in batch mode", hint="use --mode realtime")
    return provider


def item_scorer(store: RunStore, scorers: list) -> Callable[[str, str], list[ScoreRow]]:
    """Scores a collected output as the realtime engine does: every scorer, against the item's
    fields (read from the store: a run holds no items in memory)."""

    def score(request_id: str, output: str) -> list[ScoreRow]:
        row = store.db.execute("SELECT item_id FROM requests WHERE request_id = ?", (request_id,)).fetchone()
        item = store.items_of([row[0]]).get(row[0]) if row else None
        if item is None:
            return []
        rows: list[ScoreRow] = []
        for scorer in scorers:
            result = scorer.score(output, item.fields)
            rows.append((request_id, scorer.name, result.value, result.passed, result.detail))
        return rows

    return score
