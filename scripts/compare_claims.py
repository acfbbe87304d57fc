"""Two claims tables row by row: do the verdicts and the effects' signs agree?

    python scripts/compare_claims.py OLD/claims.csv NEW/claims.csv [--out comparison.md]

For two runs of the same study whose floating-point paths differ (another CPU instruction set,
another library version, a numerically equivalent code change), every single-run number moves;
a verdict computed over replicates should not. Rows are matched by (claim, comparison, suite,
quantity); rows only one side has are listed, not compared. Prints (or writes) a Markdown
summary: rows compared, same verdict, effect sign flips, and every row whose verdict changed.
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old", type=Path)
    parser.add_argument("new", type=Path)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    text = to_markdown(*compare(pd.read_csv(args.old), pd.read_csv(args.new)))
    if args.out:
        args.out.write_text(text)
    print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
