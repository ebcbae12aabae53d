"""Datasets and evaluation slices: records from local JSONL/CSV/Parquet (or the hub when
online) through Hugging Face `datasets`, each with a stable ID and the line it came from."""

from __future__ import annotations

import hashlib
import json
import random
from collections import defaultdict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from harness.config.problems import InputProblems
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
    source: str
    fingerprint: str
    items: list[Item]


def load_dataset_items(spec: DatasetSpec, resolve, problems: InputProblems | None = None) -> Dataset:
    """`resolve` turns the suite-relative path into an absolute one. Unreadable lines and duplicate
    IDs go to `problems` (the bad lines are skipped) so the caller can report them with whatever
    else it finds; without a collector they raise here, all together."""
    own = problems if problems is not None else InputProblems()
    path = resolve(spec.path)
    fmt = _format(spec, path)
    records, fingerprint, source = _read(spec, fmt, path, own)
    items = [_item(spec, record, where, source) for where, record in records]
    _find_duplicate_ids(items, source, own)
    if problems is None:
        own.raise_if_any()
    return Dataset(source=source, fingerprint=fingerprint, items=items)


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


def _read(spec: DatasetSpec, fmt: str, path: Path,
          problems: InputProblems) -> tuple[list[tuple[str, dict]], str, str]:
    """The records, each with where it came from ("line 3", "row 3")."""
    if fmt == "jsonl":
        # Parsed here, not by pyarrow's JSON reader (it turns ISO date strings into timestamps),
        # and not through an Arrow table either: Arrow takes its columns from the first record,
        # which would drop a field every later record has and the first one lacks.
        return _read_jsonl(path, problems), hashlib.sha256(path.read_bytes()).hexdigest(), str(path)
    import datasets  # slow to import; only needed here

    datasets.disable_progress_bars()
    try:
        if fmt == "hub":
            loaded = datasets.load_dataset(spec.path, split=spec.split)
            return _located(fmt, loaded.to_list()), loaded._fingerprint, spec.path
        loaded = datasets.load_dataset(_BUILDERS[fmt], data_files=str(path), split="train")
    except UserError:
        raise
    except Exception as exc:  # datasets/pyarrow raise many types for unreadable files
        raise UserError(f"cannot read the dataset: {type(exc).__name__}: {exc}",
                        file=spec.path if fmt == "hub" else str(path)) from None
    return _located(fmt, loaded.to_list()), hashlib.sha256(path.read_bytes()).hexdigest(), str(path)


def _read_jsonl(path: Path, problems: InputProblems) -> list[tuple[str, dict[str, Any]]]:
    """Every readable record with its line; each unreadable line is a problem, and reading goes on."""
    records = []
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
            records.append((where, record))
    return records


def _has_lone_surrogate(record: dict[str, Any]) -> bool:
    """JSON may escape half of a UTF-16 pair ("\\ud800"); such a string cannot be encoded as UTF-8,
    so it would fail the run at its first write instead of here."""
    try:
        json.dumps(record, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _located(fmt: str, records: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """A CSV record's line (after the header); otherwise its row."""
    if fmt == "csv":
        return [(f"line {n + 2}", record) for n, record in enumerate(records)]
    return [(f"row {n + 1}", record) for n, record in enumerate(records)]


def _item(spec: DatasetSpec, record: dict[str, Any], where: str, source: str) -> Item:
    raw_id = record.get(spec.id_field) if spec.id_field else None
    item_id = str(raw_id) if raw_id is not None else content_id(record)
    cluster = record.get(spec.cluster_field) if spec.cluster_field else None
    return Item(id=item_id, fields=record, location=where, cluster=None if cluster is None else str(cluster),
                source=source)


def content_id(record: dict[str, Any]) -> str:
    canonical = json.dumps(record, sort_keys=True, ensure_ascii=False, default=str)
    return "h" + hashlib.sha256(canonical.encode()).hexdigest()[:15]


def _find_duplicate_ids(items: list[Item], source: str, problems: InputProblems) -> None:
    seen: dict[str, list[str]] = defaultdict(list)
    for item in items:
        seen[item.id].append(item.location)
    for item_id, where in seen.items():
        if len(where) > 1:
            problems.add(f"duplicate item ID {item_id!r} (at {', '.join(where)})", file=source,
                         location=where[1],
                         hint="IDs must be unique; fix the id field or drop dataset.id_field to hash contents")


def select_slices(dataset: Dataset, slices: list[SliceSpec], evaluated: list[str]) -> list[Item]:
    """The union of the evaluated slices, in dataset order, each item tagged with every slice it is in."""
    members: dict[str, set[str]] = {}
    for spec in slices:
        chosen = _apply_slice(dataset, spec)
        if spec.name in evaluated and not chosen:
            raise UserError(f"slice {spec.name!r} selects no items from {len(dataset.items)} records",
                            file=dataset.source, hint="check its where: filters")
        members[spec.name] = {item.id for item in chosen}
    wanted = set().union(*(members[name] for name in evaluated))
    return [replace(item, slices=tuple(name for name in members if item.id in members[name]))
            for item in dataset.items if item.id in wanted]


def _apply_slice(dataset: Dataset, spec: SliceSpec) -> list[Item]:
    _check_filter_fields(dataset, spec)
    items = [item for item in dataset.items if _matches(item, spec)]
    if spec.first_n is not None:
        return items[:spec.first_n]
    if spec.sample is None:
        return items
    return sample_items(items, spec.sample, spec.stratify_by, spec.seed)


def sample_items(items: list[Item], size: int, stratify_by: str | None, seed: int) -> list[Item]:
    """A seeded random sample (proportionally stratified by a field when given), in dataset order."""
    if size >= len(items):
        return items
    rng = random.Random(seed)
    if stratify_by is None:
        keep = set(rng.sample(range(len(items)), size))
        return [item for index, item in enumerate(items) if index in keep]
    return _stratified(items, size, stratify_by, rng)


def _matches(item: Item, spec: SliceSpec) -> bool:
    """A record without the field is not in the slice (records need not all have the same fields)."""
    for field, wanted in spec.where.items():
        allowed = wanted if isinstance(wanted, list) else [wanted]
        if field not in item.fields or item.fields[field] not in allowed:
            return False
    return True


def _check_filter_fields(dataset: Dataset, spec: SliceSpec) -> None:
    known = set().union(*(item.fields for item in dataset.items)) if dataset.items else set()
    for field in spec.where:
        if field not in known:
            raise UserError(f"slice {spec.name!r} filters on field {field!r}, which no record has",
                            file=dataset.source, hint=f"fields are: {sorted(known)}")


def _stratified(items: list[Item], size: int, stratify_by: str, rng: random.Random) -> list[Item]:
    """Proportional allocation (largest remainder), then a seeded sample within each stratum."""
    strata: dict[str, list[int]] = defaultdict(list)
    for index, item in enumerate(items):
        strata[str(item.fields.get(stratify_by))].append(index)
    shares = {key: size * len(idx) / len(items) for key, idx in sorted(strata.items())}
    counts = {key: int(share) for key, share in shares.items()}
    leftover = size - sum(counts.values())
    for key in sorted(shares, key=lambda k: shares[k] - counts[k], reverse=True)[:leftover]:
        counts[key] += 1
    keep: set[int] = set()
    for key, indexes in sorted(strata.items()):
        keep.update(rng.sample(indexes, counts[key]))
    return [item for index, item in enumerate(items) if index in keep]


def slice_fingerprint(dataset: Dataset, slices: list[SliceSpec], items: list[Item]) -> str:
    digest = hashlib.sha256(dataset.fingerprint.encode())
    digest.update(json.dumps([s.model_dump() for s in slices], sort_keys=True).encode())
    digest.update("\n".join(item.id for item in items).encode())
    return digest.hexdigest()
