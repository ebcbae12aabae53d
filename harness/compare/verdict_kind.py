"""The words of a verdict that both the gate (`harness.compare.verdict`) and its record
(`harness.runs.gate_record`) use; the record renders the English, so it cannot import the gate."""

from __future__ import annotations

from enum import StrEnum

__all__ = ["NoInterval", "SettlePremise", "Verdict"]


class Verdict(StrEnum):
    """Outcome of the gate for one metric or overall."""

    PASS = "PASS"
    WARN = "WARN"
    INCONCLUSIVE = "INCONCLUSIVE"
    FAIL = "FAIL"

    @property
    def severity(self) -> int:
        """0 (PASS) to 3 (FAIL); the overall verdict is the most severe."""
        return _SEVERITY[self]


_SEVERITY = {Verdict.PASS: 0, Verdict.WARN: 1, Verdict.INCONCLUSIVE: 2, Verdict.FAIL: 3}


class SettlePremise(StrEnum):
    """What an INCONCLUSIVE verdict's items needed assume about the items still to come."""

    OBSERVED = "observed difference"
    """The true difference is the one observed (score test or CLT formula)."""
    NO_CHANGE = "no change"
    """Binary scores with no item changed: further items do not change either."""
    SAME_SHIFT = "same shift"
    """Every item moved by the same amount (Wilson bound): further items move the same way."""


class NoInterval(StrEnum):
    """Why a verdict has no interval."""

    NO_ITEMS = "no items"
    NO_STANDARD_ERROR = "no standard error"
    """Too few items (or clusters) for a standard error."""
    UNBOUNDED_SHIFT = "unbounded shift"
    """Every item moved alike and the scores are not in [0, 1], so no Wilson bound applies."""
