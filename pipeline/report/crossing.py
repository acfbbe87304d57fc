"""Stage ``crossing``: the k at which the base model catches up with an RL-trained method.

Yue et al. 2025 and Cheng et al. 2025 observe that RL raises Pass@k at small k while the
base model matches or overtakes it at large k. For each method and suite, with the
method's Pass@k averaged over seeds at every k,

    K* = min { k on the grid : Pass@k(base) >= Pass@k(method) − 1e-9 }

on the k grid the score files share (1, 2, 4, …, K; K = the suite's k_max), or ``none`` if
the base model stays below the method up to K. ``K* = 1`` means the method is no better
than the base model even at Pass@1. The tolerance 1e-9 (a fraction) only absorbs float
rounding when both curves reach 1.0.

Outputs ``crossing.{md,csv}``; CSV columns: ``method, suite, k_max, k_star`` (an integer or
``none``), ``base_pct_at_k_star, method_pct_at_k_star, diff_at_k_max_pp`` (method − base
at K, percentage points), ``n_seeds``.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.errors import PipelineError
from pipeline.io import write_text
from pipeline.report.scores import BASE, curve_points, load_score_items, row_order, signed

logger = logging.getLogger(__name__)

TOL = 1e-9
NONE = "none"
COLUMNS = (
    "method", "suite", "k_max", "k_star", "base_pct_at_k_star", "method_pct_at_k_star", "diff_at_k_max_pp", "n_seeds",
)
NOTE = (
    "K\\*: the smallest k on the grid 1, 2, 4, …, K at which the base model's Pass@k is at least the method's "
    "(method averaged over seeds); 'none': the method stays above the base model up to K. "
    "Δ@K: method − base at k = K, percentage points."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--passk", nargs="+", required=True, type=Path, help="Pass@k JSON files written by 'score'")
    parser.add_argument("--methods", nargs="+", required=True, help="method order (base is the reference)")
    parser.add_argument("--suites", nargs="+", required=True, help="suite order")
    parser.add_argument("--out-dir", required=True, type=Path, help="directory for crossing.{md,csv}")


def mean_curve(curves: pd.DataFrame, method: str, suite: str) -> tuple[pd.Series, int]:
    """Pass@k (fraction) vs k averaged over the method's seeds, on the ks every seed has; and the seed count."""
    sub = curves[(curves["method"] == method) & (curves["suite"] == suite)]
    if sub.empty:
        raise PipelineError(f"missing Pass@k results for method {method!r} on suite {suite!r}")
    pivot = sub.pivot_table(index="k", columns="seed", values="passk").dropna()
    return pivot.mean(axis=1).sort_index(), int(sub["seed"].nunique())


def crossing_point(ks, base, method, tol: float = TOL) -> int | None:
    """Smallest k with ``base >= method − tol`` (curves given on the same ks), None if none."""
    ks = np.asarray(ks)
    base = np.asarray(base, dtype=np.float64)
    method = np.asarray(method, dtype=np.float64)
    if not (ks.shape == base.shape == method.shape) or ks.ndim != 1:
        raise PipelineError("crossing point: ks, base and method curves must be 1-D and of the same length")
    order = np.argsort(ks)
    hits = np.flatnonzero(base[order] >= method[order] - tol)
    return int(ks[order][hits[0]]) if hits.size else None


def crossing_table(curves: pd.DataFrame, methods: list[str], suites: list[str]) -> pd.DataFrame:
    rows = []
    for method in [m for m in row_order(methods) if m != BASE]:
        for suite in suites:
            base_curve, _ = mean_curve(curves, BASE, suite)
            curve, n_seeds = mean_curve(curves, method, suite)
            ks = sorted(set(base_curve.index) & set(curve.index))
            if not ks:
                raise PipelineError(f"{suite!r}: base and {method!r} Pass@k curves share no k")
            k_max = int(ks[-1])
            b = base_curve.reindex(ks).to_numpy()
            m = curve.reindex(ks).to_numpy()
            k_star = crossing_point(ks, b, m)
            rows.append(
                {
                    "method": method,
                    "suite": suite,
                    "k_max": k_max,
                    "k_star": NONE if k_star is None else int(k_star),
                    "base_pct_at_k_star": np.nan if k_star is None else 100.0 * float(base_curve[k_star]),
                    "method_pct_at_k_star": np.nan if k_star is None else 100.0 * float(curve[k_star]),
                    "diff_at_k_max_pp": 100.0 * float(m[-1] - b[-1]),
                    "n_seeds": n_seeds,
                }
            )
    return pd.DataFrame(rows, columns=list(COLUMNS))


def to_markdown(table: pd.DataFrame) -> str:
    lines = ["| Method | Suite | K | K* | base Pass@K* (%) | method Pass@K* (%) | Δ@K (pp) | Seeds |",
             "|:---|:---|---:|---:|---:|---:|---:|---:|"]
    for r in table.itertuples(index=False):
        at = ("—", "—") if r.k_star == NONE else (f"{r.base_pct_at_k_star:.1f}", f"{r.method_pct_at_k_star:.1f}")
        lines.append(
            f"| {r.method} | {r.suite} | {r.k_max} | {r.k_star} | {at[0]} | {at[1]} | {signed(r.diff_at_k_max_pp)} | "
            f"{r.n_seeds} |"
        )
    lines += ["", NOTE, ""]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    curves = curve_points(load_score_items(args.passk))
    table = crossing_table(curves, args.methods, args.suites)
    out_dir = Path(args.out_dir)
    write_text(out_dir / "crossing.md", to_markdown(table))
    write_text(out_dir / "crossing.csv", table.to_csv(index=False, float_format="%.4f", na_rep="NaN"))
    logger.info("crossing: %d (method, suite) pairs written to %s/crossing.{md,csv}", len(table), out_dir)
    return 0
