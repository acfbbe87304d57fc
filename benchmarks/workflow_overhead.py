"""Workflow overhead: a no-op ``snakemake`` (everything up to date) and DAG construction time.

    python benchmarks/workflow_overhead.py [--repeats 3] [--cores 2]

(a) No-op run. The repository (the committed HEAD, or with ``--tree worktree`` the working
tree's tracked and untracked-but-not-ignored files), the finished
``results/`` directory and Snakemake's ``.snakemake/metadata`` are copied, with their
mtimes, into a temporary directory; the checkout's own ``results/`` is never touched.
If the copy is not up to date (code or params changed since that run), ``snakemake
--touch`` marks it up to date first. Then a real ``snakemake --cores 2`` — not ``-n`` —
runs ``--repeats`` times and must find nothing to do each time: its median wall time is
the no-op overhead (target <= 3 s). ``python -c 'import snakemake.cli'`` is timed too,
as the floor any invocation pays.

(b) DAG construction: ``snakemake -n`` on every paper config (``configs/paper/*.yaml``,
into an empty directory); the one with the most jobs is timed ``--repeats`` times.

Prints the tables and writes ``results/benchmarks/workflow_overhead.json``.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

ROOT = _common.ROOT
TARGET_NOOP_S = 3.0


def repo_files(root: Path) -> list[str]:
    out = subprocess.run(["git", "-C", str(root), "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
                         capture_output=True, text=True, check=True).stdout
    return [f for f in out.split("\0") if f]


def copy_workspace(root: Path, dest: Path, results: Path | None, tree: str = "head") -> None:
    """The committed tree (``head``) or the working tree's files (``worktree``: tracked and
    untracked-but-not-ignored, mtimes kept), plus results/ and .snakemake/metadata when given."""
    if tree == "head":
        archive = subprocess.run(["git", "-C", str(root), "archive", "--format=tar", "HEAD"], capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    else:
        for rel in repo_files(root):
            src = root / rel
            if not src.is_file():  # deleted in the working tree
                continue
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    if results is not None:
        # The results of the default-run benchmark are a second results tree: not part of this run.
        ignore = shutil.ignore_patterns("default_run_results", ".*.tmp")
        shutil.copytree(results, dest / "results", symlinks=True, ignore=ignore)
        metadata = root / ".snakemake" / "metadata"
        if metadata.is_dir():
            shutil.copytree(metadata, dest / ".snakemake" / "metadata")


def snakemake(workdir: Path, *args: str, snakefile: Path | None = None) -> tuple[float, subprocess.CompletedProcess]:
    snakefile = snakefile or workdir / "Snakefile"
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(snakefile), "--directory", str(workdir), *args]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=workdir)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return seconds, proc


def planned_jobs(proc: subprocess.CompletedProcess) -> int:
    """Total jobs of a dry run (0 when there is nothing to be done)."""
    out = proc.stdout + proc.stderr
    if "Nothing to be done" in out:
        return 0
    m = re.search(r"^total\s+(\d+)\s*$", out, flags=re.M)
    if m is None:
        raise SystemExit(f"cannot find the job count in snakemake's output:\n{out[-2000:]}")
    return int(m[1])


def timed(cmd: list[str], cwd: Path) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, capture_output=True, check=True, cwd=cwd)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results-dir", type=Path, default=ROOT / "results", help="a finished default run (copied, never modified)")
    parser.add_argument("--configfile", default="config.yaml", help="config of the no-op run, relative to the repository")
    parser.add_argument("--paper-configs", default="configs/paper/*.yaml", help="glob, relative to the repository")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cores", default="2")
    parser.add_argument("--tree", choices=("head", "worktree"), default="head",
                        help="the workflow copied: the committed HEAD (default) or the working tree with uncommitted edits")
    parser.add_argument("--skip-noop", action="store_true", help="only the DAG construction part")
    parser.add_argument("--keep", action="store_true", help="keep the temporary copy (its path is printed)")
    parser.add_argument("--out", default=None, help="JSON path (default results/benchmarks/workflow_overhead.json)")
    args = parser.parse_args(argv)

    machine = _common.machine_info()
    tmp = Path(tempfile.mkdtemp(prefix="bench-workflow-"))
    report: dict = {"machine": machine, "settings": {"repeats": args.repeats, "cores": args.cores,
                                                     "configfile": args.configfile, "paper_configs": args.paper_configs,
                                                     "tree": args.tree}}
    try:
        work = tmp / "repo"
        work.mkdir()
        noop_results = None if args.skip_noop else args.results_dir
        if noop_results is not None and not (noop_results / "REPORT.md").exists():
            raise SystemExit(f"{noop_results} does not hold a finished run (no REPORT.md); run snakemake first or pass --skip-noop")
        t0 = time.perf_counter()
        copy_workspace(ROOT, work, noop_results, args.tree)
        print(f"copied the workspace to {work} in {time.perf_counter() - t0:.1f} s", flush=True)
        import_s = [timed([sys.executable, "-c", "import snakemake.cli"], work) for _ in range(args.repeats)]

        rows = [{"measurement": "python -c 'import snakemake.cli'", "runs": len(import_s),
                 "median_s": _common.median(import_s), "min_s": min(import_s), "max_s": max(import_s), "jobs": None}]
        if noop_results is not None:
            _, proc = snakemake(work, "--configfile", args.configfile, "-n", "--quiet", "rules")
            stale = planned_jobs(proc)
            touched = False
            if stale:
                print(f"the copied results are not up to date ({stale} jobs would run: code or params changed "
                      f"since the run); marking them up to date with --touch", flush=True)
                snakemake(work, "--configfile", args.configfile, "--touch", "--cores", "1", "--quiet")
                touched = True
                _, proc = snakemake(work, "--configfile", args.configfile, "-n", "--quiet", "rules")
                if planned_jobs(proc):
                    raise SystemExit(
                        "still not up to date after --touch: the workflow has outputs the results directory lacks "
                        f"(rules added since that run?); run snakemake first, or use --skip-noop\n{proc.stdout[-2000:]}")
            noop = []
            for _ in range(args.repeats):
                seconds, proc = snakemake(work, "--configfile", args.configfile, "--cores", args.cores)
                if "Nothing to be done" not in proc.stdout + proc.stderr:
                    raise SystemExit(f"the no-op run did something:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
                noop.append(seconds)
            rows.append({"measurement": f"no-op snakemake --cores {args.cores}", "runs": len(noop),
                         "median_s": _common.median(noop), "min_s": min(noop), "max_s": max(noop), "jobs": 0})
            report["noop"] = {"seconds": noop, "median_s": _common.median(noop), "stale_jobs_before": stale,
                              "touched": touched, "target_s": TARGET_NOOP_S,
                              "target_met": _common.median(noop) <= TARGET_NOOP_S}

        # (b) DAG construction of the paper configs, into an empty directory (nothing exists: every job planned).
        dag_dir = tmp / "dag"
        dag_dir.mkdir()
        counts = {}
        for cfg in sorted(work.glob(args.paper_configs)):
            _, proc = snakemake(dag_dir, "--configfile", str(cfg), "-n", "--quiet", "rules", "--cores", "64",
                                snakefile=work / "Snakefile")
            counts[cfg.relative_to(work).as_posix()] = planned_jobs(proc)
        if counts:
            largest = max(counts, key=lambda c: counts[c])
            dag = [snakemake(dag_dir, "--configfile", str(work / largest), "-n", "--quiet", "rules", "--cores", "64",
                             snakefile=work / "Snakefile")[0] for _ in range(args.repeats)]
            rows.append({"measurement": f"DAG: snakemake -n {largest}", "runs": len(dag),
                         "median_s": _common.median(dag), "min_s": min(dag), "max_s": max(dag), "jobs": counts[largest]})
            report["dag"] = {"jobs_per_config": counts, "largest": largest, "jobs": counts[largest],
                             "seconds": dag, "median_s": _common.median(dag)}

        print(_common.machine_line(machine))
        _common.print_table(rows, ["measurement", "runs", "median_s", "min_s", "max_s", "jobs"])
        if "noop" in report:
            met = report["noop"]["target_met"]
            print(f"no-op target <= {TARGET_NOOP_S} s: {'met' if met else 'NOT met'}")
        if counts:
            print("jobs per paper config: " + ", ".join(f"{Path(c).stem} {n}" for c, n in counts.items()))
        report["import_snakemake_s"] = import_s
        report["table"] = rows
        _common.write_result("workflow_overhead", report, args.out)
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
