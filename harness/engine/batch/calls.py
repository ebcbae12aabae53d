"""One batch API call's failures, classified as the realtime provider's are."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType

from harness.engine.batch.base import BatchApiError
from harness.engine.providers.base import ProviderError
from harness.engine.providers.http_errors import sdk_errors

CALL_TIMEOUT_S = 120.0


@contextmanager
def batch_call(sdk: ModuleType, what: str) -> Iterator[None]:
    """Turns the SDK's exceptions into a BatchApiError naming the step: final when the reply says
    trying again cannot help (400, 401, 404, ...), not final for a transient failure."""
    try:
        with sdk_errors(sdk, CALL_TIMEOUT_S):
            yield
    except ProviderError as error:
        raise BatchApiError(f"could not {what}: {error.describe()}", final=error.kind == "terminal",
                            status=error.status) from None
