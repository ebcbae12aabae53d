"""Answer extraction: the steps that turn raw model output into the value a scorer grades."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from harness.config.suite import ExtractStep


class ExtractionFailed(ValueError):
    """The output did not contain what an extraction step looks for."""


def run_extraction(output: str, steps: Sequence[ExtractStep]) -> Any:
    value: Any = output
    for step in steps:
        value = _apply(step, value)
    return value


def _apply(step: ExtractStep, value: Any) -> Any:
    if step.type == "json":
        return parse_json_value(value)
    if step.type == "json_field":
        data = parse_json_value(value) if isinstance(value, str) else value
        try:
            return dotted_get(data, step.path or "", strict=True)
        except KeyError:
            raise ExtractionFailed(f"no field {step.path!r} in the JSON") from None
    text = value if isinstance(value, str) else json.dumps(value)
    if step.type == "first_line":
        return next((line.strip() for line in text.splitlines() if line.strip()), "")
    if step.type == "last_line":
        return next((line.strip() for line in reversed(text.splitlines()) if line.strip()), "")
    if step.type == "strip":
        return text.strip()
    if step.type == "lower":
        return text.lower()
    if step.type == "regex":
        match = re.search(step.pattern or "", text)
        if match is None:
            raise ExtractionFailed(f"pattern {step.pattern!r} not found")
        return match.group(1) if match.groups() else match.group(0)
    raise AssertionError(f"unhandled extraction step {step.type}")


def parse_json_value(text: Any) -> Any:
    """The first JSON object or array in the text (models often wrap JSON in prose or fences)."""
    if not isinstance(text, str):
        return text
    decoder = json.JSONDecoder()
    for start, char in enumerate(text):
        if char in "{[":
            try:
                value, _ = decoder.raw_decode(text, start)
                return value
            except json.JSONDecodeError:
                continue
    raise ExtractionFailed("no JSON object in the output")


def dotted_get(data: Any, path: str, *, strict: bool = False) -> Any:
    """`customer.name` or `items.0.sku`; missing parts give None (or KeyError when strict)."""
    value = data
    for part in path.split(".") if path else []:
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        elif strict:
            raise KeyError(path)
        else:
            return None
    return value
