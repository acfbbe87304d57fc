"""Stage ``curves``: Pass@k and maj@k at every k of the grid, per method and suite.

The main table gives Pass@1 and Pass@K, the crossing table reads whole curves; this table is
the curves themselves: Pass@k and maj@k (the majority vote over k samples' extracted answers,
:mod:`pipeline.eval.majority`) on the k grid the score files of a suite share (1, 2, 4, …, K),
each the mean over a method's seeds, with the standard deviation over seeds in the CSV when
there are two or more. maj@k is ``—`` (CSV: NaN) when the grader has no answer extractor (a
``module:function`` grader), since then the score files carry none.

Outputs ``passk_curves.{md,csv,tex}``; CSV columns: ``suite, method, k, passk_pct,
passk_std_pct, majk_pct, majk_std_pct, n_seeds``.
"""

from __future__ import annotations

import argparse
import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.errors import PipelineError
from pipeline.io import write_text
from pipeline.report.scores import latex_escape, load_score_items, row_order

logger = logging.getLogger(__name__)

COLUMNS = ("suite", "method", "k", "passk_pct", "passk_std_pct", "majk_pct", "majk_std_pct", "n_seeds")
NOTE = (
    "Each cell: Pass@k / maj@k (%), the mean over the method's seeds, on the k grid of the suite's score files. "
    "maj@k: the majority vote over the extracted answers of k samples (ties broken uniformly at random; "
    "truncated samples do not vote); '—' where the grader has no answer extractor. "
    "Standard deviations over seeds are in passk_curves.csv."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--passk", nargs="+", required=True, type=Path, help="Pass@k JSON files written by 'score'")
    parser.add_argument("--methods", nargs="+", required=True, help="row order (base first)")
    parser.add_argument("--suites", nargs="+", required=True, help="suite order")
    parser.add_argument("--out-dir", required=True, type=Path, help="directory for passk_curves.{md,csv,tex}")


def points_from_items(items: list[tuple[str, dict]]) -> pd.DataFrame:
    """Long frame ``method, seed, suite, k, passk, majk`` (fractions; majk NaN if absent)."""
    rows, seen = [], {}
    for source, obj in items:
        if not isinstance(obj, dict):
            raise PipelineError(f"{source}: expected a JSON object written by 'score'")
        for key in ("method", "suite", "pass_at_k"):
            if key not in obj:
                raise PipelineError(f"{source}: missing key {key!r}")
        seed = -1 if obj.get("seed") is None else int(obj["seed"])
        ident = (str(obj["method"]), seed, str(obj["suite"]))
        if ident in seen:
            raise PipelineError(f"two Pass@k files for the same method, seed and suite: {seen[ident]}, {source}")
        seen[ident] = source
        majority = obj.get("maj_at_k") or {}
        if not isinstance(majority, dict):
            raise PipelineError(f"{source}: maj_at_k must be an object keyed by k, got {type(majority).__name__}")
        for k, value in obj["pass_at_k"].items():
            try:
                k_int = int(k)
            except ValueError as err:
                raise PipelineError(f"{source}: pass_at_k key {k!r} is not an integer k") from err
            maj = majority.get(k)
            rows.append({"method": ident[0], "seed": seed, "suite": ident[2], "k": k_int, "passk": float(value),
                         "majk": math.nan if maj is None else float(maj)})
    return pd.DataFrame(rows, columns=["method", "seed", "suite", "k", "passk", "majk"])


def _mean_std(values: np.ndarray) -> tuple[float, float]:
    """Mean and sample standard deviation (NaN below two values) of the non-NaN values, in %."""
    values = values[~np.isnan(values)]
    if values.size == 0:
        return math.nan, math.nan
    return 100.0 * float(values.mean()), 100.0 * float(values.std(ddof=1)) if values.size >= 2 else math.nan


def curves_table(points: pd.DataFrame, methods: list[str], suites: list[str]) -> pd.DataFrame:
    """One row per (suite, method, k) on the ks every score file of the suite has."""
    rows = []
    for suite in suites:
        in_suite = points[points["suite"] == suite]
        if in_suite.empty:
            raise PipelineError(f"no Pass@k results for suite {suite!r}")
        grids = in_suite.groupby(["method", "seed"])["k"].apply(frozenset)
        ks = sorted(frozenset.intersection(*grids))
        for method in methods:
            cell = in_suite[in_suite["method"] == method]
            if cell.empty:
                raise PipelineError(f"missing Pass@k results for method {method!r} on suite {suite!r}")
            n_seeds = int(cell["seed"].nunique())
            for k in ks:
                at_k = cell[cell["k"] == k]
                passk, passk_std = _mean_std(at_k["passk"].to_numpy(dtype=np.float64))
                majk, majk_std = _mean_std(at_k["majk"].to_numpy(dtype=np.float64))
                rows.append({"suite": suite, "method": method, "k": int(k), "passk_pct": passk,
                             "passk_std_pct": passk_std, "majk_pct": majk, "majk_std_pct": majk_std, "n_seeds": n_seeds})
    return pd.DataFrame(rows, columns=list(COLUMNS))


def _cell(row) -> str:
    maj = "—" if math.isnan(row.majk_pct) else f"{row.majk_pct:.1f}"
    return f"{row.passk_pct:.1f} / {maj}"


def to_markdown(table: pd.DataFrame, methods: list[str], suites: list[str]) -> str:
    lines = []
    for suite in suites:
        sub = table[table["suite"] == suite]
        ks = sorted(sub["k"].unique())
        lines += [f"**{suite}** (Pass@k / maj@k, %)", "",
                  "| Method | Seeds | " + " | ".join(f"k={k}" for k in ks) + " |",
                  "|:---|---:|" + "---:|" * len(ks)]
        for method in methods:
            rows = sub[sub["method"] == method].set_index("k")
            cells = [_cell(rows.loc[k]) for k in ks]
            lines.append(f"| {method} | {int(rows['n_seeds'].iloc[0])} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += [NOTE, ""]
    return "\n".join(lines)


def to_latex(table: pd.DataFrame, methods: list[str], suites: list[str]) -> str:
    lines = ["% Generated by `python -m pipeline curves`; needs \\usepackage{booktabs}.", "% " + NOTE]
    for suite in suites:
        sub = table[table["suite"] == suite]
        ks = sorted(sub["k"].unique())
        lines += ["\\begin{tabular}{lr" + "r" * len(ks) + "}", "\\toprule",
                  f" & & \\multicolumn{{{len(ks)}}}{{c}}{{{latex_escape(suite)}: Pass@k / maj@k (\\%)}} \\\\",
                  f"\\cmidrule(lr){{3-{2 + len(ks)}}}",
                  "Method & Seeds & " + " & ".join(f"$k={k}$" for k in ks) + " \\\\", "\\midrule"]
        for method in methods:
            rows = sub[sub["method"] == method].set_index("k")
            cells = [_cell(rows.loc[k]).replace("—", "--") for k in ks]
            lines.append(" & ".join([latex_escape(method), str(int(rows["n_seeds"].iloc[0]))] + cells) + " \\\\")
        lines += ["\\bottomrule", "\\end{tabular}", ""]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    methods = row_order(args.methods)
    table = curves_table(points_from_items(load_score_items(args.passk)), methods, args.suites)
    out_dir = Path(args.out_dir)
    write_text(out_dir / "passk_curves.md", to_markdown(table, methods, args.suites))
    write_text(out_dir / "passk_curves.tex", to_latex(table, methods, args.suites))
    write_text(out_dir / "passk_curves.csv", table.to_csv(index=False, float_format="%.4f", na_rep="NaN"))
    logger.info("curves: %d (suite, method, k) points written to %s/passk_curves.{md,csv,tex}", len(table), out_dir)
    return 0
