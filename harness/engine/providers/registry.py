"""Provider registry. Built-in providers are imported only when a suite uses them, so a
missing optional dependency (e.g. llama-cpp-python) only matters to suites that need it."""

from __future__ import annotations

import importlib
from collections.abc import Callable

from harness.config.suite import TargetSpec
from harness.engine.providers.base import Provider

_BUILTIN_MODULES = {
    "local": "harness.engine.providers.local",
    "openai": "harness.engine.providers.openai_chat",
    "anthropic": "harness.engine.providers.anthropic_messages",
}
_FACTORIES: dict[str, Callable[[TargetSpec], Provider]] = {}


def register_provider(name: str) -> Callable:
    def decorate(cls: Callable[[TargetSpec], Provider]) -> Callable[[TargetSpec], Provider]:
        _FACTORIES[name] = cls
        return cls

    return decorate


def known_providers() -> set[str]:
    return set(_BUILTIN_MODULES) | set(_FACTORIES)


def create_provider(target: TargetSpec) -> Provider:
    if target.provider not in _FACTORIES and target.provider in _BUILTIN_MODULES:
        importlib.import_module(_BUILTIN_MODULES[target.provider])
    try:
        factory = _FACTORIES[target.provider]
    except KeyError:
        raise ValueError(f"unknown provider {target.provider!r}") from None
    return factory(target)
