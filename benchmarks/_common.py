"""Shared helpers of the benchmark scripts: machine info, tables, JSON under results/benchmarks/.

Every benchmark prints a short table and writes one JSON file
``results/benchmarks/<name>.json`` holding its numbers and a ``machine`` block (CPU model,
cores, load average when it started, torch / transformers versions, date, git commit),
so a number can always be traced to the machine and code it came from.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterable, Sequence

ROOT = Path(__file__).resolve().parents[1]
BENCH_DIR = ROOT / "results" / "benchmarks"

if str(ROOT) not in sys.path:  # `python benchmarks/x.py` from anywhere: the package is importable
    sys.path.insert(0, str(ROOT))

from pipeline.machine import cpu_model, package_version  # noqa: E402 - after the path is set


def set_threads(n: int) -> None:
    """One setting for every thread pool torch may use (call before heavy imports where possible)."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(n)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch

    torch.set_num_threads(n)


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True).stdout.strip()
        return (out.stdout.strip() + ("+dirty" if dirty else "")) or None
    except OSError:
        return None


def machine_info(**extra: Any) -> dict[str, Any]:
    """Where and when a measurement was taken. The load average tells whether the machine was quiet."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count()
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = None
    info = {
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "cpu_model": cpu_model(),
        "cores": cores,
        "loadavg_1_5_15_at_start": load,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": package_version("torch"),
        "transformers": package_version("transformers"),
        "snakemake": package_version("snakemake"),
        "git_commit": git_commit(),
    }
    info.update(extra)
    return info


def machine_line(info: dict[str, Any]) -> str:
    return (f"{info['date']}  {info['cpu_model']}, {info['cores']} cores, load avg {info['loadavg_1_5_15_at_start']}, "
            f"torch {info['torch']}, transformers {info['transformers']}, commit {info['git_commit']}")


def require(path: str | os.PathLike, what: str) -> Path:
    """``path`` if it exists; else exit with a one-line hint (the benchmarks read a finished run)."""
    path = Path(path)
    if not path.exists():
        raise SystemExit(f"{path} does not exist: {what} (run `make reproduce` first, or pass the path explicitly)")
    return path


def median(values: Iterable[float]) -> float:
    values = list(values)
    return statistics.median(values) if values else float("nan")


def _fmt(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}" if abs(value) >= 10000 else str(value)
    if isinstance(value, float):
        if value != value:  # nan
            return "—"
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        if abs(value) >= 100:
            return f"{value:.1f}"
        return f"{value:.3g}" if abs(value) < 1 else f"{value:.2f}"
    return "—" if value is None else str(value)


def format_table(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> str:
    """A plain aligned text table (first column left-aligned, the rest right-aligned)."""
    if not rows:
        return "(no rows)"
    columns = list(columns or rows[0].keys())
    cells = [[_fmt(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(values, widths)))

    return "\n".join([line(columns), line(["-" * w for w in widths]), *(line(r) for r in cells)])


def print_table(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None, title: str | None = None) -> None:
    if title:
        print(title)
    print(format_table(rows, columns))


def write_result(name: str, payload: dict[str, Any], out: str | os.PathLike | None = None) -> Path:
    """Write ``payload`` (with a ``machine`` block if it has none) to ``out`` or
    ``results/benchmarks/<name>.json``, atomically; returns the path."""
    path = Path(out) if out is not None else BENCH_DIR / f"{name}.json"
    payload = {"benchmark": name, **payload}
    payload.setdefault("machine", machine_info())
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    os.replace(tmp, path)
    print(f"wrote {path}")
    return path
