"""Scorer registry: a scorer type is one decorated factory; third parties add theirs the same way.

A factory takes its validated parameters and a `ScoringContext` and returns a function
`(answer, expected) -> Score`. Extraction and the expected value are handled here, once,
so a scorer only grades.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from harness.config.datasets import Item
from harness.config.problems import InputProblems
from harness.config.suite import ScorerSpec
from harness.scoring.extract import ExtractionFailed, dotted_get, run_extraction


@dataclass(frozen=True)
class Score:
    """One graded output. `value` is what gets averaged (0/1 for pass/fail scorers)."""

    value: float
    passed: bool | None = None
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ScoringContext:
    suite_dir: Path


GradeFn = Callable[[Any, Any], Score]


class NoParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class ScorerKind:
    """A registered scorer type and what it can do, declared once where it is registered."""

    name: str
    params_model: type[BaseModel]
    factory: Callable[[Any, ScoringContext], GradeFn]
    needs_target: bool
    """Compares with an expected answer (ground truth) from the item."""
    binary: bool
    """Scores are 0 or 1 (pass/fail)."""
    predicts_label: bool = False
    """The score's detail holds the predicted class in `label` (None: the answer named none)."""
    validates: bool = False
    """Can tell a usable production output from an unusable one without ground truth: a
    predicted label exists, or the score passed (schema, format)."""

    def output_is_valid(self, score: dict[str, Any]) -> bool:
        detail = score.get("detail") or {}
        if self.predicts_label:
            return detail.get("label") is not None
        return bool(score.get("passed"))


_KINDS: dict[str, ScorerKind] = {}
_BUILTINS = ("harness.scoring.builtin",)


def register_scorer(name: str, *, params: type[BaseModel] = NoParams, needs_target: bool = True,
                    binary: bool = True, predicts_label: bool = False, validates: bool | None = None) -> Callable:
    """Class-free registration: `@register_scorer("regex", params=RegexParams, needs_target=False)`.
    `validates` defaults to "needs no ground truth" (a scorer that needs one cannot check a
    production record, which has none)."""

    def decorate(factory: Callable[[Any, ScoringContext], GradeFn]) -> Callable:
        _KINDS[name] = ScorerKind(name, params, factory, needs_target, binary, predicts_label,
                                  (not needs_target) if validates is None else validates)
        return factory

    return decorate


def scorer_kinds() -> dict[str, ScorerKind]:
    for module in _BUILTINS:
        importlib.import_module(module)
    return dict(_KINDS)


def validate_scorer_params(spec: ScorerSpec) -> BaseModel:
    """Raises ValueError (unknown type, missing target) or pydantic's ValidationError (bad params)."""
    kinds = scorer_kinds()
    kind = kinds.get(spec.type)
    if kind is None:
        raise ValueError(f"unknown scorer type {spec.type!r}; expected one of {sorted(kinds)}")
    if kind.needs_target and not spec.target:
        raise ValueError(f"scorer {spec.type!r} needs target: the item field holding the expected answer")
    return kind.params_model.model_validate(spec.params)


@dataclass(frozen=True)
class BoundScorer:
    """A scorer from the suite, ready to grade an output against an item."""

    spec: ScorerSpec
    kind: ScorerKind
    grade: GradeFn

    @property
    def name(self) -> str:
        return self.spec.label

    def score(self, output: str, item: dict[str, Any]) -> Score:
        expected = dotted_get(item, self.spec.target) if self.spec.target else None
        try:
            answer = run_extraction(output, self.spec.extract)
        except ExtractionFailed as exc:
            return Score(0.0, False, {"error": f"extraction failed: {exc}"})
        try:
            result = self.grade(answer, expected)
        except Exception as exc:  # one odd output must not lose the scores of the whole run
            return Score(0.0, False, {"error": f"scorer {self.name} failed: {type(exc).__name__}: {exc}"})
        detail = {"answer": answer if _is_plain(answer) else str(answer), **result.detail}
        return Score(result.value, result.passed, detail)


def bind_scorers(specs: list[ScorerSpec], context: ScoringContext) -> list[BoundScorer]:
    kinds = scorer_kinds()
    bound = []
    for spec in specs:
        params = validate_scorer_params(spec)
        kind = kinds[spec.type]
        bound.append(BoundScorer(spec, kind, kind.factory(params, context)))
    return bound


def check_expected_answers(scorers: list[BoundScorer], items: list[Item], problems: InputProblems | None = None) -> None:
    """Every item must hold the answer each scorer compares with: a missing one would grade a
    correct output as wrong (a silent 0), so it is bad input, reported before anything is sent.
    Each such record goes to `problems`; without a collector they raise here, all together."""
    own = problems if problems is not None else InputProblems()
    for scorer in scorers:
        if not scorer.spec.target:
            continue
        for item in items:
            if dotted_get(item.fields, scorer.spec.target) is None:
                own.add(f"no {scorer.spec.target!r} for scorer {scorer.name}", file=item.source,
                        location=f"{item.location} (id {item.id!r})",
                        hint="fill the field, filter those records out with a slice, or fix the scorer's target")
    if problems is None:
        own.raise_if_any()


def _is_plain(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool, list, dict))
