"""The batch API registry, parallel to the realtime provider registry: a provider's batch API is
imported only when a suite sends a target in batch mode."""

from __future__ import annotations

import importlib
from collections.abc import Callable

from harness.config.suite import TargetSpec
from harness.engine.batch.base import BatchApi

_BUILTIN_MODULES = {
    "openai": "harness.engine.batch.openai_batch",
    "anthropic": "harness.engine.batch.anthropic_batch",
}
_FACTORIES: dict[str, Callable[[TargetSpec], BatchApi]] = {}


def register_batch_api(name: str) -> Callable:
    def decorate(cls: Callable[[TargetSpec], BatchApi]) -> Callable[[TargetSpec], BatchApi]:
        _FACTORIES[name] = cls
        return cls

    return decorate


def batch_providers() -> set[str]:
    """Providers that have a batch API."""
    return set(_BUILTIN_MODULES) | set(_FACTORIES)


def create_batch_api(target: TargetSpec) -> BatchApi:
    if target.provider not in _FACTORIES and target.provider in _BUILTIN_MODULES:
        importlib.import_module(_BUILTIN_MODULES[target.provider])
    try:
        factory = _FACTORIES[target.provider]
    except KeyError:
        raise ValueError(f"provider {target.provider!r} has no batch API; batch mode needs one of "
                         f"{sorted(batch_providers())}") from None
    return factory(target)
