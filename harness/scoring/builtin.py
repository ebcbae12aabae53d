"""The built-in scorers, registered exactly the way a plugin registers its own."""

from __future__ import annotations

import json
import math
import re
import string
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from harness.scoring.extract import ExtractionFailed, parse_json_value
from harness.scoring.registry import Score, ScoringContext, register_scorer


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _verdict(ok: bool, **detail: Any) -> Score:
    return Score(1.0 if ok else 0.0, ok, detail)


def normalize_text(value: Any) -> str:
    """Lower case, no punctuation, single spaces: the usual 'normalized match' (SQuAD style)."""
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    text = text.lower().translate(str.maketrans("", "", string.punctuation))
    return " ".join(text.split())


class ExactParams(_Params):
    case_sensitive: bool = True
    strip: bool = True


@register_scorer("exact_match", params=ExactParams)
def exact_match(params: ExactParams, context: ScoringContext):
    def prepare(value: Any) -> str:
        text = "" if value is None else str(value)
        text = text.strip() if params.strip else text
        return text if params.case_sensitive else text.lower()

    return lambda answer, expected: _verdict(prepare(answer) == prepare(expected))


@register_scorer("normalized_match")
def normalized_match(params: _Params, context: ScoringContext):
    return lambda answer, expected: _verdict(normalize_text(answer) == normalize_text(expected))


class IncludesParams(_Params):
    value: str | None = Field(default=None, description="Text to look for; default: the target field.")
    case_sensitive: bool = False


@register_scorer("includes", params=IncludesParams, needs_target=False)
def includes(params: IncludesParams, context: ScoringContext):
    def grade(answer: Any, expected: Any) -> Score:
        needle = params.value if params.value is not None else expected
        if needle is None:
            return _verdict(False, error="no value to look for: set value or target")
        haystack, needle = str(answer), str(needle)
        if not params.case_sensitive:
            haystack, needle = haystack.lower(), needle.lower()
        return _verdict(needle in haystack)

    return grade


class RegexParams(_Params):
    pattern: str
    full_match: bool = False

    @model_validator(mode="after")
    def _compiles(self) -> RegexParams:
        try:
            re.compile(self.pattern)
        except re.error as exc:
            raise ValueError(f"invalid regex {self.pattern!r}: {exc}") from None
        return self


@register_scorer("regex", params=RegexParams, needs_target=False)
def regex(params: RegexParams, context: ScoringContext):
    compiled = re.compile(params.pattern)
    search = compiled.fullmatch if params.full_match else compiled.search
    return lambda answer, expected: _verdict(search(str(answer)) is not None)


class LabelParams(_Params):
    labels: list[str] = Field(min_length=2)
    case_sensitive: bool = False


@register_scorer("label_in_set", params=LabelParams, predicts_label=True, validates=True)
def label_in_set(params: LabelParams, context: ScoringContext):
    """Classification: maps the answer onto one label of the set, then compares with the target.

    The predicted label is kept in the detail (`label`, or null when the answer names no label),
    so label distributions can be compared between runs without ground truth.
    """
    fold = (lambda s: s.strip()) if params.case_sensitive else (lambda s: s.strip().lower())
    by_key = {fold(label): label for label in params.labels}
    # Longest first so "feature request" wins over a label that is its prefix.
    ordered = sorted(by_key, key=len, reverse=True)

    def predict(answer: Any) -> str | None:
        text = fold(str(answer or "")).strip(string.punctuation + " ")
        if text in by_key:
            return by_key[text]
        return next((by_key[key] for key in ordered if text.startswith(key)), None)

    def grade(answer: Any, expected: Any) -> Score:
        label = predict(answer)
        wanted = by_key.get(fold(str(expected)), expected)
        return _verdict(label is not None and label == wanted, label=label, expected=wanted)

    return grade


class JsonValidParams(_Params):
    json_schema: dict[str, Any] | None = Field(default=None, alias="schema", description="Inline JSON Schema.")
    schema_file: str | None = Field(default=None, description="JSON Schema file, relative to the suite.")

    @model_validator(mode="after")
    def _one_schema(self) -> JsonValidParams:
        if self.json_schema is not None and self.schema_file is not None:
            raise ValueError("use either schema or schema_file, not both")
        if self.json_schema is not None:
            import jsonschema  # here, not at the top: only suites with a schema pay for its import

            jsonschema.Draft202012Validator.check_schema(self.json_schema)
        return self


@register_scorer("json_valid", params=JsonValidParams, needs_target=False)
def json_valid(params: JsonValidParams, context: ScoringContext):
    schema = params.json_schema
    if params.schema_file:
        schema = json.loads((context.suite_dir / params.schema_file).read_text(encoding="utf-8"))
    validator = None
    if schema:
        import jsonschema  # here, not at the top: only suites with a schema pay for its import

        validator = jsonschema.Draft202012Validator(schema)

    def grade(answer: Any, expected: Any) -> Score:
        try:
            data = parse_json_value(answer)
        except ExtractionFailed as exc:
            return _verdict(False, error=str(exc))
        if validator is not None:
            error = next(iter(validator.iter_errors(data)), None)
            if error is not None:
                where = "/".join(str(p) for p in error.absolute_path) or "(root)"
                return _verdict(False, error=f"schema: {where}: {error.message}")
        return _verdict(True)

    return grade


class JsonFieldsParams(_Params):
    fields: list[str] | None = Field(default=None, description="Fields to compare; default: all of the target's.")
    normalize: bool = True


@register_scorer("json_fields", params=JsonFieldsParams, binary=False)
def json_fields(params: JsonFieldsParams, context: ScoringContext):
    """Fraction of expected fields the answer got right (each compared after normalization)."""

    def same(a: Any, b: Any) -> bool:
        if a is None or b is None:
            return a is None and b is None
        return normalize_text(a) == normalize_text(b) if params.normalize else a == b

    def grade(answer: Any, expected: Any) -> Score:
        if not isinstance(expected, dict):
            return Score(0.0, False, {"error": "target is not a JSON object"})
        try:
            data = parse_json_value(answer)
        except ExtractionFailed as exc:
            return Score(0.0, False, {"error": str(exc)})
        if not isinstance(data, dict):
            return Score(0.0, False, {"error": "answer is not a JSON object"})
        names = params.fields or list(expected)
        right = {name: same(data.get(name), expected.get(name)) for name in names}
        value = sum(right.values()) / len(names) if names else 0.0
        return Score(value, all(right.values()), {"fields": right})

    return grade


class NumericParams(_Params):
    abs_tol: float = Field(default=1e-9, ge=0)
    rel_tol: float = Field(default=0.0, ge=0)


_NUMBER = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?")


@register_scorer("numeric", params=NumericParams)
def numeric(params: NumericParams, context: ScoringContext):
    def as_number(value: Any) -> float | None:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        match = _NUMBER.search(str(value))
        return float(match.group(0).replace(",", "")) if match else None

    def grade(answer: Any, expected: Any) -> Score:
        got, want = as_number(answer), as_number(expected)
        if got is None or want is None:
            return _verdict(False, error="no number in the answer" if got is None else "target is not a number")
        return _verdict(math.isclose(got, want, rel_tol=params.rel_tol, abs_tol=params.abs_tol), number=got)

    return grade
