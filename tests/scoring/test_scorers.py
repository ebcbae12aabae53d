"""Each built-in scorer and extraction step on hand-made outputs."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from harness.config.suite import ScorerSpec
from harness.scoring.registry import ScoringContext, bind_scorers, validate_scorer_params


def score(spec: dict, output: str, item: dict | None = None, suite_dir: Path = Path(".")):
    [bound] = bind_scorers([ScorerSpec.model_validate(spec)], ScoringContext(suite_dir=suite_dir))
    return bound.score(output, item or {})


def test_exact_and_normalized_match():
    assert score({"type": "exact_match", "target": "a"}, " Paris ", {"a": "Paris"}).passed
    assert not score({"type": "exact_match", "target": "a"}, "paris", {"a": "Paris"}).passed
    assert score({"type": "exact_match", "target": "a", "case_sensitive": False}, "paris", {"a": "Paris"}).passed
    assert score({"type": "normalized_match", "target": "a"}, "  PARIS!! ", {"a": "paris"}).passed


def test_includes_and_regex():
    assert score({"type": "includes", "value": "refund"}, "We will REFUND you").passed
    assert score({"type": "includes", "target": "a"}, "the answer is 42", {"a": "42"}).passed
    assert not score({"type": "regex", "pattern": r"^\d+$", "full_match": True}, "42 apples").passed
    assert score({"type": "regex", "pattern": r"\d+"}, "42 apples").passed


def test_label_in_set_maps_answers_onto_labels():
    spec = {"type": "label_in_set", "target": "label", "labels": ["bug", "billing", "feature request"],
            "extract": [{"type": "first_line"}]}
    hit = score(spec, " Feature request\nTicket: next", {"label": "feature request"})
    assert hit.passed and hit.detail["label"] == "feature request"
    miss = score(spec, "billing.", {"label": "bug"})
    assert not miss.passed and miss.detail["label"] == "billing"
    invalid = score(spec, "no idea", {"label": "bug"})
    assert invalid.value == 0.0 and invalid.detail["label"] is None


def test_json_valid_with_inline_schema_and_file(tmp_path):
    schema = {"type": "object", "required": ["n"], "properties": {"n": {"type": "integer"}}}
    assert score({"type": "json_valid", "schema": schema}, 'Here: {"n": 3} done').passed
    bad = score({"type": "json_valid", "schema": schema}, '{"n": "three"}')
    assert not bad.passed and "schema: n" in bad.detail["error"]
    assert not score({"type": "json_valid"}, "not json at all").passed
    (tmp_path / "s.json").write_text('{"type": "array"}')
    assert score({"type": "json_valid", "schema_file": "s.json"}, "[1, 2]", suite_dir=tmp_path).passed


def test_json_fields_gives_partial_credit():
    expected = {"expected": {"customer": "Ana Ruiz", "date": "2025-03-01", "order_number": None}}
    result = score({"type": "json_fields", "target": "expected"},
                   '{"customer": "ana ruiz", "date": "2025-03-02", "order_number": null}', expected)
    assert result.value == pytest.approx(2 / 3)
    assert result.detail["fields"] == {"customer": True, "date": False, "order_number": True}
    only = score({"type": "json_fields", "target": "expected", "fields": ["date"]}, '{"date": "2025-03-01"}', expected)
    assert only.passed


def test_numeric_tolerance():
    spec = {"type": "numeric", "target": "a", "abs_tol": 0.001}
    assert score(spec, "The total is 1,234.005 EUR", {"a": 1234}).passed is False
    assert score(dict(spec, abs_tol=0.01), "about 1,234.005", {"a": "1234.0"}).passed
    assert not score(spec, "no number", {"a": 1}).passed


def test_extraction_steps():
    spec = {"type": "exact_match", "target": "a",
            "extract": [{"type": "json_field", "path": "result.value"}]}
    assert score(spec, 'prose {"result": {"value": "x"}}', {"a": "x"}).passed
    failed = score(spec, '{"other": 1}', {"a": "x"})
    assert not failed.passed and "extraction failed" in failed.detail["error"]
    regex = {"type": "exact_match", "target": "a", "extract": [{"type": "regex", "pattern": r"Answer: (\w+)"}]}
    assert score(regex, "Thinking...\nAnswer: yes", {"a": "yes"}).passed
    last = {"type": "exact_match", "target": "a", "extract": [{"type": "last_line"}, {"type": "lower"}]}
    assert score(last, "a\nB\n\n", {"a": "b"}).passed


def test_parameter_validation():
    with pytest.raises(ValueError, match="needs target"):
        validate_scorer_params(ScorerSpec(type="exact_match"))
    with pytest.raises(ValidationError):
        validate_scorer_params(ScorerSpec.model_validate({"type": "regex", "pattern": "("}))
    with pytest.raises(ValidationError):
        validate_scorer_params(ScorerSpec.model_validate({"type": "label_in_set", "target": "l", "labelz": []}))
