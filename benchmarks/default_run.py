"""Wall time of the default reproduction from a clean results directory, split by rule.

    python benchmarks/default_run.py [--configfile config.yaml] [--cores 2] [--results-dir DIR]

Runs the real ``snakemake`` on the config into a results directory of its own (wiped
first, so nothing is reused), then sums the per-job seconds from the rules' ``benchmark:``
files. Prints a table and writes ``results/benchmarks/default_run.json``.
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import shutil
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configfile", default=str(ROOT / "config.yaml"))
    parser.add_argument("--cores", default="2")
    parser.add_argument("--results-dir", default=str(ROOT / "results" / "benchmarks" / "default_run_results"))
    parser.add_argument("--out", default=str(ROOT / "results" / "benchmarks" / "default_run.json"))
    args = parser.parse_args()

    results = Path(args.results_dir)
    if results.exists():
        shutil.rmtree(results)
    cmd = [
        sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "--directory", str(ROOT),
        "--configfile", args.configfile, "--config", f"results_dir={results}",
        "allow_absolute_paths=True",  # the results directory may be anywhere (config.py refuses that by default)
        "--cores", args.cores, "--quiet",
    ]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        print(proc.stdout[-4000:], proc.stderr[-4000:], file=sys.stderr)
        return proc.returncode

    per_rule: dict[str, list[float]] = defaultdict(list)
    for tsv in sorted((results / "benchmarks" / "rules").rglob("*.tsv")):
        rel = tsv.relative_to(results / "benchmarks" / "rules")
        rule = rel.parts[0].removesuffix(".tsv")
        with open(tsv) as fh:
            row = next(csv.DictReader(fh, delimiter="\t"))
        per_rule[rule].append(float(row["s"]))
    rows = sorted(
        ({"rule": r, "jobs": len(v), "total_s": sum(v), "mean_s": sum(v) / len(v)} for r, v in per_rule.items()),
        key=lambda r: -r["total_s"],
    )
    print(f"default run: {wall:.1f} s wall on {args.cores} cores ({platform.processor() or platform.machine()})")
    print(f"{'rule':<18}{'jobs':>6}{'total s':>10}{'mean s':>9}")
    for r in rows:
        print(f"{r['rule']:<18}{r['jobs']:>6}{r['total_s']:>10.1f}{r['mean_s']:>9.1f}")
    job_seconds = sum(r["total_s"] for r in rows)
    print(f"{'sum of jobs':<18}{sum(r['jobs'] for r in rows):>6}{job_seconds:>10.1f}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "wall_seconds": wall, "cores": args.cores, "configfile": args.configfile,
        "machine": platform.platform(), "rules": rows, "job_seconds": job_seconds,
    }, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
