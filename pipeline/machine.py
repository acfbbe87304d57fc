"""Where a result was computed: CPU, the instruction set torch's kernels dispatch to, GPU, versions.

Floating-point kernels differ between instruction sets (AVX2 vs AVX-512 vectorised softmax,
attention, reductions), so the same config and seed give the same numbers only on the same
kind of machine: a toy SFT drifts, and the drift propagates through every later stage. The
stages that compute numbers record this next to them (the base model's ``sft_metrics.json``,
the evaluation samples' Parquet metadata, the trainer's ``timings.jsonl``) and the report
lists it, so a reader comparing two runs can tell whether they came from the same kind of
machine without asking whoever ran them.

``ATEN_CPU_CAPABILITY=avx2`` (an environment variable read by torch at import) makes an
AVX-512 machine run torch's AVX2 kernels: the recorded ``cpu_kernels`` is then ``AVX2``.
"""

from __future__ import annotations

import json
import platform
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

PARQUET_KEY = b"pipeline.machine"  # key of the Parquet schema metadata holding describe()'s dicts


def cpu_model() -> str:
    """The CPU's model name (``lscpu``, else ``/proc/cpuinfo``, else what ``platform`` knows)."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def package_version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def describe(**extra: str) -> dict[str, str]:
    """This process's machine as the numbers see it (torch must be importable).

    ``cpu_kernels`` is what torch dispatches its vectorised CPU kernels to (``AVX512``,
    ``AVX2``, ``DEFAULT``...), which is what decides the CPU numbers; ``gpu`` is the first
    CUDA device's name when one is visible. ``extra`` adds fields (e.g. ``vllm``'s version).
    """
    import torch

    info = {
        "cpu": cpu_model(),
        "cpu_kernels": torch.backends.cpu.get_cpu_capability(),
        "torch": torch.__version__,
        "transformers": package_version("transformers") or "not installed",
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    info.update(extra)
    return info


def label(info: dict) -> str:
    """One line for tables: ``AMD EPYC · CPU kernels AVX512 · torch 2.13.0+cpu · transformers 5.25.0``."""
    head = [info.get("cpu", "unknown CPU"), f"CPU kernels {info.get('cpu_kernels', '?')}"]
    if info.get("gpu"):
        head.append(info["gpu"])
    rest = [f"{k} {v}" for k, v in info.items() if k not in ("cpu", "cpu_kernels", "gpu")]
    return " · ".join(head + rest)


def from_parquet(path: str | Path) -> list[dict]:
    """The machines recorded in a Parquet file's metadata (none for files written before this)."""
    import pyarrow.parquet as pq

    metadata = pq.read_schema(path).metadata or {}
    raw = metadata.get(PARQUET_KEY)
    return json.loads(raw) if raw else []
