"""Two claims tables row by row: do the verdicts and the effects' signs agree?

    python scripts/compare_claims.py OLD/claims.csv NEW/claims.csv [--out comparison.md]
        [--replicates OLD/aer_replicates.csv NEW/aer_replicates.csv]

For two runs of the same study whose floating-point paths differ (another CPU instruction set,
another library version, a numerically equivalent code change), every single-run number moves;
a verdict computed over replicates should not. Rows are matched by (claim, comparison, suite,
quantity); rows only one side has are listed, not compared. Prints (or writes) a Markdown
summary: rows compared, same verdict, effect sign flips, and every row whose verdict changed.

``--replicates`` adds the single-run numbers beside them (the two runs' ``aer_replicates.csv``):
per replicate world and suite, Pass@1 of its base model, of GRPO and of AER in both runs, and
how far they moved: what a verdict over replicates has to be robust to.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

KEY = ["claim", "comparison", "suite", "quantity"]


def compare(old: pd.DataFrame, new: pd.DataFrame) -> tuple[pd.DataFrame, list[str], list[str]]:
    """Matched rows with both verdicts and effects, and the keys only one side has."""
    for frame in (old, new):
        frame["suite"] = frame["suite"].fillna("")
    both = old[KEY + ["effect", "verdict"]].merge(new[KEY + ["effect", "verdict"]], on=KEY, suffixes=("_old", "_new"))
    keys = lambda f: {" / ".join(map(str, r)) for r in f[KEY].itertuples(index=False)}
    only_old, only_new = sorted(keys(old) - keys(new)), sorted(keys(new) - keys(old))
    tested = (both["verdict_old"] != "not tested") & (both["verdict_new"] != "not tested")
    both = both[tested].copy()
    both["same_verdict"] = both["verdict_old"] == both["verdict_new"]
    both["sign_flip"] = (both["effect_old"] * both["effect_new"]) < 0
    return both, only_old, only_new


def to_markdown(both: pd.DataFrame, only_old: list[str], only_new: list[str]) -> str:
    lines = [f"Rows compared (tested in both): {len(both)}; same verdict: {int(both['same_verdict'].sum())}; "
             f"effect sign flips: {int(both['sign_flip'].sum())}.", ""]
    changed = both[~both["same_verdict"] | both["sign_flip"]]
    if not changed.empty:
        lines += ["| claim | comparison | suite | quantity | effect (old / new) | verdict (old / new) |",
                  "|:---|:---|:---|:---|---:|:---|"]
        for r in changed.itertuples(index=False):
            lines.append(f"| {r.claim} | {r.comparison} | {r.suite} | {r.quantity} | {r.effect_old:.4g} / {r.effect_new:.4g} | "
                         f"{r.verdict_old} / {r.verdict_new} |")
        lines.append("")
    for label, keys in (("only in the old table", only_old), ("only in the new table", only_new)):
        if keys:
            lines.append(f"Rows {label}: " + "; ".join(keys) + ".")
    return "\n".join(lines).rstrip() + "\n"


def replicate_numbers(old: pd.DataFrame, new: pd.DataFrame, method: str = "grpo_aer") -> str:
    """Markdown: each (seed, suite)'s Pass@1 of the base model, GRPO and ``method`` in both runs."""
    cols = ["seed", "suite", "base_pass1", "grpo_pass1", "pass1"]
    both = old[old["method"] == method][cols].merge(new[new["method"] == method][cols], on=["seed", "suite"],
                                                    suffixes=("_old", "_new"))
    if both.empty:
        return f"No replicate of {method} in both runs.\n"
    lines = [f"Single-run Pass@1 (%) per replicate world, old / new ({len(both)} pairs):", "",
             f"| seed | suite | base | grpo | {method} |", "|---:|:---|---:|---:|---:|"]
    for r in both.sort_values(["seed", "suite"]).itertuples(index=False):
        lines.append(f"| {r.seed} | {r.suite} | {r.base_pass1_old:.1f} / {r.base_pass1_new:.1f} | "
                     f"{r.grpo_pass1_old:.1f} / {r.grpo_pass1_new:.1f} | {r.pass1_old:.1f} / {r.pass1_new:.1f} |")
    lines.append("")
    for name, col in (("base", "base_pass1"), ("grpo", "grpo_pass1"), (method, "pass1")):
        moved = (both[f"{col}_new"] - both[f"{col}_old"]).abs()
        lines.append(f"- {name}: moved by {moved.mean():.2f} pp on average, at most {moved.max():.2f} pp; "
                     f"identical in {int((moved < 1e-9).sum())} of {len(moved)}.")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old", type=Path)
    parser.add_argument("new", type=Path)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--replicates", nargs=2, type=Path, default=None, metavar=("OLD", "NEW"),
                        help="the two runs' aer_replicates.csv: single-run numbers beside the verdicts")
    args = parser.parse_args(argv)
    text = to_markdown(*compare(pd.read_csv(args.old), pd.read_csv(args.new)))
    if args.replicates:
        text += "\n" + replicate_numbers(*(pd.read_csv(p) for p in args.replicates))
    if args.out:
        args.out.write_text(text)
    print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
