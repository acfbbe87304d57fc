"""Stage ``tables``: Pass@K tables (Markdown, CSV, LaTeX) from ``score`` JSON files.

Rows: ``base`` first, then the methods in the order given. Per suite two columns,
``<suite> Pass@K`` (K = the suite's k_max) and ``<suite> Pass@1``, in percent with one
decimal. A cell is ``mean ± std`` over seeds (sample std, ddof=1) when there are >= 2
seeds, otherwise the single value with its 95% bootstrap CI over problems in brackets
(as computed by ``score``). The best mean of each column (after rounding to the shown
decimal; ties all bold) is bold. The CSV is long and numeric: one row per cell with
``mean_pct, std_pct, n_seeds, ci_lo_pct, ci_hi_pct`` (NaN where not applicable).

The logic is pure functions over a DataFrame of records (``records_from_objects``,
``summarise``, ``to_markdown``, ``to_latex``, ``to_csv_frame``); ``run`` does the I/O.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.errors import PipelineError
from pipeline.io import read_json, write_text

logger = logging.getLogger(__name__)

BASE = "base"
REQUIRED_KEYS = ("method", "seed", "suite", "k_max", "pass_at_k", "pass1")
RECORD_COLUMNS = (
    "source", "method", "seed", "suite", "k_max",
    "passk", "passk_ci_lo", "passk_ci_hi", "pass1", "pass1_ci_lo", "pass1_ci_hi",
)
SUMMARY_COLUMNS = (
    "method", "seeds", "suite", "metric", "k", "mean_pct", "std_pct", "n_seeds", "ci_lo_pct", "ci_hi_pct", "best",
)
TABLE_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
NOTE = (
    "Values in %. Cell: mean ± sample std over seeds (≥2 seeds), or the single run's value "
    "[95% bootstrap CI over problems]. Bold: best mean in the column."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--passk", nargs="+", required=True, type=Path, help="Pass@k JSON files written by 'score'")
    parser.add_argument("--methods", nargs="+", required=True, help="row order (base always comes first)")
    parser.add_argument("--suites", nargs="+", required=True, help="column order")
    parser.add_argument("--out-dir", required=True, type=Path, help="directory for main.{md,csv,tex} and comparisons")
    parser.add_argument(
        "--comparisons",
        default=None,
        help='JSON object: table name -> list of methods, e.g. \'{"table3": ["grpo_entropy_reg", "grpo_entropy_adv"]}\'',
    )


# --------------------------------------------------------------------------- records

def _ci(obj: dict, key: str, source: str) -> tuple[float, float]:
    value = obj.get(key)
    if value is None:
        return math.nan, math.nan
    if not (isinstance(value, (list, tuple)) and len(value) == 2):
        raise PipelineError(f"{source}: {key} must be [lo, hi], got {value!r}")
    return float(value[0]), float(value[1])


def records_from_objects(items: list[tuple[str, dict]]) -> pd.DataFrame:
    """One record per (source, score JSON object); fractions as in the JSON."""
    rows = []
    for source, obj in items:
        if not isinstance(obj, dict):
            raise PipelineError(f"{source}: expected a JSON object written by 'score'")
        for key in REQUIRED_KEYS:
            if key not in obj:
                raise PipelineError(f"{source}: missing key {key!r}")
        k_max = int(obj["k_max"])
        pass_at = obj["pass_at_k"]
        if not isinstance(pass_at, dict) or str(k_max) not in pass_at:
            raise PipelineError(f"{source}: pass_at_k has no entry for k_max {k_max!r}")
        ci_map = obj.get("pass_at_k_ci") or {}
        passk_lo, passk_hi = _ci(ci_map, str(k_max), source)
        if obj.get("pass1_ci") is not None:
            pass1_lo, pass1_hi = _ci(obj, "pass1_ci", source)
        else:
            pass1_lo, pass1_hi = _ci(ci_map, "1", source)
        method = str(obj["method"])
        seed = obj["seed"]
        rows.append(
            {
                "source": str(source),
                "method": method,
                "seed": -1 if seed is None else int(seed),
                "suite": str(obj["suite"]),
                "k_max": k_max,
                "passk": float(pass_at[str(k_max)]),
                "passk_ci_lo": passk_lo,
                "passk_ci_hi": passk_hi,
                "pass1": float(obj["pass1"]),
                "pass1_ci_lo": pass1_lo,
                "pass1_ci_hi": pass1_hi,
            }
        )
    records = pd.DataFrame(rows, columns=list(RECORD_COLUMNS))
    dup = records.duplicated(["method", "seed", "suite"], keep=False)
    if dup.any():
        d = records[dup]
        raise PipelineError(
            f"two Pass@k files for method {d['method'].iloc[0]!r} seed {d['seed'].iloc[0]} suite "
            f"{d['suite'].iloc[0]!r}: {', '.join(d['source'])}"
        )
    return records


def row_order(methods: list[str]) -> list[str]:
    """``base`` first, then the given methods without duplicates."""
    out = [BASE]
    for m in methods:
        if m not in out:
            out.append(m)
    return out


def summarise(records: pd.DataFrame, methods: list[str], suites: list[str]) -> pd.DataFrame:
    """Long table, one row per (method, suite, metric) cell, values in percent."""
    rows_methods = row_order(methods)
    rows = []
    for suite in suites:
        sub = records[records["suite"] == suite]
        if sub.empty:
            raise PipelineError(f"no Pass@k results for suite {suite!r}")
        k_values = sorted(set(int(k) for k in sub["k_max"]))
        if len(k_values) != 1:
            raise PipelineError(f"suite {suite!r}: Pass@k files disagree on k_max ({k_values})")
    for method in rows_methods:
        seed_sets = {}
        for suite in suites:
            cell = records[(records["method"] == method) & (records["suite"] == suite)]
            if cell.empty:
                raise PipelineError(f"missing Pass@k results for method {method!r} on suite {suite!r}")
            seed_sets[suite] = sorted(int(s) for s in cell["seed"])
        distinct = {tuple(v) for v in seed_sets.values()}
        if len(distinct) > 1:
            desc = "; ".join(f"{s}: {v}" for s, v in seed_sets.items())
            raise PipelineError(f"method {method!r} has different seeds on different suites ({desc})")
        n_seeds_row = len(next(iter(seed_sets.values())))
        for suite in suites:
            cell = records[(records["method"] == method) & (records["suite"] == suite)]
            k_max = int(cell["k_max"].iloc[0])
            for metric, k, col in (("pass@K", k_max, "passk"), ("pass@1", 1, "pass1")):
                values = 100.0 * cell[col].to_numpy(dtype=np.float64)
                n = len(values)
                if n >= 2:
                    std, lo, hi = float(np.std(values, ddof=1)), math.nan, math.nan
                else:
                    std = math.nan
                    lo = 100.0 * float(cell[f"{col}_ci_lo"].iloc[0])
                    hi = 100.0 * float(cell[f"{col}_ci_hi"].iloc[0])
                rows.append(
                    {
                        "method": method,
                        "seeds": n_seeds_row,
                        "suite": suite,
                        "metric": metric,
                        "k": k,
                        "mean_pct": float(np.mean(values)),
                        "std_pct": std,
                        "n_seeds": n,
                        "ci_lo_pct": lo,
                        "ci_hi_pct": hi,
                        "best": False,
                    }
                )
    summary = pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))
    for _, idx in summary.groupby(["suite", "metric"], sort=False).groups.items():
        shown = summary.loc[idx, "mean_pct"].round(1)
        summary.loc[idx, "best"] = (shown == shown.max()).to_numpy()
    summary["best"] = summary["best"].astype(bool)
    return summary


# --------------------------------------------------------------------------- rendering

def _fmt(v: float) -> str:
    return f"{v:.1f}"


def cell_text(row: pd.Series, pm: str = "±") -> str:
    """``mean ± std`` (>= 2 seeds), ``value [lo, hi]`` (1 seed with CI), or ``value``."""
    if row["n_seeds"] >= 2:
        return f"{_fmt(row['mean_pct'])} {pm} {_fmt(row['std_pct'])}"
    if not (math.isnan(row["ci_lo_pct"]) or math.isnan(row["ci_hi_pct"])):
        return f"{_fmt(row['mean_pct'])} [{_fmt(row['ci_lo_pct'])}, {_fmt(row['ci_hi_pct'])}]"
    return _fmt(row["mean_pct"])


def _columns(summary: pd.DataFrame, suites: list[str]) -> list[tuple[str, str, int]]:
    cols = []
    for suite in suites:
        k_max = int(summary[(summary["suite"] == suite) & (summary["metric"] == "pass@K")]["k"].iloc[0])
        cols.append((suite, "pass@K", k_max))
        cols.append((suite, "pass@1", 1))
    return cols


def _cells(summary: pd.DataFrame, methods: list[str], suites: list[str]):
    """(method, seeds, [(row, ...)]) per table row, in order."""
    lookup = {(r.method, r.suite, r.metric): r for r in summary.itertuples(index=False)}
    out = []
    for method in row_order(methods):
        cells = [pd.Series(lookup[(method, suite, metric)]._asdict()) for suite, metric, _ in _columns(summary, suites)]
        out.append((method, int(cells[0]["seeds"]), cells))
    return out


def to_markdown(summary: pd.DataFrame, methods: list[str], suites: list[str], title: str | None = None) -> str:
    header = ["Method", "Seeds"] + [f"{s} Pass@{k}" for s, _, k in _columns(summary, suites)]
    lines = []
    if title:
        lines += [f"### {title}", ""]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "|".join([":---", "---:"] + ["---:"] * (len(header) - 2)) + "|")
    for method, seeds, cells in _cells(summary, methods, suites):
        texts = [f"**{cell_text(c)}**" if c["best"] else cell_text(c) for c in cells]
        lines.append("| " + " | ".join([method, str(seeds)] + texts) + " |")
    lines += ["", NOTE, ""]
    return "\n".join(lines)


_LATEX_ESCAPES = {"\\": r"\textbackslash{}", "_": r"\_", "%": r"\%", "&": r"\&", "#": r"\#", "$": r"\$", "{": r"\{", "}": r"\}"}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_ESCAPES.get(ch, ch) for ch in str(text))


def to_latex(summary: pd.DataFrame, methods: list[str], suites: list[str]) -> str:
    cols = _columns(summary, suites)
    lines = [
        "% Generated by `python -m pipeline tables`; needs \\usepackage{booktabs}.",
        "% " + NOTE.replace("%", "\\%"),
        "\\begin{tabular}{lr" + "rr" * len(suites) + "}",
        "\\toprule",
        " & & " + " & ".join(f"\\multicolumn{{2}}{{c}}{{{latex_escape(s)}}}" for s in suites) + " \\\\",
        " ".join(f"\\cmidrule(lr){{{3 + 2 * i}-{4 + 2 * i}}}" for i in range(len(suites))),
        "Method & Seeds & " + " & ".join(f"Pass@{k}" for _, _, k in cols) + " \\\\",
        "\\midrule",
    ]
    for method, seeds, cells in _cells(summary, methods, suites):
        texts = []
        for c in cells:
            t = cell_text(c, pm="$\\pm$")
            texts.append(f"\\textbf{{{t}}}" if c["best"] else t)
        lines.append(" & ".join([latex_escape(method), str(seeds)] + texts) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}", ""]
    return "\n".join(lines)


def to_csv_frame(summary: pd.DataFrame) -> pd.DataFrame:
    """The numeric long table (one row per cell), as written to CSV."""
    return summary.loc[:, list(SUMMARY_COLUMNS)].reset_index(drop=True)


def parse_comparisons(text: str | None) -> dict[str, list[str]]:
    if text is None or not text.strip():
        return {}
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as err:
        raise PipelineError(f"--comparisons is not valid JSON ({err})") from err
    if not isinstance(obj, dict):
        raise PipelineError("--comparisons must be a JSON object mapping a table name to a list of methods")
    out = {}
    for name, methods in obj.items():
        if not TABLE_NAME_RE.match(str(name)) or name == "main":
            raise PipelineError(f"--comparisons: bad table name {name!r} (letters, digits, _ . -; not 'main')")
        if not (isinstance(methods, list) and methods and all(isinstance(m, str) for m in methods)):
            raise PipelineError(f"--comparisons: table {name!r} needs a non-empty list of method names")
        out[str(name)] = list(methods)
    return out


def render_all(summary: pd.DataFrame, methods: list[str], suites: list[str], title: str | None = None) -> dict[str, str]:
    """File suffix -> text for one table."""
    return {
        "md": to_markdown(summary, methods, suites, title=title),
        "tex": to_latex(summary, methods, suites),
        "csv": to_csv_frame(summary).to_csv(index=False, float_format="%.4f", na_rep="NaN"),
    }


def load_records(paths: list[Path]) -> pd.DataFrame:
    items = []
    for path in paths:
        try:
            items.append((str(path), read_json(path)))
        except FileNotFoundError as err:
            raise PipelineError(f"Pass@k file {path} does not exist") from err
        except json.JSONDecodeError as err:
            raise PipelineError(f"Pass@k file {path} is not valid JSON ({err})") from err
    return records_from_objects(items)


def run(args: argparse.Namespace) -> int:
    comparisons = parse_comparisons(args.comparisons)
    records = load_records(args.passk)
    methods = row_order(args.methods)
    unused = sorted(set(records["method"]) - set(methods) - {m for ms in comparisons.values() for m in ms})
    if unused:
        logger.warning("tables: ignoring Pass@k results of methods not asked for: %s", ", ".join(unused))
    tables = {"main": methods}
    tables.update({name: row_order(ms) for name, ms in comparisons.items()})
    for name, table_methods in tables.items():
        summary = summarise(records, table_methods, args.suites)
        for suffix, text in render_all(summary, table_methods, args.suites, title=None if name == "main" else name).items():
            write_text(args.out_dir / f"{name}.{suffix}", text)
        logger.info("tables: wrote %s.{md,csv,tex} (%d rows x %d suites)", args.out_dir / name, len(table_methods), len(args.suites))
    return 0
