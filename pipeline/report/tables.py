"""Stage ``tables``: Pass@K tables (Markdown, CSV, LaTeX) from ``score`` JSON files.

Rows: ``base`` first, then the methods in the order given. Per suite two columns,
``<suite> Pass@K`` (K = the suite's k_max) and ``<suite> Pass@1``, in percent with one
decimal. A cell is ``mean ± std`` over seeds (sample std, ddof=1) when there are >= 2
seeds, otherwise the single value with its 95% bootstrap CI over problems in brackets
(as computed by ``score``). The best mean of each column (after rounding to the shown
decimal; ties all bold) is bold. The CSV is long and numeric: one row per cell with
``mean_pct, std_pct, n_seeds, ci_lo_pct, ci_hi_pct`` (NaN where not applicable).

Two optional additions (off unless asked for, so the plain layout is unchanged):

* **Deltas vs baseline** (``--baselines '{"grpo_entropy_adv": "grpo", ...}'``): under each
  method whose baseline is also a row of the table, a line ``Δ vs <baseline>`` with the
  difference of the cell means (method − baseline; means over seeds, unrounded, then shown
  with one decimal and a sign) in percentage points. CSV: columns ``baseline, delta_pp``.
* **Reported column group** (``--reported NAME:MODEL [...] --suite-map JSON``): beside the
  reproduced columns, the numbers the paper reports (``pipeline/reference/NAME.csv``, rows
  of ``model == MODEL``, matched by method name; ``base`` is the base model). The suite map
  sends each of our suites to a column prefix of the reference CSV (``{"aime25": "aime25"}``
  reads ``aime25_pass<K>`` and ``aime25_pass1``; K = our suite's K, or the one other
  ``_pass<N>`` column of that prefix, whose N then labels the column) or to explicit
  columns (``{"aime25": {"pass@K": "aime25_pass256", "pass@1": "aime25_pass1"}}``). With
  several sources, the first one that reports a value wins. Unmapped suites get no
  reported columns; methods the papers do not report show ``—``. CSV: columns
  ``reported_k, reported_pct, reported_source`` (and ``reported_delta_pp`` with deltas).

The logic is pure functions over a DataFrame of records (``records_from_objects``,
``summarise``, ``deltas``, ``reported_cells``, ``to_markdown``, ``to_latex``,
``to_csv_frame``); ``run`` does the I/O.
"""

from __future__ import annotations

import argparse
import logging
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.errors import PipelineError
from pipeline.io import write_text
from pipeline.report.scores import (
    latex_escape, load_score_items, parse_baselines, parse_json_arg, parse_reported, row_order, signed,
)

logger = logging.getLogger(__name__)

REQUIRED_KEYS = ("method", "seed", "suite", "k_max", "pass_at_k", "pass1")
DELTA_COLUMNS = ("baseline", "delta_pp")
REPORTED_COLUMNS = ("reported_k", "reported_pct", "reported_source")
RESERVED_TABLE_NAMES = ("main", "comparisons", "crossing")
PASS_COL_RE = re.compile(r"_pass(?P<k>\d+)$")
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
    parser.add_argument(
        "--baselines",
        default=None,
        help='JSON object: method -> its baseline, e.g. \'{"grpo_entropy_adv": "grpo"}\'; adds "Δ vs <baseline>" lines',
    )
    parser.add_argument(
        "--reported",
        nargs="*",
        default=[],
        metavar="NAME:MODEL",
        help="reported numbers to show beside ours: a pipeline/reference CSV stem (or a CSV path) and the model "
        "whose rows to use, e.g. cheng2025_table2:Qwen2.5-7B; several: the first that reports a value wins",
    )
    parser.add_argument(
        "--suite-map",
        default=None,
        help='JSON object: our suite -> reference column prefix (or {"pass@K": col, "pass@1": col}); needed with --reported',
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


def suite_k_max(records: pd.DataFrame, suite: str) -> int:
    """The suite's K, which every one of its score files must share."""
    ks = sorted(set(int(k) for k in records.loc[records["suite"] == suite, "k_max"]))
    if not ks:
        raise PipelineError(f"no Pass@k results for suite {suite!r}")
    if len(ks) != 1:
        raise PipelineError(f"suite {suite!r}: Pass@k files disagree on k_max ({ks})")
    return ks[0]


def summarise(records: pd.DataFrame, methods: list[str], suites: list[str]) -> pd.DataFrame:
    """Long table, one row per (method, suite, metric) cell, values in percent."""
    rows_methods = row_order(methods)
    rows = []
    for suite in suites:
        suite_k_max(records, suite)
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


# --------------------------------------------------------------------------- deltas and reported numbers

def table_baselines(methods: list[str], baselines: dict[str, str]) -> dict[str, str]:
    """The baseline pairs a table can show: both the method and its baseline are rows."""
    rows = set(row_order(methods))
    return {m: b for m, b in baselines.items() if m in rows and b in rows}


def deltas(summary: pd.DataFrame, baselines: dict[str, str]) -> pd.DataFrame:
    """One row per (method, suite, metric) with a baseline in ``summary``: mean(method) − mean(baseline), pp."""
    lookup = {(r.method, r.suite, r.metric): float(r.mean_pct) for r in summary.itertuples(index=False)}
    rows = []
    for r in summary.itertuples(index=False):
        baseline = baselines.get(r.method)
        if baseline is None or (baseline, r.suite, r.metric) not in lookup:
            continue
        rows.append(
            {
                "method": r.method,
                "suite": r.suite,
                "metric": r.metric,
                "baseline": baseline,
                "delta_pp": float(r.mean_pct) - lookup[(baseline, r.suite, r.metric)],
            }
        )
    return pd.DataFrame(rows, columns=["method", "suite", "metric", "baseline", "delta_pp"])


def parse_suite_map(text: str | None) -> dict[str, str | dict[str, str]]:
    obj = parse_json_arg(text, "--suite-map", "mapping our suite to a reference column prefix")
    out: dict[str, str | dict[str, str]] = {}
    for suite, target in obj.items():
        if isinstance(target, str) and target:
            out[str(suite)] = target
        elif (
            isinstance(target, dict)
            and target
            and set(target) <= {"pass@K", "pass@1"}
            and all(isinstance(v, str) and v for v in target.values())
        ):
            out[str(suite)] = dict(target)
        else:
            raise PipelineError(
                f"--suite-map: suite {suite!r} needs a column prefix or an object with 'pass@K' and/or 'pass@1' "
                f"column names, got {target!r}"
            )
    return out


def _resolve_columns(frame: pd.DataFrame, name: str, target, k_max: int) -> dict[str, tuple[str, int]]:
    """metric -> (column, k) in one reference frame for one suite."""
    columns = [str(c) for c in frame.columns]
    if isinstance(target, dict):
        out = {}
        for metric, col in target.items():
            if col not in columns:
                raise PipelineError(f"reported numbers {name!r} have no column {col!r} (columns: {', '.join(columns)})")
            m = PASS_COL_RE.search(col)
            k = 1 if metric == "pass@1" else (int(m.group("k")) if m else k_max)
            out[metric] = (col, k)
        return out
    out = {}
    if f"{target}_pass1" in columns:
        out["pass@1"] = (f"{target}_pass1", 1)
    exact = f"{target}_pass{k_max}"
    if exact in columns and k_max != 1:
        out["pass@K"] = (exact, k_max)
    else:
        pattern = re.compile(re.escape(target) + r"_pass(?P<k>\d+)")
        others = [(c, int(m.group("k"))) for c in columns if (m := pattern.fullmatch(c)) and int(m.group("k")) != 1]
        if len(others) == 1:
            out["pass@K"] = others[0]
        elif len(others) > 1:
            raise PipelineError(
                f"reported numbers {name!r}: several Pass@K columns for prefix {target!r} "
                f"({', '.join(c for c, _ in others)}) and "
                f"none for our K = {k_max}; name the column in --suite-map"
            )
    if not out:
        raise PipelineError(
            f"reported numbers {name!r} have no column {target}_pass<K> or {target}_pass1 (columns: {', '.join(columns)})"
        )
    return out


def reported_cells(
    sources: list[tuple[str, str]],
    suite_map: dict,
    suites: list[str],
    k_of: dict[str, int],
    frames: dict[str, pd.DataFrame] | None = None,
) -> pd.DataFrame:
    """Long frame (method, suite, metric, k, reported_pct, reported_source) of the reported numbers.

    ``sources`` are (reference name, model) pairs; ``frames`` may pre-supply the loaded
    reference frames by name (default: ``reference.load_reported``). The k of a metric
    column is the reported one (it may differ from ours).
    """
    from pipeline.report.reference import load_reported

    frames = dict(frames or {})
    rows = []
    k_label: dict[tuple[str, str], int] = {}
    for name, model in sources:
        frame = frames.get(name)
        if frame is None:
            frame = frames[name] = load_reported(name)
        for col in ("model", "method"):
            if col not in frame.columns:
                raise PipelineError(f"reported numbers {name!r} have no {col!r} column")
        sub = frame[frame["model"].astype(str) == model]
        if sub.empty:
            known = ", ".join(sorted(set(frame["model"].astype(str))))
            raise PipelineError(f"reported numbers {name!r} have no rows for model {model!r} (models: {known})")
        for suite in suites:
            if suite not in suite_map:
                continue
            for metric, (col, k) in _resolve_columns(frame, name, suite_map[suite], k_of[suite]).items():
                if k_label.setdefault((suite, metric), k) != k:
                    raise PipelineError(
                        f"--reported sources disagree on the k of suite {suite!r} {metric}: "
                        f"{k_label[(suite, metric)]} vs {k} ({name!r}, column {col!r})"
                    )
                for method, value in zip(sub["method"].astype(str), pd.to_numeric(sub[col], errors="coerce")):
                    if math.isnan(float(value)):
                        continue
                    rows.append(
                        {"method": method, "suite": suite, "metric": metric, "k": int(k),
                         "reported_pct": float(value), "reported_source": f"{name}:{model}"}
                    )
    out = pd.DataFrame(rows, columns=["method", "suite", "metric", "k", "reported_pct", "reported_source"])
    # first source that reports a value wins
    return out.drop_duplicates(["method", "suite", "metric"], keep="first").reset_index(drop=True)


def reported_note(sources: list[tuple[str, str]], frames_citation: dict[str, str] | None = None) -> str:
    parts = []
    for name, model in sources:
        cite = (frames_citation or {}).get(name)
        parts.append(f"{name} (model {model}{'; ' + cite if cite else ''})")
    return "Reported columns: the papers' numbers, " + "; ".join(parts) + ". —: not reported."


# --------------------------------------------------------------------------- rendering

DELTA_NOTE = (
    "Δ vs <baseline>: method mean − baseline mean in percentage points (means over seeds, "
    "difference of the unrounded means)."
)


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


def _reported_columns(reported: pd.DataFrame | None, suites: list[str]) -> list[tuple[str, str, int]]:
    if reported is None or reported.empty:
        return []
    cols = []
    for suite in suites:
        for metric in ("pass@K", "pass@1"):
            sub = reported[(reported["suite"] == suite) & (reported["metric"] == metric)]
            if not sub.empty:
                cols.append((suite, metric, int(sub["k"].iloc[0])))
    return cols


class _Layout:
    """Rows (method lines and Δ lines) and cell texts of one table, shared by Markdown and LaTeX."""

    def __init__(self, summary, methods, suites, baselines=None, reported=None, latex=False):
        self.cols = _columns(summary, suites)
        self.rep_cols = _reported_columns(reported, suites)
        self.latex = latex
        self.lookup = {(r.method, r.suite, r.metric): r for r in summary.itertuples(index=False)}
        self.rep = {} if reported is None else {
            (r.method, r.suite, r.metric): float(r.reported_pct) for r in reported.itertuples(index=False)}
        self.baselines = table_baselines(methods, baselines or {})
        self.delta = {(r.method, r.suite, r.metric): r.delta_pp for r in deltas(summary, self.baselines).itertuples()}
        self.rows = []
        for method in row_order(methods):
            self.rows.append(("method", method))
            if method in self.baselines:
                self.rows.append(("delta", method))

    def _num(self, v: float | None, sign: bool = False) -> str:
        if v is None:
            return "—" if not self.latex else "--"
        text = signed(v) if sign else _fmt(v)
        return f"${text}$" if (self.latex and sign) else text

    def cells(self, kind: str, method: str) -> list[str]:
        out = []
        if kind == "method":
            for suite, metric, _ in self.cols:
                c = pd.Series(self.lookup[(method, suite, metric)]._asdict())
                t = cell_text(c, pm="$\\pm$" if self.latex else "±")
                out.append((f"\\textbf{{{t}}}" if self.latex else f"**{t}**") if c["best"] else t)
            for suite, metric, _ in self.rep_cols:
                out.append(self._num(self.rep.get((method, suite, metric))))
        else:
            base = self.baselines[method]
            for suite, metric, _ in self.cols:
                out.append(self._num(self.delta.get((method, suite, metric)), sign=True))
            for suite, metric, _ in self.rep_cols:
                a, b = self.rep.get((method, suite, metric)), self.rep.get((base, suite, metric))
                out.append(self._num(None if a is None or b is None else a - b, sign=True))
        return out

    def label(self, kind: str, method: str, seeds: int) -> tuple[str, str]:
        if kind == "method":
            return (latex_escape(method) if self.latex else method), str(seeds)
        base = self.baselines[method]
        if self.latex:
            return f"\\quad $\\Delta$ vs {latex_escape(base)}", ""
        return f"Δ vs {base}", ""

    def seeds(self, method: str) -> int:
        return int(self.lookup[(method, self.cols[0][0], self.cols[0][1])].seeds)


def _notes(layout: _Layout, reported_note_text: str | None) -> list[str]:
    notes = [NOTE]
    if layout.baselines:
        notes.append(DELTA_NOTE)
    if layout.rep_cols and reported_note_text:
        notes.append(reported_note_text)
    return notes


def to_markdown(
    summary: pd.DataFrame,
    methods: list[str],
    suites: list[str],
    title: str | None = None,
    baselines: dict[str, str] | None = None,
    reported: pd.DataFrame | None = None,
    reported_note_text: str | None = None,
) -> str:
    layout = _Layout(summary, methods, suites, baselines, reported)
    header = ["Method", "Seeds"] + [f"{s} Pass@{k}" for s, _, k in layout.cols]
    header += [f"reported {s} Pass@{k}" for s, _, k in layout.rep_cols]
    lines = []
    if title:
        lines += [f"### {title}", ""]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "|".join([":---", "---:"] + ["---:"] * (len(header) - 2)) + "|")
    for kind, method in layout.rows:
        name, seeds = layout.label(kind, method, layout.seeds(method))
        lines.append("| " + " | ".join([name, seeds] + layout.cells(kind, method)) + " |")
    lines += [""] + [n + "\n" for n in _notes(layout, reported_note_text)]
    return "\n".join(lines)


def _latex_suite_header(cols: list[tuple[str, str, int]], first_col: int) -> tuple[str, str]:
    """``\\multicolumn`` cells per run of equal suites, and their ``\\cmidrule``s."""
    groups: list[tuple[str, int]] = []
    for suite, _, _ in cols:
        if groups and groups[-1][0] == suite:
            groups[-1] = (suite, groups[-1][1] + 1)
        else:
            groups.append((suite, 1))
    cells, rules, col = [], [], first_col
    for suite, width in groups:
        cells.append(f"\\multicolumn{{{width}}}{{c}}{{{latex_escape(suite)}}}")
        rules.append(f"\\cmidrule(lr){{{col}-{col + width - 1}}}")
        col += width
    return " & ".join(cells), " ".join(rules)


def to_latex(
    summary: pd.DataFrame,
    methods: list[str],
    suites: list[str],
    baselines: dict[str, str] | None = None,
    reported: pd.DataFrame | None = None,
    reported_note_text: str | None = None,
) -> str:
    layout = _Layout(summary, methods, suites, baselines, reported, latex=True)
    cols, rep = layout.cols, layout.rep_cols
    lines = ["% Generated by `python -m pipeline tables`; needs \\usepackage{booktabs}."]
    lines += ["% " + n.replace("%", "\\%") for n in _notes(layout, reported_note_text)]
    lines.append("\\begin{tabular}{lr" + "r" * (len(cols) + len(rep)) + "}")
    lines.append("\\toprule")
    if rep:
        lines.append(
            f" & & \\multicolumn{{{len(cols)}}}{{c}}{{Reproduced}} & \\multicolumn{{{len(rep)}}}{{c}}{{Reported}} \\\\"
        )
        lines.append(f"\\cmidrule(lr){{3-{2 + len(cols)}}} \\cmidrule(lr){{{3 + len(cols)}-{2 + len(cols) + len(rep)}}}")
    suite_cells, suite_rules = _latex_suite_header(cols + rep, 3)
    lines.append(" & & " + suite_cells + " \\\\")
    lines.append(suite_rules)
    lines.append("Method & Seeds & " + " & ".join(f"Pass@{k}" for _, _, k in cols + rep) + " \\\\")
    lines.append("\\midrule")
    for kind, method in layout.rows:
        name, seeds = layout.label(kind, method, layout.seeds(method))
        lines.append(" & ".join([name, seeds] + layout.cells(kind, method)) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}", ""]
    return "\n".join(lines)


def to_csv_frame(
    summary: pd.DataFrame, baselines: dict[str, str] | None = None, reported: pd.DataFrame | None = None
) -> pd.DataFrame:
    """The numeric long table (one row per cell), as written to CSV.

    Columns: ``SUMMARY_COLUMNS``, then ``baseline, delta_pp`` when ``baselines`` is given,
    then ``reported_k, reported_pct, reported_source`` when ``reported`` is given, then
    ``reported_delta_pp`` when both are.
    """
    frame = summary.loc[:, list(SUMMARY_COLUMNS)].reset_index(drop=True)
    keys = ["method", "suite", "metric"]
    if baselines is not None:
        methods = list(dict.fromkeys(frame["method"]))
        d = deltas(summary, table_baselines(methods, baselines))
        frame = frame.merge(d, on=keys, how="left")
    if reported is not None:
        r = reported.rename(columns={"k": "reported_k"}).loc[:, keys + list(REPORTED_COLUMNS)]
        frame = frame.merge(r, on=keys, how="left")
        frame["reported_k"] = frame["reported_k"].astype("Int64")
        if baselines is not None:
            lookup = {(m, s, t): v for m, s, t, v in zip(frame["method"], frame["suite"], frame["metric"],
                                                         frame["reported_pct"])}
            frame["reported_delta_pp"] = [
                (v - lookup.get((b, s, t), math.nan)) if isinstance(b, str) else math.nan
                for v, b, s, t in zip(frame["reported_pct"], frame["baseline"], frame["suite"], frame["metric"])
            ]
    return frame


def parse_comparisons(text: str | None) -> dict[str, list[str]]:
    obj = parse_json_arg(text, "--comparisons", "mapping a table name to a list of methods")
    out = {}
    for name, methods in obj.items():
        if not TABLE_NAME_RE.match(str(name)) or name in RESERVED_TABLE_NAMES:
            raise PipelineError(
                f"--comparisons: bad table name {name!r} (letters, digits, _ . -; not {', '.join(RESERVED_TABLE_NAMES)})"
            )
        if not (isinstance(methods, list) and methods and all(isinstance(m, str) for m in methods)):
            raise PipelineError(f"--comparisons: table {name!r} needs a non-empty list of method names")
        out[str(name)] = list(methods)
    return out


def render_all(
    summary: pd.DataFrame,
    methods: list[str],
    suites: list[str],
    title: str | None = None,
    baselines: dict[str, str] | None = None,
    reported: pd.DataFrame | None = None,
    reported_note_text: str | None = None,
) -> dict[str, str]:
    """File suffix -> text for one table."""
    return {
        "md": to_markdown(summary, methods, suites, title=title, baselines=baselines, reported=reported,
                          reported_note_text=reported_note_text),
        "tex": to_latex(summary, methods, suites, baselines=baselines, reported=reported,
                        reported_note_text=reported_note_text),
        "csv": to_csv_frame(summary, baselines=baselines, reported=reported).to_csv(
            index=False, float_format="%.4f", na_rep="NaN"),
    }


def load_records(paths: list[Path]) -> pd.DataFrame:
    return records_from_objects(load_score_items(paths))


def run(args: argparse.Namespace) -> int:
    comparisons = parse_comparisons(args.comparisons)
    baselines = parse_baselines(getattr(args, "baselines", None))
    sources = parse_reported(getattr(args, "reported", None))
    suite_map = parse_suite_map(getattr(args, "suite_map", None))
    if sources and not suite_map:
        raise PipelineError("--reported needs --suite-map (which of our suites is which reported benchmark)")
    if suite_map and not sources:
        raise PipelineError("--suite-map is only used with --reported")
    unknown_suites = sorted(set(suite_map) - set(args.suites))
    if unknown_suites:
        logger.info("tables: --suite-map entries for suites not in this table ignored: %s", ", ".join(unknown_suites))
    records = load_records(args.passk)
    methods = row_order(args.methods)
    unused = sorted(set(records["method"]) - set(methods) - {m for ms in comparisons.values() for m in ms})
    if unused:
        logger.warning("tables: ignoring Pass@k results of methods not asked for: %s", ", ".join(unused))
    reported = note = None
    if sources:
        from pipeline.report.reference import citation

        k_of = {suite: suite_k_max(records, suite) for suite in args.suites}
        reported = reported_cells(sources, suite_map, args.suites, k_of)
        note = reported_note(sources, {name: (citation(name) or [""])[0] for name, _ in sources})
    tables = {"main": methods}
    tables.update({name: row_order(ms) for name, ms in comparisons.items()})
    for name, table_methods in tables.items():
        summary = summarise(records, table_methods, args.suites)
        texts = render_all(
            summary, table_methods, args.suites, title=None if name == "main" else name,
            baselines=baselines if baselines else None, reported=reported, reported_note_text=note,
        )
        for suffix, text in texts.items():
            write_text(args.out_dir / f"{name}.{suffix}", text)
        logger.info("tables: wrote %s.{md,csv,tex} (%d rows x %d suites)", args.out_dir / name, len(table_methods), len(args.suites))
    return 0
