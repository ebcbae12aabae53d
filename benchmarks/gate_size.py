"""The binary gate's size, exactly: for each cell (n items, flip rate f, margin M) every outcome
(b regressions, c improvements) is enumerated with the true difference exactly at -M, and the
probability that the gate says PASS or WARN is summed. It must stay at or below the one-sided
alpha 0.025 in every cell. Prints the worst cells of the gate's score test and, for reference,
of the same test without its continuity correction.

    python benchmarks/gate_size.py            # the design grid (n 50-2000), about 20 s
    python benchmarks/gate_size.py --fine     # adds n 30-300 in steps of 5, flip rates in 0.01 steps
"""

from __future__ import annotations

import sys

import numpy as np
from scipy import stats

from harness.compare import paired_binary
from harness.compare.paired_binary import score_verdicts

ALPHA = 0.025
Z = float(stats.norm.isf(ALPHA))
TAIL = 1e-12


def outcomes(n: int, flip: float, margin: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(b, c, probability) for every outcome outside the 1e-12 tails of b + c ~ Binomial(n, f)."""
    low, high = stats.binom.ppf([TAIL, 1.0 - TAIL], n, flip).astype(int)
    totals = np.arange(max(low - 1, 0), min(high + 1, n) + 1)
    flips = np.repeat(totals, totals + 1)
    b = np.concatenate([np.arange(t + 1) for t in totals])
    probability = stats.binom.pmf(flips, n, flip) * stats.binom.pmf(b, flips, (flip + margin) / (2 * flip))
    return b, flips - b, probability


def size(n: int, flip: float, margin: float) -> float:
    b, c, probability = outcomes(n, flip, margin)
    return float(probability[np.isin(score_verdicts(b, c, n, margin, Z), ["PASS", "WARN"])].sum())


def grid(fine: bool) -> list[tuple[int, float, float]]:
    sizes = [50, 60, 80, 100, 150, 200, 300, 400, 600, 800, 1000, 1500, 2000]
    flips = [0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.3]
    if fine:
        sizes = sorted(set(sizes) | set(range(30, 301, 5)))
        flips = sorted(set(flips) | {round(f, 2) for f in np.arange(0.02, 0.301, 0.01)})
    return [(n, f, m) for n in sizes for f in flips for m in (0.02, 0.03, 0.05, 0.1) if f >= m]


def worst(cells: list[tuple[int, float, float]]) -> list[tuple[float, tuple[int, float, float]]]:
    return sorted(((size(*cell), cell) for cell in cells), reverse=True)[:3]


def main() -> None:
    cells = grid("--fine" in sys.argv)
    print(f"{len(cells)} cells; one-sided alpha {ALPHA}")
    corrected = worst(cells)
    paired_binary.CONTINUITY, kept = 0.0, paired_binary.CONTINUITY
    plain = worst(cells)
    paired_binary.CONTINUITY = kept
    for label, rows in (("score test as gated (continuity 1/4)", corrected), ("without the correction", plain)):
        print(label + ": " + "; ".join(f"{s:.4f} at n={n}, flip {f:g}, margin {m:g}" for s, (n, f, m) in rows))
    print(f"largest size / alpha: {corrected[0][0] / ALPHA:.3f} (must be <= 1)")


if __name__ == "__main__":
    main()
