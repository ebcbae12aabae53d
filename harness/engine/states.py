"""The states a request and an attempt can be in: one definition for every module that reads them."""

from __future__ import annotations

from enum import StrEnum


class RequestState(StrEnum):
    QUEUED = "queued"
    PROCESSING = "processing"
    SUCCEEDED = "succeeded"
    FAILED_RETRYABLE = "failed_retryable"
    FAILED_TERMINAL = "failed_terminal"
    IN_BATCH = "in_batch"
    """Handed to a provider batch (OpenAI Batch API, Anthropic Message Batches) that has not been
    collected yet: never sent again, nor re-queued by a resume, until its batch is collected."""

    @property
    def is_final(self) -> bool:
        """Final states are never left, except failed_terminal by an explicit --retry-failed."""
        return self in FINAL_STATES


FINAL_STATES = frozenset({RequestState.SUCCEEDED, RequestState.FAILED_TERMINAL})
UNFINISHED_STATES = (RequestState.QUEUED, RequestState.PROCESSING, RequestState.FAILED_RETRYABLE,
                     RequestState.IN_BATCH)
SENDABLE_STATES = (RequestState.QUEUED, RequestState.FAILED_RETRYABLE)
"""States a request may be sent (or put into a provider batch) from."""


class AttemptOutcome(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED_RETRYABLE = "failed_retryable"
    FAILED_TERMINAL = "failed_terminal"
    ABANDONED = "abandoned"
    """The process stopped (killed or interrupted) while the attempt was in flight."""
