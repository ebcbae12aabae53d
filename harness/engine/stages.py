"""Running a plan in stages with a look at the results between them (group-sequential samples)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from harness.engine.requests import WorkRequest


@dataclass(frozen=True)
class LookDecision:
    stop: bool
    record: dict[str, Any]


class StageMonitor(Protocol):
    def stages(self, requests: list[WorkRequest]) -> list[list[WorkRequest]]:
        """The requests cut into the stages to run, in order."""
        ...

    def decide(self, look: int, folder: Path) -> LookDecision:
        """Called after stage `look` (0-based) with the run folder's results written so far."""
        ...
