"""Which records a run covers (evaluated slices, --sample, --limit), decided from counts.

A slice's sample is drawn from how many records match it (and how many fall in each stratum), not
from the records themselves: `random.sample` picks positions from the population's length alone,
so drawing positions and then keeping the records at those positions while the items stream past
selects exactly the records a sample of the whole list would. Nothing here holds the items: a
selection keeps only the sampled positions (at most the sample's size).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from harness.config.suite import SliceSpec
from harness.errors import UserError

if TYPE_CHECKING:
    from harness.config.datasets import Item


@dataclass
class SliceCounts:
    """What a pass over the records tells each slice: how many match its filters, and (for a
    stratified sample) how many of those fall in each stratum."""

    records: int = 0
    fields: set[str] = field(default_factory=set)
    """Every field name some record has (for the 'no record has field' check)."""
    matches: Counter[str] = field(default_factory=Counter)
    strata: dict[str, Counter[str]] = field(default_factory=dict)

    def count(self, item: Item, slices: list[SliceSpec]) -> None:
        self.records += 1
        self.fields.update(item.fields)
        for spec in slices:
            if matches(item, spec):
                self.matches[spec.name] += 1
                if spec.stratify_by is not None:
                    self.strata.setdefault(spec.name, Counter())[stratum(item, spec.stratify_by)] += 1


class Picker:
    """Keeps the records at chosen positions of a stream: the first n, a seeded sample of `total`,
    or a stratified one (positions within each stratum)."""

    def __init__(self, total: int, *, first_n: int | None = None, sample: int | None = None,
                 stratify_by: str | None = None, strata: Counter[str] | None = None, seed: int = 0) -> None:
        self.first_n, self.stratify_by = first_n, stratify_by
        self.keep: set[int] | None = None
        self.keep_in: dict[str, set[int]] | None = None
        self.seen: Counter[str] = Counter()
        self.position = 0
        if first_n is not None or sample is None or sample >= total:
            return
        rng = random.Random(seed)
        if stratify_by is None:
            self.keep = set(rng.sample(range(total), sample))
        else:
            self.keep_in = _stratified_positions(strata or Counter(), total, sample, rng)

    @property
    def size(self) -> int | None:
        """How many records it keeps of `total`, when that is known without the stream."""
        if self.keep is not None:
            return len(self.keep)
        if self.keep_in is not None:
            return sum(len(kept) for kept in self.keep_in.values())
        return None

    def takes(self, item: Item) -> bool:
        """Whether the next record of the stream (in order) is kept."""
        position = self.position
        self.position += 1
        if self.first_n is not None:
            return position < self.first_n
        if self.keep is not None:
            return position in self.keep
        if self.keep_in is not None:
            assert self.stratify_by is not None
            key = stratum(item, self.stratify_by)
            in_stratum = self.seen[key]
            self.seen[key] += 1
            return in_stratum in self.keep_in.get(key, ())
        return True


def _stratified_positions(strata: Counter[str], total: int, size: int, rng: random.Random) -> dict[str, set[int]]:
    """Proportional allocation (largest remainder), then a seeded sample within each stratum
    (positions within the stratum, in the order its records come)."""
    shares = {key: size * count / total for key, count in sorted(strata.items())}
    counts = {key: int(share) for key, share in shares.items()}
    leftover = size - sum(counts.values())
    for key in sorted(shares, key=lambda k: shares[k] - counts[k], reverse=True)[:leftover]:
        counts[key] += 1
    return {key: set(rng.sample(range(strata[key]), counts[key])) for key in sorted(strata)}


def stratum(item: Item, field_name: str) -> str:
    return str(item.fields.get(field_name))


def matches(item: Item, spec: SliceSpec) -> bool:
    """A record without the field is not in the slice (records need not all have the same fields)."""
    for name, wanted in spec.where.items():
        allowed = wanted if isinstance(wanted, list) else [wanted]
        if name not in item.fields or item.fields[name] not in allowed:
            return False
    return True


class SliceSelection:
    """The union of the evaluated slices, in dataset order, each item tagged with every slice it
    is in; made from the counts of a first pass, applied to a later pass over the same records."""

    def __init__(self, slices: list[SliceSpec], evaluated: list[str], counts: SliceCounts, source: str) -> None:
        self.slices, self.evaluated = slices, set(evaluated)
        self.counts = counts
        for spec in slices:
            known = counts.fields
            for name in spec.where:
                if name not in known:
                    raise UserError(f"slice {spec.name!r} filters on field {name!r}, which no record has",
                                    file=source, hint=f"fields are: {sorted(known)}")
            if spec.name in self.evaluated and not self._chosen(spec):
                raise UserError(f"slice {spec.name!r} selects no items from {counts.records} records",
                                file=source, hint="check its where: filters")

    def _chosen(self, spec: SliceSpec) -> int:
        found = self.counts.matches[spec.name]
        if spec.first_n is not None:
            return min(found, spec.first_n)
        return found if spec.sample is None else min(found, spec.sample)

    def _pickers(self) -> list[tuple[SliceSpec, Picker]]:
        """Fresh for each pass: a picker counts the positions it has seen."""
        return [(spec, Picker(self.counts.matches[spec.name], first_n=spec.first_n, sample=spec.sample,
                              stratify_by=spec.stratify_by, strata=self.counts.strata.get(spec.name), seed=spec.seed))
                for spec in self.slices]

    def apply(self, items: Iterable[Item]) -> Iterator[Item]:
        pickers = self._pickers()
        for item in items:
            tags = tuple(spec.name for spec, picker in pickers if matches(item, spec) and picker.takes(item))
            if any(name in self.evaluated for name in tags):
                yield replace(item, slices=tags)


@dataclass(frozen=True)
class RunSample:
    """--sample: a seeded (optionally stratified) sample of the selected items."""

    size: int
    stratify_by: str | None
    seed: int


def count_selected(items: Iterable[Item], stratify_by: str | None) -> tuple[int, Counter[str], bool]:
    """How many items, how many in each stratum, and whether every one has the stratifying field."""
    total, strata, all_have = 0, Counter[str](), True
    for item in items:
        total += 1
        if stratify_by is not None:
            all_have = all_have and stratify_by in item.fields
            strata[stratum(item, stratify_by)] += 1
    return total, strata, all_have


def take(items: Iterable[Item], picker: Picker | None, limit: int | None) -> Iterator[Item]:
    """The items a picker keeps, then at most `limit` of them."""
    kept = 0
    for item in items:
        if picker is not None and not picker.takes(item):
            continue
        if limit is not None and kept >= limit:
            return
        kept += 1
        yield item
