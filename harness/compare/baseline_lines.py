"""Item lines of a line-format baseline read straight into a comparison's compact records.

Validating each of 100,000 lines with the ItemLine model, then compacting the record it built,
was most of the time a gate spent reading its baseline. A line is read here only when every
value has exactly the type the model writes (the file's header, validated, says which version
wrote it); any other line returns None and is read by the model, which accepts it or says what
is wrong with it, as before.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Collection
from typing import Any

from harness.compare.snapshot import ItemRecord, Shared, SharedKeyScores

_SHORT = 64
"""Outputs up to this long are interned: short answers repeat across items."""
_decode = json.JSONDecoder().decode


def lean_item_line(raw: bytes, keep_fields: Collection[str], shared: Shared) -> tuple[str, ItemRecord] | None:
    """(item ID, compact record) of one item line, or None if it is not exactly as written."""
    try:
        line = _decode(raw.decode("utf-8"))
        record = line["record"]
        item_id = line["id"]
        if type(item_id) is not str or type(record) is not dict or len(line) != 2:
            return None
        return item_id, _record(record, keep_fields, shared)
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def _record(record: dict[str, Any], keep_fields: Collection[str], shared: Shared) -> ItemRecord:
    """Raises TypeError for any value of another type than the model writes."""
    scores = record["scores"]
    names = tuple(scores)
    values = tuple(_numbers(epochs, float) for epochs in scores.values())
    fields = record.get("fields", {})
    kept = tuple((key, sys.intern(_text(value))) for key, value in fields.items() if key in keep_fields)
    outputs = tuple(sys.intern(o) if o is not None and len(o) <= _SHORT else o
                    for o in _texts(record["outputs"]))
    slices = tuple(_texts(record["slices"], optional=False))
    slices = shared.slices.setdefault(slices, slices)
    failed = record.get("failed", 0)
    if type(failed) is not int or type(fields) is not dict:
        raise TypeError("failed / fields")
    return ItemRecord(
        slices=slices, scores=SharedKeyScores(shared.names.setdefault(names, names), values), output_sha256=(),
        outputs=outputs, output_lengths=_numbers(record["output_lengths"], int),
        cluster=_optional_text(record.get("cluster")), fields=shared.fields.setdefault(kept, dict(kept)),
        labels=tuple(None if label is None else sys.intern(label) for label in _texts(record.get("labels", []))),
        failed=failed)


def _numbers(values: Any, kind: type) -> tuple:
    """A JSON list of numbers (`kind`: float also takes integers) or nulls, as a tuple."""
    if type(values) is not list:
        raise TypeError("not a list")
    converted = False
    for value in values:
        found = type(value)
        if found is not kind and value is not None:
            if kind is float and found is int:
                converted = True
            else:
                raise TypeError("not a number")
    if converted:
        return tuple(float(v) if type(v) is int else v for v in values)
    return tuple(values)


def _texts(values: Any, optional: bool = True) -> list:
    if type(values) is not list:
        raise TypeError("not a list of text")
    for value in values:
        if type(value) is not str and not (optional and value is None):
            raise TypeError("not a list of text")
    return values


def _text(value: Any) -> str:
    if type(value) is not str:
        raise TypeError("not text")
    return value


def _optional_text(value: Any) -> str | None:
    return None if value is None else sys.intern(_text(value))
