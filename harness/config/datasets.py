"""Datasets and evaluation slices: records from local JSONL/CSV/Parquet (or the hub when
online) through Hugging Face `datasets`, each with a stable ID and the line it came from."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.config.problems import InputProblems
from harness.config.selection import Picker, SliceCounts, SliceSelection, count_selected, take
from harness.config.suite import DatasetSpec, SliceSpec
from harness.errors import UserError

_FORMATS = {".jsonl": "jsonl", ".json": "jsonl", ".csv": "csv", ".parquet": "parquet"}
_BUILDERS = {"jsonl": "json", "csv": "csv", "parquet": "parquet"}


@dataclass(frozen=True)
class Item:
    """One dataset record with its stable ID, source location and the slices it belongs to."""

    id: str
    fields: dict[str, Any]
    location: str
    slices: tuple[str, ...] = ()
    cluster: str | None = None
    source: str | None = None
    """The file (or hub dataset) the record came from, for messages about it."""


@dataclass(frozen=True)
class Dataset:
    """A dataset read whole (small datasets and tests); runs read a DatasetFile record by record."""

    source: str
    fingerprint: str
    items: list[Item]


@dataclass
class DatasetFile:
    """A dataset to be read, and read again, record by record: a run's memory must not grow with
    its dataset. `fingerprint` is the file's SHA-256 (hashed as a stream), or the hub dataset's."""

    spec: DatasetSpec
    path: Path
    fmt: str
    source: str
    fingerprint: str
    table: Any = None
    """The Arrow-backed `datasets.Dataset` for CSV, Parquet and hub data (memory-mapped, not loaded)."""

    def items(self, problems: InputProblems | None = None) -> Iterator[Item]:
        """Every readable record as an Item, in file order; unreadable ones go to `problems` (or
        are skipped silently: a later pass over records already checked)."""
        own = problems if problems is not None else InputProblems()
        for where, record in self._records(own):
            yield _item(self.spec, record, where, self.source)

    def _records(self, problems: InputProblems) -> Iterator[tuple[str, dict[str, Any]]]:
        if self.fmt == "jsonl":
            yield from _read_jsonl(self.path, problems)
            return
        first = 2 if self.fmt == "csv" else 1  # a CSV record's line (after the header); otherwise its row
        label = "line" if self.fmt == "csv" else "row"
        number = first
        for batch in self.table.iter(batch_size=1000):
            names = list(batch)
            for values in zip(*batch.values(), strict=True):
                yield f"{label} {number}", dict(zip(names, values, strict=True))
                number += 1

    def check_unchanged(self) -> None:
        """The file must still be what was checked: a run stores what a later read renders."""
        if self.fmt != "hub" and _file_sha256(self.path) != self.fingerprint:
            raise UserError("the dataset file changed while the run was being planned", file=str(self.path),
                            hint="run the same command again once the file is written")


def open_dataset(spec: DatasetSpec, resolve: Callable[[str], Path]) -> DatasetFile:
    """`resolve` turns the suite-relative path into an absolute one. Reads no record yet."""
    path = resolve(spec.path)
    fmt = _format(spec, path)
    if fmt == "jsonl":
        # Parsed by us, not by pyarrow's JSON reader (it turns ISO date strings into timestamps),
        # and not through an Arrow table either: Arrow takes its columns from the first record,
        # which would drop a field every later record has and the first one lacks.
        return DatasetFile(spec, path, fmt, str(path), _file_sha256(path))
    table = _arrow_table(spec, fmt, path)
    if fmt == "hub":
        return DatasetFile(spec, path, fmt, spec.path, table._fingerprint, table)
    return DatasetFile(spec, path, fmt, str(path), _file_sha256(path), table)


def scan_dataset(dataset: DatasetFile, slices: list[SliceSpec], problems: InputProblems) -> SliceCounts:
    """The checking pass: every unreadable record and duplicate ID goes to `problems`; returns what
    the slices need to know (counts, not records)."""
    counts = SliceCounts()
    with _IdIndex() as ids:
        for item in dataset.items(problems):
            ids.add(item)
            counts.count(item, slices)
        ids.report_duplicates(dataset.source, problems)
    return counts


def load_dataset_items(spec: DatasetSpec, resolve: Callable[[str], Path],
                       problems: InputProblems | None = None) -> Dataset:
    """The whole dataset in memory. Unreadable lines and duplicate IDs go to `problems` (the bad
    lines are skipped) so the caller can report them with whatever else it finds; without a
    collector they raise here, all together."""
    own = problems if problems is not None else InputProblems()
    dataset = open_dataset(spec, resolve)
    scan_dataset(dataset, [], own)
    if problems is None:
        own.raise_if_any()
    return Dataset(source=dataset.source, fingerprint=dataset.fingerprint, items=list(dataset.items()))


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _format(spec: DatasetSpec, path: Path) -> str:
    """A hub dataset only when `format: hub` says so: guessing from a missing file's name would send
    a typo to the network (retrying for half a minute) instead of saying the file is not there."""
    fmt = spec.format or _FORMATS.get(path.suffix.lower())
    if fmt == "hub":
        return fmt
    if not path.is_file():
        near = [path.with_name(path.name + ext) for ext in _FORMATS]
        found = [p.name for p in near if p.is_file()]
        raise UserError("dataset file not found", file=str(path),
                        hint=(f"did you mean {found[0]}? " if found else "")
                        + "dataset.path is relative to the suite file; for a Hugging Face hub dataset "
                          "set dataset.format: hub")
    if fmt is None:
        raise UserError(f"cannot tell the format of {path.name}", file=str(path),
                        hint="set dataset.format to jsonl, csv or parquet")
    return fmt


def _arrow_table(spec: DatasetSpec, fmt: str, path: Path) -> Any:
    import datasets  # slow to import; only needed here

    datasets.disable_progress_bars()
    try:
        if fmt == "hub":
            return datasets.load_dataset(spec.path, split=spec.split)
        return datasets.load_dataset(_BUILDERS[fmt], data_files=str(path), split="train")
    except UserError:
        raise
    except Exception as exc:  # datasets/pyarrow raise many types for unreadable files
        raise UserError(f"cannot read the dataset: {type(exc).__name__}: {exc}",
                        file=spec.path if fmt == "hub" else str(path)) from None


def _read_jsonl(path: Path, problems: InputProblems) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every readable record with its line; each unreadable line is a problem, and reading goes on."""
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            where = f"line {number}"
            try:
                line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                problems.add(f"not UTF-8 text (byte {exc.start + 1} of the line)", file=str(path), location=where)
                continue
            # Without its line break, so the column of an error at the end of a cut-off line is on
            # that line (json.loads would place it at column 1 of the next).
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                problems.add(f"invalid JSON: {exc.msg} (column {exc.colno})", file=str(path), location=where)
                continue
            if not isinstance(record, dict):
                problems.add("each line must be a JSON object", file=str(path), location=where)
                continue
            if "\\u" in line and _has_lone_surrogate(record):
                problems.add("a \\uD800-\\uDFFF escape without its pair: not valid Unicode text, and no API "
                             "would accept it", file=str(path), location=where)
                continue
            yield where, record


def _has_lone_surrogate(record: dict[str, Any]) -> bool:
    """JSON may escape half of a UTF-16 pair ("\\ud800"); such a string cannot be encoded as UTF-8,
    so it would fail the run at its first write instead of here."""
    try:
        json.dumps(record, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _item(spec: DatasetSpec, record: dict[str, Any], where: str, source: str) -> Item:
    raw_id = record.get(spec.id_field) if spec.id_field else None
    item_id = str(raw_id) if raw_id is not None else content_id(record)
    cluster = record.get(spec.cluster_field) if spec.cluster_field else None
    return Item(id=item_id, fields=record, location=where, cluster=None if cluster is None else str(cluster),
                source=source)


def content_id(record: dict[str, Any]) -> str:
    canonical = json.dumps(record, sort_keys=True, ensure_ascii=False, default=str)
    return "h" + hashlib.sha256(canonical.encode()).hexdigest()[:15]


class _IdIndex:
    """Every item ID seen, in a temporary SQLite file rather than a set: a set of 200,000 IDs
    alone would cost more memory than the rest of a run's per-request state together."""

    def __enter__(self) -> _IdIndex:
        self.db = sqlite3.connect("")  # a private temporary database, on disk beyond its page cache
        self.db.execute("CREATE TABLE ids (seq INTEGER PRIMARY KEY, item_id TEXT NOT NULL, location TEXT NOT NULL)")
        self.db.execute("CREATE INDEX ids_by_id ON ids(item_id)")
        self.pending: list[tuple[str, str]] = []
        return self

    def __exit__(self, *exc: object) -> None:
        self.db.close()

    def add(self, item: Item) -> None:
        self.pending.append((item.id, item.location))
        if len(self.pending) >= 5000:
            self._flush()

    def _flush(self) -> None:
        self.db.executemany("INSERT INTO ids(item_id, location) VALUES (?, ?)", self.pending)
        self.pending.clear()

    def report_duplicates(self, source: str, problems: InputProblems) -> None:
        """Each ID found more than once, in the order of its first record, with all its lines."""
        self._flush()
        repeated = self.db.execute("SELECT item_id FROM ids GROUP BY item_id HAVING COUNT(*) > 1 ORDER BY MIN(seq)")
        for (item_id,) in repeated.fetchall():
            where = [row[0] for row in self.db.execute("SELECT location FROM ids WHERE item_id = ? ORDER BY seq",
                                                       (item_id,))]
            problems.add(f"duplicate item ID {item_id!r} (at {', '.join(where)})", file=source,
                         location=where[1],
                         hint="IDs must be unique; fix the id field or drop dataset.id_field to hash contents")


def select_slices(dataset: Dataset, slices: list[SliceSpec], evaluated: list[str]) -> list[Item]:
    """The union of the evaluated slices, in dataset order, each item tagged with every slice it is in."""
    counts = SliceCounts()
    for item in dataset.items:
        counts.count(item, slices)
    return list(SliceSelection(slices, evaluated, counts, dataset.source).apply(dataset.items))


def sample_items(items: list[Item], size: int, stratify_by: str | None, seed: int) -> list[Item]:
    """A seeded random sample (proportionally stratified by a field when given), in dataset order."""
    total, strata, _ = count_selected(items, stratify_by)
    picker = Picker(total, sample=size, stratify_by=stratify_by, strata=strata, seed=seed)
    return list(take(items, picker, None))


class SliceDigest:
    """A run's slice fingerprint: the dataset, the slice definitions and the selected items' IDs
    in order, fed one ID at a time as the items stream."""

    def __init__(self, dataset_fingerprint: str, slices: list[SliceSpec]) -> None:
        self.digest = hashlib.sha256(dataset_fingerprint.encode())
        self.digest.update(json.dumps([s.model_dump() for s in slices], sort_keys=True).encode())
        self.first = True

    def add(self, item_id: str) -> None:
        self.digest.update((item_id if self.first else f"\n{item_id}").encode())
        self.first = False

    def hexdigest(self) -> str:
        return self.digest.hexdigest()
