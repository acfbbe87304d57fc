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

The instruction set torch reports does not decide every kernel: MKL and oneDNN choose their
own code paths from the CPU (its vendor and features, ``MKL_ENABLE_INSTRUCTIONS``), and two
AVX-512 CPUs of different vendors gave different toy numbers. ``cpu_fingerprint`` settles it
empirically: a hash of what the operations the model runs (matrix products, attention,
normalisation, softmax, a backward pass, the sampler's random draws) return on fixed inputs
here. Two machines with different fingerprints round at least one of the model's operations
differently and will not reproduce each other's numbers; the same fingerprint says these
operations agree bit for bit — strong evidence for a whole run, not a proof (the optimizer's
and other kernels are not in it).
"""

from __future__ import annotations

import hashlib
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


def _exact(*shape: int, salt: int):
    """A tensor of values k/512 - 1 built by integer arithmetic: the same bits on every
    machine (unlike randn or sin, whose kernels are themselves what is being fingerprinted)."""
    import torch

    n = 1
    for d in shape:
        n *= d
    ints = (torch.arange(n, dtype=torch.int64) * 7919 + salt * 104729) % 1021
    return (ints.to(torch.float32) / 512.0 - 1.0).reshape(shape)


def cpu_fingerprint() -> str:
    """12 hex digits naming how this process's CPU kernels round: a hash of the outputs of the
    operations the toy model runs, at shapes like its own (hidden 64, 4 query heads, one
    key/value head, 48 positions), on exact inputs, with one torch thread (as the pipeline's
    jobs run) and a fixed generator; ~15 ms. A different fingerprint: the numbers will drift;
    the same one: these operations agree bit for bit (this module's docstring)."""
    import torch
    import torch.nn.functional as F

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        # callable from inside a sampler's no-grad / inference-mode block: it needs autograd
        with torch.inference_mode(False), torch.enable_grad():
            x = _exact(8, 48, 64, salt=1).requires_grad_()
            h = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6)                      # RMSNorm
            q = h.view(8, 48, 4, 16).transpose(1, 2)
            kv = (h[..., :16] * 0.5).unsqueeze(1).expand(-1, 4, -1, -1)                     # one key/value head
            attn = F.scaled_dot_product_attention(q, kv, kv, is_causal=True)
            mlp = F.linear(F.silu(F.linear(h, _exact(192, 64, salt=2) / 8)), _exact(64, 192, salt=3) / 8)
            logits = F.linear(attn.transpose(1, 2).reshape(8, 48, 64) + mlp, _exact(32, 64, salt=4))
            log_probs = F.log_softmax(logits / 0.6, dim=-1)
            entropy = -(log_probs.exp() * log_probs).sum(-1)
            (grad,) = torch.autograd.grad(log_probs[..., 0].mean() + entropy.mean(), x)     # a backward pass
            generator = torch.Generator().manual_seed(0)
            draws = torch.multinomial(F.softmax(logits[:, -1].detach(), dim=-1), 4, replacement=True, generator=generator)
            noise = torch.randn(256, generator=generator)
        digest = hashlib.sha256()
        for t in (attn, mlp, log_probs, entropy, grad, draws, noise):
            digest.update(t.detach().contiguous().numpy().tobytes())
        return digest.hexdigest()[:12]
    finally:
        torch.set_num_threads(threads)


def describe(**extra: str) -> dict[str, str]:
    """This process's machine as the numbers see it (torch must be importable).

    ``cpu_kernels`` is what torch dispatches its vectorised CPU kernels to (``AVX512``,
    ``AVX2``, ``DEFAULT``...); ``cpu_fingerprint`` says whether the CPU kernels as a whole
    (MKL's and oneDNN's too) round alike (:func:`cpu_fingerprint`); ``gpu`` is the first CUDA
    device's name when one is visible. ``extra`` adds fields (e.g. ``vllm``'s version).
    """
    import torch

    info = {
        "cpu": cpu_model(),
        "cpu_kernels": torch.backends.cpu.get_cpu_capability(),
        "cpu_fingerprint": cpu_fingerprint(),
        "torch": torch.__version__,
        "transformers": package_version("transformers") or "not installed",
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    info.update(extra)
    return info


def label(info: dict) -> str:
    """One line for tables: ``AMD EPYC · CPU kernels AVX512 (fingerprint 3f2a…) · torch 2.13.0+cpu · ...``
    (records written before the fingerprint existed have none)."""
    kernels = f"CPU kernels {info.get('cpu_kernels', '?')}"
    if info.get("cpu_fingerprint"):
        kernels += f" (fingerprint {info['cpu_fingerprint']})"
    head = [info.get("cpu", "unknown CPU"), kernels]
    if info.get("gpu"):
        head.append(info["gpu"])
    rest = [f"{k} {v}" for k, v in info.items() if k not in ("cpu", "cpu_kernels", "cpu_fingerprint", "gpu")]
    return " · ".join(head + rest)


def kernels_key(info: dict) -> str:
    """What decides whether two records' CPU numbers can agree: the fingerprint where recorded,
    else the instruction set torch reported."""
    return info.get("cpu_fingerprint") or info.get("cpu_kernels", "?")


def from_parquet(path: str | Path) -> list[dict]:
    """The machines recorded in a Parquet file's metadata (none for files written before this)."""
    import pyarrow.parquet as pq

    metadata = pq.read_schema(path).metadata or {}
    raw = metadata.get(PARQUET_KEY)
    return json.loads(raw) if raw else []
