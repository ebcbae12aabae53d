"""Safe YAML loading that remembers where each value came from, for error messages with lines."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from harness.errors import UserError


class YamlSource:
    """A YAML file loaded with safe_load, plus its node tree to map field paths to lines."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise UserError("file not found", file=str(path)) from None
        except UnicodeDecodeError as exc:
            raise UserError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", file=str(path)) from None
        try:
            self.data: Any = yaml.safe_load(self.text)
            self._root = yaml.compose(self.text, Loader=yaml.SafeLoader)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else None
            problem = getattr(exc, "problem", None) or str(exc)
            raise UserError(f"malformed YAML: {problem}", file=str(path), location=where) from None

    def line_of(self, loc: Sequence[str | int]) -> int | None:
        """1-based line of the deepest node on `loc` that exists in the file."""
        node = self._root
        line = node.start_mark.line + 1 if node is not None else None
        for key in loc:
            node = _child(node, key)
            if node is None:
                break
            line = node.start_mark.line + 1
        return line

    def where(self, loc: Sequence[str | int]) -> str:
        path = ".".join(str(part) for part in loc) or "(top level)"
        line = self.line_of(loc)
        return f"line {line}, {path}" if line else path


def _child(node: yaml.Node | None, key: str | int) -> yaml.Node | None:
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if key_node.value == key:
                return value_node
    if isinstance(node, yaml.SequenceNode) and isinstance(key, int) and 0 <= key < len(node.value):
        return node.value[key]
    return None
