"""Pass@k estimator, k grid and bootstrap CI (pipeline.eval.passk)."""

from __future__ import annotations

from math import comb

import numpy as np
import pytest

from pipeline.eval.passk import bootstrap_ci, pass_at_k, passk_curve, power_of_two_ks


def brute_force(n: int, c: int, k: int) -> float:
    return 1.0 - comb(n - c, k) / comb(n, k)


@pytest.mark.parametrize(
    ("n", "c", "k", "expected"),
    [
        (4, 2, 2, 5 / 6),  # 1 - C(2,2)/C(4,2) = 1 - 1/6
        (10, 0, 1, 0.0),
        (10, 0, 5, 0.0),
        (10, 10, 3, 1.0),
        (10, 8, 3, 1.0),  # n - c = 2 < k = 3
        (10, 3, 1, 0.3),  # k = 1 is c / n
        (5, 1, 2, 1 - comb(4, 2) / comb(5, 2)),  # 1 - 6/10
        (256, 1, 256, 1.0),
        (256, 1, 128, 0.5),
    ],
)
def test_hand_computed_values(n, c, k, expected):
    got = pass_at_k(n, c, k)
    assert isinstance(got, float)
    assert got == pytest.approx(expected, abs=1e-12)


def test_matches_brute_force_on_grid():
    for n in range(1, 25):
        for c in range(0, n + 1):
            for k in range(1, n + 1):
                assert pass_at_k(n, c, k) == pytest.approx(brute_force(n, c, k), abs=1e-12), (n, c, k)


def test_large_n_is_stable():
    # Binomials this large overflow floats; the product form stays exact enough.
    assert pass_at_k(4096, 1, 1) == pytest.approx(1 / 4096)
    assert 0.0 < pass_at_k(4096, 3, 64) < 1.0
    assert pass_at_k(4096, 3, 64) == pytest.approx(brute_force(4096, 3, 64), rel=1e-10)


def test_array_broadcasting():
    c = np.array([0, 1, 2, 4])
    got = pass_at_k(4, c, 2)
    assert isinstance(got, np.ndarray) and got.shape == (4,)
    np.testing.assert_allclose(got, [0.0, 0.5, 5 / 6, 1.0])
    n = np.array([[4], [8]])
    grid = pass_at_k(n, np.array([1, 2]), 2)
    assert grid.shape == (2, 2)
    np.testing.assert_allclose(grid, [[brute_force(4, 1, 2), brute_force(4, 2, 2)], [brute_force(8, 1, 2), brute_force(8, 2, 2)]])
    np.testing.assert_allclose(pass_at_k(8, 2, np.array([1, 2, 4])), [brute_force(8, 2, k) for k in (1, 2, 4)])


@pytest.mark.parametrize(
    ("n", "c", "k"),
    [(4, 1, 5), (4, 5, 2), (4, 1, 0), (-1, 0, 1), (4, -1, 1), (4, 1, -2), (np.array([4, 2]), np.array([1, 1]), 3), (4.5, 1, 1)],
)
def test_errors(n, c, k):
    with pytest.raises(ValueError):
        pass_at_k(n, c, k)


def test_power_of_two_ks():
    assert power_of_two_ks(1) == [1]
    assert power_of_two_ks(16) == [1, 2, 4, 8, 16]
    assert power_of_two_ks(256) == [1, 2, 4, 8, 16, 32, 64, 128, 256]
    assert power_of_two_ks(100) == [1, 2, 4, 8, 16, 32, 64, 100]
    for bad in (0, -4, 2.0, True):
        with pytest.raises(ValueError):
            power_of_two_ks(bad)


def test_passk_curve_is_mean_over_problems():
    counts = [0, 1, 4]
    curve = passk_curve(4, counts, [1, 2, 4])
    assert list(curve) == [1, 2, 4]
    assert curve[1] == pytest.approx((0 + 0.25 + 1) / 3)
    assert curve[2] == pytest.approx((0 + 0.5 + 1) / 3)
    assert curve[4] == pytest.approx((0 + 1 + 1) / 3)
    with pytest.raises(ValueError):
        passk_curve(4, [], [1])


def test_bootstrap_all_equal_values_zero_width():
    lo, hi = bootstrap_ci([0.3] * 50, n_boot=200, seed=1)
    assert lo == pytest.approx(0.3) and hi == pytest.approx(0.3)


def test_bootstrap_reproducible_and_seed_dependent():
    values = np.random.default_rng(5).random(40)
    a = bootstrap_ci(values, n_boot=500, seed=3)
    b = bootstrap_ci(values, n_boot=500, seed=3)
    c = bootstrap_ci(values, n_boot=500, seed=4)
    assert a == b
    assert a != c
    assert a[0] < values.mean() < a[1]


def test_bootstrap_coverage_sanity():
    # Bernoulli(0.4) per-problem values: the 95% interval should cover 0.4 most of the time.
    rng = np.random.default_rng(0)
    covered = 0
    trials = 100
    for t in range(trials):
        values = (rng.random(200) < 0.4).astype(float)
        lo, hi = bootstrap_ci(values, n_boot=400, seed=t)
        covered += lo <= 0.4 <= hi
        assert lo <= values.mean() <= hi
    assert 0.85 <= covered / trials <= 1.0


def test_bootstrap_level_and_errors():
    values = np.linspace(0, 1, 30)
    narrow = bootstrap_ci(values, n_boot=500, seed=0, level=0.5)
    wide = bootstrap_ci(values, n_boot=500, seed=0, level=0.99)
    assert wide[0] < narrow[0] < narrow[1] < wide[1]
    with pytest.raises(ValueError):
        bootstrap_ci([], n_boot=10)
    with pytest.raises(ValueError):
        bootstrap_ci([0.1, 0.2], n_boot=0)
    with pytest.raises(ValueError):
        bootstrap_ci([0.1, 0.2], level=1.0)
