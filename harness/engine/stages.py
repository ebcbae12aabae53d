"""Running a plan in stages with a look at the results between them (group-sequential samples)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel, Field


@dataclass(frozen=True)
class LookDecision:
    stop: bool
    record: dict[str, Any]


class LookSchedule(BaseModel):
    """A staged run's plan, fixed when the run starts and kept in its manifest, so a resumed run
    looks at the very items and bounds it planned instead of re-cutting its stages."""

    looks: int = Field(description="How many looks (one after each stage).")
    alpha: float = Field(description="One-sided alpha the bounds spend.")
    bounds: list[float] = Field(description="The success bound b_k of each look (the failure bound is -b_k).")
    stages: list[list[str]] = Field(description="The item IDs of each stage, in order.")
    planned_items: list[int] = Field(description="Items planned up to and including each look.")

    def items_through(self, look: int) -> frozenset[str]:
        """The items of stages 0..look (0-based): what look `look` judges."""
        return frozenset(item for stage in self.stages[:look + 1] for item in stage)

    def stage_of(self) -> dict[str, int]:
        return {item: index for index, stage in enumerate(self.stages) for item in stage}


class StageMonitor(Protocol):
    def schedule(self, item_ids: Iterable[str]) -> LookSchedule:
        """The plan for the run's items (IDs, in any order): its stages and each look's bound."""
        ...

    def decide(self, look: int, folder: Path, schedule: LookSchedule) -> LookDecision:
        """Called after stage `look` (0-based) with the run folder's results written so far; judges
        only the items `schedule` planned up to that look."""
        ...
