"""Baselines: the last accepted results of a suite, committed to git as
baselines/<suite>/<name>.json, with the history of who set them, when and from which run.

Two formats, both read: a baseline of fewer than LINE_FORMAT_ITEMS items is one JSON document
(version 1); a larger one is JSON Lines (version 2): a header line (the baseline without its
items, and how many follow), then one line per item. A 100,000-item baseline as one document
is ~40 MB that has to be parsed whole; as lines it is read item by item, each kept only as far
as the comparison needs it.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import subprocess
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Final, Literal

from pydantic import BaseModel, Field, ValidationError

from harness.compare.baseline_lines import lean_item_line
from harness.compare.snapshot import ItemRecord, RunSnapshot, Shared, compact_record, snapshot_json
from harness.errors import UserError
from harness.runs.manifest import now_iso, write_atomically

BASELINE_VERSION: Final = 1
LINES_VERSION: Final = 2
LINES_FORMAT: Final = "evalbatch-baseline-lines"
LINE_FORMAT_ITEMS = 2000
"""From this many items on, a baseline is written as lines."""



class ItemLine(BaseModel):
    """One item line of a line-format baseline."""

    id: str
    record: ItemRecord


class BaselineEvent(BaseModel):
    name: str
    from_run: str
    prompt: str
    model: str
    set_at: str
    set_by: str
    note: str = ""
    gate: str | None = Field(default=None, description="The verdict of the run's latest gate when it was set "
                             "(None: never gated, or a history entry from before gates were recorded).")
    forced: bool = Field(default=False, description="Set with --force over a failed gate.")


class Baseline(BaseModel):
    version: Literal[1, 2] = BASELINE_VERSION
    """The format of the file it was read from (1: one document, 2: lines)."""
    name: str
    set_at: str
    set_by: str
    snapshot: RunSnapshot
    history: list[BaselineEvent]


class BaselineHeader(BaseModel):
    """The first line of a baseline in the line format; `snapshot` has no items (they follow)."""

    format: Literal["evalbatch-baseline-lines"] = LINES_FORMAT
    version: Literal[2] = LINES_VERSION
    name: str
    set_at: str
    set_by: str
    history: list[BaselineEvent]
    snapshot: RunSnapshot
    items: int = Field(description="How many item lines (ItemLine) follow, one per item.")


def baseline_path(project_dir: Path, suite: str, name: str) -> Path:
    return project_dir / "baselines" / suite / f"{name}.json"


def set_baseline(project_dir: Path, snapshot: RunSnapshot, name: str, note: str = "",
                 line_format_items: int = LINE_FORMAT_ITEMS, gate: str | None = None, forced: bool = False) -> Path:
    """Writes (or replaces) the baseline, carrying its history forward. `gate`: the run's gate
    verdict, kept in the history with `forced` so a baseline set over a failed gate stays visible."""
    path = baseline_path(project_dir, snapshot.fingerprints.suite, name)
    history = read_baseline_header(path).history if path.is_file() else []
    event = BaselineEvent(name=name, from_run=snapshot.run_id, prompt=snapshot.fingerprints.prompt,
                          model=snapshot.fingerprints.model, set_at=now_iso(), set_by=current_user(project_dir), note=note,
                          gate=gate, forced=forced)
    path.parent.mkdir(parents=True, exist_ok=True)
    if len(snapshot.items) < line_format_items:
        baseline = Baseline(name=name, set_at=event.set_at, set_by=event.set_by, snapshot=snapshot,
                            history=history + [event])
        write_atomically(path, snapshot_json(baseline))
        return path
    header = BaselineHeader(name=name, set_at=event.set_at, set_by=event.set_by, history=history + [event],
                            snapshot=snapshot.model_copy(update={"items": {}}), items=len(snapshot.items))
    temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    with temporary.open("w", encoding="utf-8") as handle:
        handle.write(_line(header.model_dump(mode="json")))
        for item_id, record in snapshot.items.items():
            handle.write(ItemLine(id=item_id, record=record).model_dump_json() + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    return path


def _line(value: dict) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")) + "\n"


def load_baseline(path: Path) -> Baseline:
    return read_baseline(path)[0]


def read_baseline(path: Path, keep_fields: Collection[str] | None = None) -> tuple[Baseline, str]:
    """The baseline and the sha256 of the bytes it was read from (one read: a gate records exactly
    what it compared with). keep_fields: for a comparison only, the item fields it needs; the
    others and the output hashes are dropped as items are read (None keeps everything)."""
    try:
        with path.open("rb") as handle:
            first = handle.readline()
            header = _header(first)
            if header is None:  # one JSON document
                data = first + handle.read()
                baseline = Baseline.model_validate_json(data)
                if keep_fields is not None:
                    shared = Shared()
                    for record in baseline.snapshot.items.values():
                        compact_record(record, keep_fields, shared)
                return baseline, hashlib.sha256(data).hexdigest()
            digest = hashlib.sha256(first)
            items = dict(_item_lines(handle, digest, path, keep_fields))
    except FileNotFoundError:
        known = sorted(p.stem for p in path.parent.glob("*.json")) if path.parent.is_dir() else []
        raise UserError("no such baseline", file=str(path),
                        hint=f"baselines of this suite: {known}" if known else
                        "create one with: evalbatch baseline set SUITE --from RUN_ID") from None
    except ValueError as exc:
        raise UserError(f"not a valid baseline file: {exc}", file=str(path)) from None
    if len(items) != header.items:
        raise UserError(f"not a valid baseline file: its header announces {header.items} items, it holds "
                        f"{len(items)} (cut off?)", file=str(path))
    snapshot = header.snapshot.model_copy(update={"items": items})
    return Baseline(version=LINES_VERSION, name=header.name, set_at=header.set_at, set_by=header.set_by,
                    snapshot=snapshot, history=header.history), digest.hexdigest()


def read_baseline_header(path: Path) -> Baseline:
    """The baseline's name, history and fingerprints without its items (for a line-format file,
    without reading them; a one-document file is read whole)."""
    try:
        with path.open("rb") as handle:
            header = _header(handle.readline())
    except ValueError as exc:
        raise UserError(f"not a valid baseline file: {exc}", file=str(path)) from None
    if header is None:
        return load_baseline(path)
    return Baseline(version=LINES_VERSION, name=header.name, set_at=header.set_at, set_by=header.set_by,
                    snapshot=header.snapshot, history=header.history)


def _header(first: bytes) -> BaselineHeader | None:
    """The header of a line-format baseline; None for a one-document baseline (whose first line
    is "{" alone, or the whole document when it was written on one line)."""
    try:
        value = json.loads(first)
    except ValueError:
        return None
    if not isinstance(value, dict) or value.get("format") != LINES_FORMAT:
        return None
    return BaselineHeader.model_validate(value)


def _item_lines(handle, digest, path: Path, keep_fields: Collection[str] | None) -> Iterator[tuple[str, ItemRecord]]:
    shared = Shared()
    for number, raw in enumerate(handle, start=2):
        digest.update(raw)
        if not raw.strip():
            continue
        if keep_fields is not None:
            # A comparison reads 100,000 lines: those in the shape the header's version writes are
            # taken as they are; anything else goes through the model, which accepts or names the problem.
            lean = lean_item_line(raw, keep_fields, shared)
            if lean is not None:
                yield lean
                continue
        try:
            line = ItemLine.model_validate_json(raw)
        except ValidationError as exc:
            raise UserError(f"not a valid baseline file: line {number}: {exc}", file=str(path)) from None
        if keep_fields is not None:
            compact_record(line.record, keep_fields, shared)
        yield line.id, line.record


def current_user(project_dir: Path | None = None) -> str:
    """Who set it, for the history: git's user name if configured, else the login name."""
    if os.environ.get("GIT_AUTHOR_NAME"):
        return os.environ["GIT_AUTHOR_NAME"]
    try:
        configured = subprocess.run(["git", "config", "user.name"], cwd=project_dir, capture_output=True,
                                    text=True, check=False, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        configured = ""
    if configured:
        return configured
    if os.environ.get("USER"):
        return os.environ["USER"]
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
