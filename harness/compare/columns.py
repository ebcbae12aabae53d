"""The paired items of a comparison as arrays: each side's records are looked up once, and every
metric, drift signal, cluster and subset is then an array taken out of them once and indexed,
not a loop over 100,000 records per metric and per subset."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from harness.compare.snapshot import ItemRecord, RunSnapshot, is_refusal

_NO_SCORE: tuple[None] = (None,)


def matrix(rows: Sequence[Sequence[float | None]]) -> np.ndarray:
    """Items x epochs, NaN where an epoch has no value (or the item fewer epochs): the paired
    statistics take a matrix as it is, where a list of lists is converted item by item."""
    width = max((len(row) for row in rows), default=1)
    if all(len(row) == width for row in rows):
        return np.array(rows, dtype=float).reshape(len(rows), width)  # None becomes NaN
    result = np.full((len(rows), width), np.nan)
    for index, row in enumerate(rows):
        result[index, :len(row)] = np.array(row, dtype=float)
    return result


class SideColumns:
    """One side (baseline or candidate) of the paired items, in the order of `ids`."""

    def __init__(self, snapshot: RunSnapshot, ids: list[str]) -> None:
        self.ids = ids
        self.items: list[ItemRecord] = [snapshot.items[i] for i in ids]
        self._scores: dict[str, np.ndarray] = {}
        self._signals: dict[str, np.ndarray] = {}
        self._clusters: tuple[np.ndarray | None] | None = None

    def scores(self, metric: str) -> np.ndarray:
        """Items x epochs of `metric` (NaN: no score)."""
        if metric not in self._scores:
            self._scores[metric] = matrix([item.scores.get(metric, _NO_SCORE) for item in self.items])
        return self._scores[metric]

    def signal(self, name: str) -> np.ndarray:
        """Items x epochs of a drift signal: output_length, empty_output or refusal. Outputs
        repeat (labels, short answers): each distinct output is judged once."""
        if name not in self._signals:
            if name == "output_length":
                self._signals[name] = matrix([item.output_lengths for item in self.items])
            else:
                judge: Callable[[str | None], bool] = _is_empty if name == "empty_output" else is_refusal
                rows = [item.outputs for item in self.items]
                judged = {output: float(judge(output)) for row in set(rows) for output in row}
                judged[None] = math.nan
                self._signals[name] = matrix([[judged[output] for output in row] for row in rows])
        return self._signals[name]

    def clusters(self) -> np.ndarray | None:
        """Cluster codes per item (an item without a cluster is its own), numbered in the sorted
        order of the cluster IDs; None when no item has a cluster."""
        if self._clusters is None:
            labels = [item.cluster for item in self.items]
            if all(label is None for label in labels):
                self._clusters = (None,)
            else:
                named = np.array([label if label is not None else f"item:{item_id}"
                                  for label, item_id in zip(labels, self.ids, strict=True)], dtype=object)
                self._clusters = (np.unique(named, return_inverse=True)[1].astype(np.intp),)
        return self._clusters[0]

    def field(self, name: str) -> list[str]:
        """An item field's value per item ("" where missing)."""
        return [item.fields.get(name, "") for item in self.items]

    def in_slice(self, name: str) -> np.ndarray:
        return np.array([name in item.slices for item in self.items], dtype=bool)

    def failed(self) -> int:
        """Items with a failed request."""
        return sum(item.failed > 0 for item in self.items)


def _is_empty(output: str | None) -> bool:
    return output is not None and not output.strip()
