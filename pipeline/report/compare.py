"""Stage ``compare``: paired bootstrap over problems, each shaped method vs its baseline.

For each (method, baseline, suite) and each metric (Pass@K with K = the suite's k_max,
and Pass@1):

1. Per problem, the unbiased Pass@k of every seed is computed from the score file's
   ``per_problem`` counts (n, c) and **averaged over seeds** → one value per problem for
   the method (``a``) and one for the baseline (``b``), aligned by ``problem_id``.
2. The observed difference is ``d = mean(a) − mean(b)`` (reported in percentage points).
3. ``n_boot`` times, problem indices are resampled with replacement (the **same** indices
   for both methods and for both metrics: a paired resample) and ``d*_b = mean(a[idx] −
   b[idx])`` is recorded.
4. The 95% CI is the percentile interval (2.5%, 97.5%) of ``d*``.
5. The two-sided p-value is ``p = min(1, 2 · #{b : d*_b ≤ 0} / n_boot)`` when ``d > 0``,
   ``p = min(1, 2 · #{b : d*_b ≥ 0} / n_boot)`` when ``d < 0``, and ``p = 1`` when
   ``d = 0``: twice the fraction of resamples whose difference does not have the observed
   sign (resamples with a difference of exactly 0 count against the observed sign, which
   errs on the conservative side). Its resolution is ``2 / n_boot``; a p of 0 is shown as
   ``< 2/n_boot``.

The resampling seed of a comparison is ``stable_seed(seed, method, baseline, suite)``, so
results do not depend on the order of comparisons. The CI and p-value reflect sampling
of problems only: seed-to-seed variation is averaged out per problem, not resampled.
No multiple-comparison correction is applied.

Outputs ``comparisons.{md,csv,tex}``; CSV columns: ``method, baseline, suite, metric, k,
mean_pct, baseline_mean_pct, diff_pp, ci_lo, ci_hi, p_value, n_problems, n_seeds,
n_seeds_baseline, n_boot`` (``ci_lo``/``ci_hi`` in percentage points).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.errors import PipelineError
from pipeline.eval.passk import pass_at_k
from pipeline.io import stable_seed, write_text
from pipeline.report.scores import latex_escape, load_score_items, parse_baselines, signed

logger = logging.getLogger(__name__)

COLUMNS = (
    "method", "baseline", "suite", "metric", "k", "mean_pct", "baseline_mean_pct", "diff_pp", "ci_lo", "ci_hi",
    "p_value", "n_problems", "n_seeds", "n_seeds_baseline", "n_boot",
)
METRICS = ("pass@K", "pass@1")
LEVEL = 0.95
NOTE = (
    "Paired bootstrap over problems: per problem, Pass@k is averaged over seeds; each resample draws problems "
    "with replacement, the same draw for method and baseline; Δ = method − baseline in percentage points; "
    "95% percentile CI; two-sided p = 2 × (fraction of resamples whose Δ does not have the observed sign), "
    "capped at 1 (p = 1 when the observed Δ is 0). Problem sampling only (seeds averaged, not resampled); "
    "no multiple-comparison correction."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--passk", nargs="+", required=True, type=Path, help="Pass@k JSON files written by 'score'")
    parser.add_argument("--baselines", required=True, help='JSON object: method -> baseline, e.g. \'{"grpo_entropy_adv": "grpo"}\'')
    parser.add_argument("--suites", nargs="+", required=True, help="suite order")
    parser.add_argument("--methods", nargs="*", default=None, help="method order (default: the order of --baselines)")
    parser.add_argument("--bootstrap", type=int, default=10000, help="bootstrap resamples (default 10000)")
    parser.add_argument("--seed", type=int, default=0, help="base seed of the resampling")
    parser.add_argument("--out-dir", required=True, type=Path, help="directory for comparisons.{md,csv,tex}")


# --------------------------------------------------------------------------- inputs

def per_problem_frame(items: list[tuple[str, dict]]) -> pd.DataFrame:
    """Long frame: method, seed, suite, k_max, problem_id, n, c (one row per problem per file)."""
    frames = []
    for source, obj in items:
        if not isinstance(obj, dict):
            raise PipelineError(f"{source}: expected a JSON object written by 'score'")
        for key in ("method", "suite", "k_max", "per_problem"):
            if key not in obj:
                raise PipelineError(f"{source}: missing key {key!r} (the paired bootstrap needs per-problem counts)")
        pp = obj["per_problem"]
        if not isinstance(pp, dict) or not all(k in pp for k in ("problem_id", "n", "c")):
            raise PipelineError(f"{source}: per_problem needs problem_id, n and c lists")
        lengths = {len(pp["problem_id"]), len(pp["n"]), len(pp["c"])}
        if len(lengths) != 1 or 0 in lengths:
            raise PipelineError(f"{source}: per_problem lists are empty or of different lengths")
        seed = obj.get("seed")
        frame = pd.DataFrame(
            {
                "problem_id": [str(p) for p in pp["problem_id"]],
                "n": np.asarray(pp["n"], dtype=np.int64),
                "c": np.asarray(pp["c"], dtype=np.int64),
            }
        )
        if frame["problem_id"].duplicated().any():
            raise PipelineError(f"{source}: duplicate problem_id in per_problem")
        if ((frame["c"] < 0) | (frame["c"] > frame["n"])).any():
            raise PipelineError(f"{source}: per_problem has c outside [0, n]")
        frame.insert(0, "source", str(source))
        frame.insert(1, "method", str(obj["method"]))
        frame.insert(2, "seed", -1 if seed is None else int(seed))
        frame.insert(3, "suite", str(obj["suite"]))
        frame.insert(4, "k_max", int(obj["k_max"]))
        frames.append(frame)
    if not frames:
        raise PipelineError("no Pass@k files given")
    out = pd.concat(frames, ignore_index=True)
    files = out.drop_duplicates("source")
    dup = files.duplicated(["method", "seed", "suite"], keep=False)
    if dup.any():
        raise PipelineError("two Pass@k files for the same method, seed and suite: " + ", ".join(files[dup]["source"]))
    return out


def seed_mean_values(frame: pd.DataFrame, method: str, suite: str, k: int) -> tuple[pd.Series, int]:
    """Per-problem Pass@k averaged over the method's seeds (indexed by problem_id) and the seed count."""
    sub = frame[(frame["method"] == method) & (frame["suite"] == suite)]
    if sub.empty:
        raise PipelineError(f"missing Pass@k results for method {method!r} on suite {suite!r}")
    per_seed = {}
    for seed, g in sub.groupby("seed", sort=True):
        if (g["n"] < k).any():
            raise PipelineError(f"method {method!r} seed {seed} on {suite!r}: fewer than k = {k} samples per problem")
        per_seed[seed] = pd.Series(pass_at_k(g["n"].to_numpy(), g["c"].to_numpy(), k), index=g["problem_id"].to_numpy())
    table = pd.DataFrame(per_seed)
    if table.isna().any().any():
        raise PipelineError(f"method {method!r} on {suite!r}: the seeds were scored on different problems")
    return table.mean(axis=1), len(per_seed)


# --------------------------------------------------------------------------- statistics

def sign_p_value(observed: float, boots: np.ndarray) -> float:
    """Two-sided bootstrap p of an observed difference: twice the fraction of resamples whose
    difference does not have the observed sign (ties count against it), capped at 1; 1 when
    the observed difference is 0."""
    if observed > 0:
        p = 2.0 * float(np.mean(boots <= 0.0))
    elif observed < 0:
        p = 2.0 * float(np.mean(boots >= 0.0))
    else:
        p = 1.0
    return min(1.0, p)


def bootstrap_indices(n_problems: int, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot, n_problems) problem indices drawn with replacement."""
    if n_problems < 1:
        raise PipelineError("the paired bootstrap needs at least one problem")
    if n_boot < 1:
        raise PipelineError(f"--bootstrap must be >= 1, got {n_boot}")
    return np.random.default_rng(seed).integers(0, n_problems, size=(n_boot, n_problems))


def paired_bootstrap(a, b, n_boot: int = 10000, seed: int = 0, idx: np.ndarray | None = None) -> dict:
    """Observed mean difference ``a − b``, its percentile CI and two-sided p-value (see module doc).

    ``a`` and ``b`` are per-problem values in the same problem order (fractions). Returns
    fractions: ``diff, ci_lo, ci_hi, p_value`` and ``n_boot``, ``n_problems``.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1 or a.size == 0:
        raise PipelineError("paired bootstrap: a and b must be non-empty 1-D arrays of the same length")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise PipelineError("paired bootstrap: values must be finite")
    if idx is None:
        idx = bootstrap_indices(a.size, int(n_boot), seed)
    d = a - b
    observed = float(d.mean())
    boots = np.empty(idx.shape[0], dtype=np.float64)
    step = max(1, 2_000_000 // a.size)
    for start in range(0, idx.shape[0], step):
        boots[start:start + step] = d[idx[start:start + step]].mean(axis=1)
    alpha = (1.0 - LEVEL) / 2.0
    lo, hi = np.quantile(boots, [alpha, 1.0 - alpha])
    p = sign_p_value(observed, boots)
    return {
        "diff": observed,
        "ci_lo": float(lo),
        "ci_hi": float(hi),
        "p_value": p,
        "n_boot": int(idx.shape[0]),
        "n_problems": int(a.size),
    }


def compare(
    frame: pd.DataFrame, baselines: dict[str, str], suites: list[str], n_boot: int = 10000, seed: int = 0,
    methods: list[str] | None = None,
) -> pd.DataFrame:
    """One row per (method, baseline, suite, metric), in method then suite order; values in pp."""
    order = list(methods) if methods else list(baselines)
    rows = []
    for method in order:
        baseline = baselines.get(method)
        if baseline is None:
            continue
        for suite in suites:
            k_values = sorted(set(frame.loc[frame["suite"] == suite, "k_max"]))
            if len(k_values) != 1:
                raise PipelineError(
                    f"suite {suite!r}: Pass@k files disagree on k_max ({k_values})" if k_values
                    else f"no Pass@k results for suite {suite!r}"
                )
            k_max = int(k_values[0])
            # the same resample of problems for both metrics of this comparison
            idx = None
            for metric, k in (("pass@K", k_max), ("pass@1", 1)):
                a, n_a = seed_mean_values(frame, method, suite, k)
                b, n_b = seed_mean_values(frame, baseline, suite, k)
                if set(a.index) != set(b.index):
                    only = sorted(set(a.index) ^ set(b.index))[:3]
                    raise PipelineError(
                        f"{method!r} and {baseline!r} on {suite!r} were scored on different problems (e.g. {only})"
                    )
                b = b.reindex(a.index)
                if idx is None:
                    idx = bootstrap_indices(len(a), n_boot, stable_seed(seed, method, baseline, suite))
                res = paired_bootstrap(a.to_numpy(), b.to_numpy(), idx=idx)
                rows.append(
                    {
                        "method": method,
                        "baseline": baseline,
                        "suite": suite,
                        "metric": metric,
                        "k": k,
                        "mean_pct": 100.0 * float(a.mean()),
                        "baseline_mean_pct": 100.0 * float(b.mean()),
                        "diff_pp": 100.0 * res["diff"],
                        "ci_lo": 100.0 * res["ci_lo"],
                        "ci_hi": 100.0 * res["ci_hi"],
                        "p_value": res["p_value"],
                        "n_problems": res["n_problems"],
                        "n_seeds": n_a,
                        "n_seeds_baseline": n_b,
                        "n_boot": res["n_boot"],
                    }
                )
    return pd.DataFrame(rows, columns=list(COLUMNS))


# --------------------------------------------------------------------------- rendering

def p_text(p: float, n_boot: int) -> str:
    if p <= 0.0:
        return f"< {2.0 / n_boot:.2g}"
    if p >= 0.01:
        return f"{p:.2f}"
    return f"{p:.1e}" if p < 0.001 else f"{p:.3f}"


def _metric_label(metric: str, k: int) -> str:
    return f"Pass@{k}"


def to_markdown(table: pd.DataFrame) -> str:
    lines = ["| Method | Baseline | Suite | Metric | Method % | Baseline % | Δ (pp) | 95% CI (pp) | p | Problems | Seeds |",
             "|:---|:---|:---|:---|---:|---:|---:|:---:|---:|---:|---:|"]
    for r in table.itertuples(index=False):
        lines.append(
            f"| {r.method} | {r.baseline} | {r.suite} | {_metric_label(r.metric, r.k)} | {r.mean_pct:.1f} | "
            f"{r.baseline_mean_pct:.1f} | {signed(r.diff_pp)} | [{signed(r.ci_lo)}, {signed(r.ci_hi)}] | "
            f"{p_text(r.p_value, r.n_boot)} | {r.n_problems} | {r.n_seeds} vs {r.n_seeds_baseline} |"
        )
    if table.empty:
        lines.append("| — | — | — | — | — | — | — | — | — | — | — |")
        lines += ["", "No method has its baseline among the configured methods: nothing to compare.", ""]
    n_boot = int(table["n_boot"].iloc[0]) if not table.empty else None
    lines += ["", NOTE + (f" {n_boot} resamples." if n_boot else ""), ""]
    return "\n".join(lines)


def to_latex(table: pd.DataFrame) -> str:
    lines = [
        "% Generated by `python -m pipeline compare`; needs \\usepackage{booktabs}.",
        "% " + NOTE.replace("%", "\\%"),
        "\\begin{tabular}{llllrrrcrrr}",
        "\\toprule",
        "Method & Baseline & Suite & Metric & Method & Baseline & $\\Delta$ (pp) & 95\\% CI (pp) & $p$ & Problems & Seeds \\\\",
        "\\midrule",
    ]
    for r in table.itertuples(index=False):
        p = p_text(r.p_value, r.n_boot).replace("<", "$<$")
        lines.append(
            " & ".join(
                [
                    latex_escape(r.method), latex_escape(r.baseline), latex_escape(r.suite),
                    _metric_label(r.metric, r.k), f"{r.mean_pct:.1f}", f"{r.baseline_mean_pct:.1f}",
                    f"${signed(r.diff_pp)}$", f"[${signed(r.ci_lo)}$, ${signed(r.ci_hi)}$]", p, str(r.n_problems),
                    f"{r.n_seeds} vs {r.n_seeds_baseline}",
                ]
            )
            + " \\\\"
        )
    lines += ["\\bottomrule", "\\end{tabular}", ""]
    return "\n".join(lines)


def render_all(table: pd.DataFrame) -> dict[str, str]:
    return {
        "md": to_markdown(table),
        "tex": to_latex(table),
        "csv": table.to_csv(index=False, float_format="%.6g", na_rep="NaN"),
    }


# --------------------------------------------------------------------------- stage

def run(args: argparse.Namespace) -> int:
    if args.bootstrap < 1:
        raise PipelineError(f"--bootstrap must be >= 1, got {args.bootstrap}")
    baselines = parse_baselines(args.baselines)
    frame = per_problem_frame(load_score_items(args.passk))
    present = set(frame["method"])
    missing = sorted({m for pair in baselines.items() for m in pair} - present)
    if missing:
        raise PipelineError(f"--baselines names {', '.join(map(repr, missing))} but no Pass@k file is for it")
    table = compare(frame, baselines, args.suites, n_boot=args.bootstrap, seed=args.seed, methods=args.methods)
    for suffix, text in render_all(table).items():
        write_text(Path(args.out_dir) / f"comparisons.{suffix}", text)
    logger.info("compare: %d comparisons (%d resamples each) written to %s/comparisons.{md,csv,tex}",
                len(table), args.bootstrap, args.out_dir)
    return 0
