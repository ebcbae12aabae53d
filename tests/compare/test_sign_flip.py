"""The batched sign-flip permutation test gives scipy.stats.permutation_test's p-values: the same
exactly when every sign pattern is enumerated, the same within Monte Carlo error otherwise."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import stats

from harness.compare import sign_flip
from harness.compare.sign_flip import sign_flip_p


def scipy_p(values: np.ndarray, n_resamples: int, seed: int) -> float:
    return float(stats.permutation_test((values,), lambda x, axis: np.mean(x, axis=axis), permutation_type="samples",
                                        vectorized=True, n_resamples=n_resamples,
                                        rng=np.random.default_rng(seed)).pvalue)


def test_enumerated_sign_patterns_match_scipy_and_a_plain_enumeration(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(20)
    monkeypatch.setattr(sign_flip, "_BATCH_CELLS", 50)  # several batches of patterns
    for n in (2, 3, 6, 10, 13):
        for values in (rng.normal(0.2, 1, n), rng.integers(-2, 3, n).astype(float), np.r_[np.zeros(n - 1), 1.0]):
            p = sign_flip_p(values, 9999, seed=0)
            assert p == pytest.approx(scipy_p(values, 9999, 0), abs=1e-12)
            observed = abs(values.mean())
            means = [abs(np.mean(values * np.array(signs))) for signs in itertools.product([-1, 1], repeat=n)]
            assert p == pytest.approx(np.mean(np.array(means) >= observed - 1e-12), abs=1e-12)


def test_random_sign_patterns_agree_with_scipy_within_monte_carlo_error() -> None:
    rng = np.random.default_rng(21)
    for n, shift in ((14, 0.0), (40, 0.3), (200, 0.1), (997, 0.02), (997, 0.0)):
        values = rng.normal(shift, 1, n)
        ours, theirs = sign_flip_p(values, 9999, seed=1), scipy_p(values, 9999, 1)
        # Each is a proportion of 9,999 draws: their difference has SD <= sqrt(2 * 0.25 / 9999) ~ 0.007 (x2 two-sided).
        assert ours == pytest.approx(theirs, abs=0.06)
    assert sign_flip_p(np.zeros(50), 9999, 0) == 1.0 and sign_flip_p(np.array([3.0]), 9999, 0) == 1.0
    # Seeded: the same values give the same p.
    values = rng.normal(0.1, 1, 300)
    assert sign_flip_p(values, 999, 5) == sign_flip_p(values, 999, 5)


def test_a_strong_shift_is_found_and_no_shift_is_not() -> None:
    rng = np.random.default_rng(22)
    assert sign_flip_p(rng.normal(1.0, 1, 500), 9999, 0) == pytest.approx(2 / 10000)
    null_ps = [sign_flip_p(rng.normal(0, 1, 60), 999, seed) for seed in range(200)]
    assert 0.02 < np.mean(np.array(null_ps) < 0.05) < 0.09
