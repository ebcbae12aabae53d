"""Every input a suite's results depend on, with a fingerprint each: what CI compares to decide
which suites a change affects.

Files: the suite itself, the prompt version file, every template it includes, imports or extends
(found in the Jinja2 AST, recursively), the JSON Schema files of its scorers and the dataset file.
Settings: one entry per target (provider, model, base_url, params) fingerprinted as canonical
JSON, so a changed temperature is named as that target's change. API keys are never part of it:
they live in the environment, not in the suite.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import jinja2
from jinja2 import meta

from harness.config.loader import LoadedSuite, load_suite
from harness.config.prompts import _read_chat_file
from harness.config.suite import TargetSpec
from harness.errors import UserError

DependencyKind = Literal["suite", "prompt", "template", "schema", "dataset", "target"]


@dataclass(frozen=True)
class Dependency:
    kind: DependencyKind
    name: str
    """A file's absolute path as text, or `target <label>` for a target's settings."""
    sha256: str
    path: Path | None = None
    """The file (None for target settings)."""
    settings: dict[str, Any] | None = None
    """A target's settings as fingerprinted (None for files)."""


def suite_dependencies(suite_path: str | Path) -> list[Dependency]:
    """The suite's inputs in a fixed order: suite, prompt, templates, schemas, dataset, targets."""
    return dependencies_of(load_suite(suite_path))


def dependencies_of(loaded: LoadedSuite) -> list[Dependency]:
    found = [_file("suite", loaded.path)]
    prompt_file, sources = _prompt_file(loaded)
    found.append(_file("prompt", prompt_file))
    found += [_file("template", path) for path in _templates(loaded.prompts_dir, sources, prompt_file)]
    found += [_file("schema", path) for path in _schemas(loaded)]
    if loaded.spec.dataset.format != "hub":  # a hub dataset is no file of the repository
        found.append(_file("dataset", loaded.resolve(loaded.spec.dataset.path)))
    found += [target_dependency(target) for target in loaded.spec.targets]
    return found


def target_settings(target: TargetSpec) -> dict[str, Any]:
    """What decides a target's answers; pricing and rate limits do not, so they are left out."""
    return {"label": target.label, "provider": target.provider, "model": target.model,
            "base_url": target.base_url, "params": target.params.model_dump()}


def target_dependency(target: TargetSpec) -> Dependency:
    settings = target_settings(target)
    return Dependency("target", f"target {target.label}", canonical_sha256(settings), settings=settings)


def canonical_sha256(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _file(kind: DependencyKind, path: Path) -> Dependency:
    try:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
    except FileNotFoundError:
        raise UserError(f"{kind} file not found", file=str(path)) from None
    return Dependency(kind, str(path), digest, path=path)


def _prompt_file(loaded: LoadedSuite) -> tuple[Path, list[str]]:
    """The version file and its template sources (a chat file holds one per message)."""
    ref = loaded.spec.prompt
    folder = loaded.prompts_dir / ref.name
    completion, chat = folder / f"{ref.version}.j2", folder / f"{ref.version}.chat.yaml"
    if completion.is_file():
        return completion, [completion.read_text(encoding="utf-8")]
    if chat.is_file():
        return chat, [message.content for message in _read_chat_file(chat)]
    raise UserError(f"prompt {ref.name!r} has no version {ref.version!r}", file=str(loaded.path),
                    hint=f"expected {completion} or {chat}")


def _templates(prompts_dir: Path, sources: list[str], prompt_file: Path) -> list[Path]:
    """Every file reachable through include/import/extends, as the prompt's loader resolves them
    (relative to the prompts folder)."""
    env = jinja2.Environment(autoescape=False)
    found: dict[str, Path] = {}
    pending = list(sources)
    while pending:
        source = pending.pop()
        try:
            tree = env.parse(source)
        except jinja2.TemplateSyntaxError as exc:
            raise UserError(f"template syntax error: {exc.message}", file=str(prompt_file),
                            location=f"line {exc.lineno}") from None
        for ref in meta.find_referenced_templates(tree):
            if ref is None:
                raise UserError("includes must name a fixed file (its changes could not be tracked)",
                                file=str(prompt_file))
            if ref in found:
                continue
            path = prompts_dir / ref
            if not path.is_file():
                raise UserError(f"included file {ref!r} not found under {prompts_dir}", file=str(prompt_file))
            found[ref] = path
            pending.append(path.read_text(encoding="utf-8"))
    return [found[ref] for ref in sorted(found)]


def _schemas(loaded: LoadedSuite) -> list[Path]:
    paths: list[Path] = []
    for scorer in loaded.spec.scorers:
        schema_file = scorer.params.get("schema_file")
        if isinstance(schema_file, str):
            path = loaded.resolve(schema_file)
            if path not in paths:
                paths.append(path)
    return paths
