"""Group comparisons of entropies: Mann–Whitney U, rank-biserial effect size, and CIs of a
mean by a bootstrap over responses (tokens of one response are not independent draws).
"""

from __future__ import annotations

import math

import numpy as np


def mann_whitney(a, b) -> dict:
    """Two-sided Mann–Whitney U test of ``a`` against ``b``.

    Returns ``u`` (U statistic of ``a``), ``p_value`` and the rank-biserial correlation
    ``effect = 2U / (n_a n_b) - 1`` (= Cliff's delta: P(a > b) - P(a < b), in [-1, 1];
    positive when ``a`` tends to be larger). NaN when either group is empty.
    """
    from scipy.stats import mannwhitneyu

    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    if len(a) == 0 or len(b) == 0:
        return {"u": math.nan, "p_value": math.nan, "effect": math.nan}
    res = mannwhitneyu(a, b, alternative="two-sided", method="auto")
    u = float(res.statistic)
    p = float(res.pvalue)
    return {"u": u, "p_value": p, "effect": 2.0 * u / (len(a) * len(b)) - 1.0}


def cluster_bootstrap_mean_ci(
    values, clusters, n_boot: int = 1000, seed: int = 0, level: float = 0.95
) -> tuple[float, float, float]:
    """Mean of ``values`` and a percentile CI from resampling whole clusters (responses).

    Each resample draws the clusters with replacement and takes the ratio of the summed
    values to the summed counts, so long responses weigh as many tokens as they have.
    ``n_boot = 0`` or a single cluster gives a NaN interval.
    """
    values = np.asarray(values, dtype=float)
    if len(values) == 0:
        return math.nan, math.nan, math.nan
    mean = float(values.mean())
    codes, inverse = np.unique(np.asarray(clusters), return_inverse=True)
    n_clusters = len(codes)
    if n_boot <= 0 or n_clusters < 2:
        return mean, math.nan, math.nan
    sums = np.bincount(inverse, weights=values, minlength=n_clusters)
    counts = np.bincount(inverse, minlength=n_clusters).astype(float)
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot)
    block = max(1, 2_000_000 // n_clusters)  # bounded memory for many clusters
    for start in range(0, n_boot, block):
        m = min(block, n_boot - start)
        draws = rng.integers(0, n_clusters, size=(m, n_clusters))  # clusters drawn with replacement
        w = np.bincount((draws + n_clusters * np.arange(m)[:, None]).ravel(), minlength=m * n_clusters)
        w = w.reshape(m, n_clusters).astype(float)  # times each cluster was drawn, per resample
        means[start : start + m] = (w @ sums) / np.maximum(w @ counts, 1e-300)
    lo, hi = np.quantile(means, [(1 - level) / 2, 1 - (1 - level) / 2])
    return mean, float(lo), float(hi)


def compare(values_a, clusters_a, values_b, clusters_b, n_boot: int = 1000, seed: int = 0,
            ci_b: tuple[float, float, float] | None = None) -> dict:
    """Everything a comparison row needs: counts, means with CIs, difference, U test.

    ``ci_b``: the (mean, lo, hi) of ``values_b`` when already computed (one reference group
    compared with several others).
    """
    mean_a, lo_a, hi_a = cluster_bootstrap_mean_ci(values_a, clusters_a, n_boot, seed)
    mean_b, lo_b, hi_b = ci_b if ci_b is not None else cluster_bootstrap_mean_ci(values_b, clusters_b, n_boot, seed + 1)
    return {
        "n": len(values_a), "mean": mean_a, "ci_lo": lo_a, "ci_hi": hi_a,
        "n_other": len(values_b), "mean_other": mean_b, "ci_lo_other": lo_b, "ci_hi_other": hi_b,
        "diff": mean_a - mean_b if len(values_a) and len(values_b) else math.nan,
        **mann_whitney(values_a, values_b),
    }
