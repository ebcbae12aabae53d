"""Datasets and evaluation slices: records from local JSONL/CSV/Parquet (or the hub when
online) through Hugging Face `datasets`, each with a stable ID and the line it came from."""

from __future__ import annotations

import hashlib
import json
import random
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


@dataclass(frozen=True)
class Dataset:
    source: str
    fingerprint: str
    items: list[Item]


def load_dataset_items(spec: DatasetSpec, resolve) -> Dataset:
    """`resolve` turns the suite-relative path into an absolute one."""
    path = resolve(spec.path)
    fmt = spec.format or _FORMATS.get(path.suffix.lower())
    if fmt is None and not path.exists() and "/" in spec.path and not spec.path.startswith("."):
        fmt = "hub"
    if fmt is None:
        if not path.exists():
            raise UserError("dataset file not found", file=str(path), hint="dataset.path is relative to the suite file")
        raise UserError(f"cannot tell the format of {path.name}", file=str(path),
                        hint="set dataset.format to jsonl, csv or parquet")
    if fmt != "hub" and not path.is_file():
        raise UserError("dataset file not found", file=str(path), hint="dataset.path is relative to the suite file")
    records, fingerprint, source = _read(spec, fmt, path)
    locations = _locations(fmt, path, len(records))
    items = [_item(spec, record, where) for record, where in zip(records, locations, strict=True)]
    _reject_duplicate_ids(items, source)
    return Dataset(source=source, fingerprint=fingerprint, items=items)


def _read(spec: DatasetSpec, fmt: str, path: Path) -> tuple[list[dict], str, str]:
    if fmt == "jsonl":
        # Parsed here, not by pyarrow's JSON reader (it turns ISO date strings into timestamps),
        # and not through an Arrow table either: Arrow takes its columns from the first record,
        # which would drop a field every later record has and the first one lacks.
        return _read_jsonl(path), hashlib.sha256(path.read_bytes()).hexdigest(), str(path)
    import datasets  # slow to import; only needed here

    datasets.disable_progress_bars()
    try:
        if fmt == "hub":
            loaded = datasets.load_dataset(spec.path, split=spec.split)
            return loaded.to_list(), loaded._fingerprint, spec.path
        loaded = datasets.load_dataset(_BUILDERS[fmt], data_files=str(path), split="train")
    except UserError:
        raise
    except Exception as exc:  # datasets/pyarrow raise many types for unreadable files
        raise UserError(f"cannot read the dataset: {type(exc).__name__}: {exc}",
                        file=spec.path if fmt == "hub" else str(path)) from None
    return loaded.to_list(), hashlib.sha256(path.read_bytes()).hexdigest(), str(path)


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    records = []
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                raise UserError(f"not UTF-8 text (byte {exc.start + 1} of the line)", file=str(path),
                                location=f"line {number}") from None
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise UserError(f"invalid JSON: {exc.msg} (column {exc.colno})", file=str(path),
                                location=f"line {number}") from None
            if not isinstance(record, dict):
                raise UserError("each line must be a JSON object", file=str(path), location=f"line {number}")
            records.append(record)
    return records


def _locations(fmt: str, path: Path, count: int) -> list[str]:
    if fmt == "jsonl":
        with path.open("rb") as handle:
            lines = [number for number, raw in enumerate(handle, start=1) if raw.strip()]
        if len(lines) == count:
            return [f"line {n}" for n in lines]
    if fmt == "csv":
        return [f"line {n + 2}" for n in range(count)]
    return [f"row {n + 1}" for n in range(count)]


def _item(spec: DatasetSpec, record: dict[str, Any], where: str) -> Item:
    raw_id = record.get(spec.id_field) if spec.id_field else None
    item_id = str(raw_id) if raw_id is not None else content_id(record)
    cluster = record.get(spec.cluster_field) if spec.cluster_field else None
    return Item(id=item_id, fields=record, location=where, cluster=None if cluster is None else str(cluster))


def content_id(record: dict[str, Any]) -> str:
    canonical = json.dumps(record, sort_keys=True, ensure_ascii=False, default=str)
    return "h" + hashlib.sha256(canonical.encode()).hexdigest()[:15]


def _reject_duplicate_ids(items: list[Item], source: str) -> None:
    seen: dict[str, list[str]] = defaultdict(list)
    for item in items:
        seen[item.id].append(item.location)
    duplicates = {item_id: where for item_id, where in seen.items() if len(where) > 1}
    if duplicates:
        listed = "; ".join(f"{item_id!r} at {', '.join(where)}" for item_id, where in list(duplicates.items())[:10])
        raise UserError(f"{len(duplicates)} duplicate item ID(s): {listed}", file=source,
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
    return [Item(item.id, item.fields, item.location,
                 tuple(name for name in members if item.id in members[name]), item.cluster)
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
