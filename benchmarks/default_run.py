"""Wall time of the default reproduction from a clean results directory, split by rule.

    python benchmarks/default_run.py [--configfile config.yaml] [--cores 2] [--results-dir DIR]
    python benchmarks/default_run.py --summarize results/benchmarks/rules   # an existing run's split, no run

Runs the real ``snakemake`` on the config into a results directory of its own (wiped
first, so nothing is reused; about 25 minutes on 2 cores), then sums the per-job seconds
from the rules' ``benchmark:`` files. Prints a table and writes
``results/benchmarks/default_run.json``. With ``--summarize DIR`` it only reads the
``benchmark:`` files under DIR (e.g. a finished run's ``results/benchmarks/rules``).
"""

from __future__ import annotations

import argparse
import csv
import shutil
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

ROOT = _common.ROOT


def per_rule_seconds(bench_dir: Path) -> list[dict]:
    """Jobs, total, mean and max seconds per rule from the rules' ``benchmark:`` TSV files
    (``<bench_dir>/<rule>/.../<job>.tsv``), largest total first."""
    per_rule: dict[str, list[float]] = defaultdict(list)
    for tsv in sorted(Path(bench_dir).rglob("*.tsv")):
        rule = tsv.relative_to(bench_dir).parts[0].removesuffix(".tsv")
        with open(tsv) as fh:
            rows = list(csv.DictReader(fh, delimiter="\t"))
        if rows:  # a retried job's file may hold one row per attempt: the last one is the run that counted
            per_rule[rule].append(float(rows[-1]["s"]))
    return sorted(
        ({"rule": r, "jobs": len(v), "total_s": sum(v), "mean_s": sum(v) / len(v), "max_s": max(v)}
         for r, v in per_rule.items()),
        key=lambda r: -r["total_s"],
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configfile", default=str(ROOT / "config.yaml"))
    parser.add_argument("--cores", default="2")
    parser.add_argument("--results-dir", default=str(ROOT / "results" / "benchmarks" / "default_run_results"))
    parser.add_argument("--summarize", type=Path, default=None,
                        help="only summarise the benchmark: TSV files under this directory (no run)")
    parser.add_argument("--out", default=None, help="JSON path (default results/benchmarks/default_run.json)")
    args = parser.parse_args(argv)
    machine = _common.machine_info(cores_used=args.cores)

    wall = None
    if args.summarize is not None:
        bench_dir = args.summarize
        if not bench_dir.is_dir():
            raise SystemExit(f"{bench_dir} is not a directory")
    else:
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
        bench_dir = results / "benchmarks" / "rules"

    rows = per_rule_seconds(bench_dir)
    job_seconds = sum(r["total_s"] for r in rows)
    if wall is not None:
        print(f"default run ({args.configfile}): {wall:.1f} s wall on {args.cores} cores")
    else:
        print(f"per-rule split of the benchmark: files under {bench_dir} (no run)")
    print(_common.machine_line(machine))
    totals = [{"rule": "sum of jobs", "jobs": sum(r["jobs"] for r in rows), "total_s": job_seconds}]
    if wall is not None:
        totals.append({"rule": f"wall time, {args.cores} cores", "total_s": wall})
    _common.print_table(rows + totals, ["rule", "jobs", "total_s", "mean_s", "max_s"])
    _common.write_result("default_run", {
        "wall_seconds": wall, "cores": args.cores, "configfile": args.configfile,
        "benchmark_files": str(bench_dir), "summarized_only": args.summarize is not None,
        "machine": machine, "rules": rows, "job_seconds": job_seconds,
    }, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
