"""Pass@k (Chen et al. 2021, unbiased estimator) and bootstrap confidence intervals.

For one problem with ``n`` samples of which ``c`` are correct,

    pass@k = 1 - C(n-c, k) / C(n, k) = 1 - prod_{j=n-c+1}^{n} (1 - k/j)

and pass@k = 1 when ``n - c < k`` (every k-subset then contains a correct sample).
The product form never forms huge binomials, so it is exact to float precision for
any n. A benchmark's Pass@k is the mean over its problems; confidence intervals are a
percentile bootstrap over problems.

No torch here: this module must import in milliseconds.
"""

from __future__ import annotations

import numbers
from typing import Sequence

import numpy as np


def _as_int_array(name: str, value) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype == bool or not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise ValueError(f"{name} must be an integer or an array of integers, got dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.floating):
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            raise ValueError(f"{name} must hold whole numbers, got {value!r}")
        arr = arr.astype(np.int64)
    return arr.astype(np.int64, copy=False)


def _pass_at_k_one(n: int, c: int, k: int) -> float:
    if n - c < k:
        return 1.0
    j = np.arange(n - c + 1, n + 1, dtype=np.float64)
    return float(1.0 - np.prod(1.0 - k / j))


def pass_at_k(n, c, k):
    """Unbiased pass@k for ``n`` samples with ``c`` correct.

    ``n``, ``c`` and ``k`` may be scalars or NumPy arrays (broadcast together). Returns a
    float when every argument is a scalar, otherwise an ndarray of the broadcast shape.
    Raises ValueError for k < 1, negative n or c, c > n, or k > n.
    """
    scalar = all(np.ndim(v) == 0 for v in (n, c, k))
    n_arr, c_arr, k_arr = (_as_int_array(name, v) for name, v in (("n", n), ("c", c), ("k", k)))
    if np.any(k_arr < 1):
        raise ValueError(f"k must be >= 1, got {k!r}")
    if np.any(n_arr < 0):
        raise ValueError(f"n must be >= 0, got {n!r}")
    if np.any(c_arr < 0):
        raise ValueError(f"c must be >= 0, got {c!r}")
    n_b, c_b, k_b = np.broadcast_arrays(n_arr, c_arr, k_arr)
    if np.any(c_b > n_b):
        raise ValueError(f"c must be <= n (c={c!r}, n={n!r})")
    if np.any(k_b > n_b):
        raise ValueError(f"k must be <= n: Pass@k is undefined for k > n (k={k!r}, n={n!r})")
    out = np.empty(n_b.shape, dtype=np.float64)
    for idx in np.ndindex(n_b.shape):
        out[idx] = _pass_at_k_one(int(n_b[idx]), int(c_b[idx]), int(k_b[idx]))
    return float(out) if scalar else out


def power_of_two_ks(k_max: int) -> list[int]:
    """[1, 2, 4, ..., k_max]; k_max is appended when it is not a power of two."""
    if isinstance(k_max, bool) or not isinstance(k_max, numbers.Integral) or k_max < 1:
        raise ValueError(f"k_max must be an integer >= 1, got {k_max!r}")
    k_max = int(k_max)
    ks = []
    k = 1
    while k <= k_max:
        ks.append(k)
        k *= 2
    if ks[-1] != k_max:
        ks.append(k_max)
    return ks


def passk_curve(n, correct_counts, ks: Sequence[int]) -> dict[int, float]:
    """Mean pass@k over problems for each k. ``n`` is a scalar or one value per problem."""
    counts = np.asarray(correct_counts)
    if counts.ndim != 1 or counts.size == 0:
        raise ValueError("correct_counts must be a non-empty 1-D sequence (one count per problem)")
    return {int(k): float(np.mean(pass_at_k(n, counts, int(k)))) for k in ks}


def bootstrap_ci(
    per_problem_values,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean over problems (resampling problems with replacement)."""
    values = np.asarray(per_problem_values, dtype=np.float64)
    if values.ndim != 1 or values.size == 0:
        raise ValueError("per_problem_values must be a non-empty 1-D sequence")
    if not np.all(np.isfinite(values)):
        raise ValueError("per_problem_values must be finite")
    if int(n_boot) < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot!r}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    rng = np.random.default_rng(seed)
    p = values.size
    means = np.empty(int(n_boot), dtype=np.float64)
    # Chunk the resampling so memory stays bounded for large suites.
    step = max(1, 2_000_000 // p)
    for start in range(0, int(n_boot), step):
        stop = min(int(n_boot), start + step)
        idx = rng.integers(0, p, size=(stop - start, p))
        means[start:stop] = values[idx].mean(axis=1)
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(means, [alpha, 1.0 - alpha])
    return float(lo), float(hi)
