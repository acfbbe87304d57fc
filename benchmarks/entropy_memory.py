"""Peak memory of ``token_entropy``: chunked vs unchunked at Qwen2.5 scale, on CPU.

The logits of one 4,096-token sequence over Qwen2.5's 151,936-entry vocabulary are
2.49 GB in float32. The project's goal: computing the entropy chunked must peak at
no more than 1.25x the logits tensor's own size (logits + temporaries).

Method: each variant runs in a FRESH subprocess (so no allocator cache or earlier
peak leaks between variants). The worker allocates and fills the logits, reads the
peak resident set size ``ru_maxrss`` (this is the baseline: interpreter + torch +
logits), runs the variant, and reads ``ru_maxrss`` again. The difference is the
peak EXTRA memory of the computation. (tracemalloc does not see torch's C++
allocations, so RSS is the only honest measure here.)

Usage::

    python benchmarks/entropy_memory.py                      # full size, ~1 minute
    python benchmarks/entropy_memory.py --positions 512      # quick smoke run

Writes ``results/benchmarks/entropy_memory.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

REPO = _common.ROOT
GOAL_RATIO = 1.25
# (name, chunk_size or None, mode): mode "nograd" = inference forward;
# "grad_forward" = forward with autograd recording, graph kept alive while measuring;
# "forward_backward" = forward + backward (the logits gradient itself is a full copy).
VARIANTS = [
    ("unchunked", None, "nograd"),
    ("chunked_128", 128, "nograd"),
    ("chunked_256", 256, "nograd"),
    ("chunked_512", 512, "nograd"),
    ("chunked_1024", 1024, "nograd"),
    ("chunked_256_grad_forward", 256, "grad_forward"),
    ("chunked_256_forward_backward", 256, "forward_backward"),
]


def _maxrss_bytes() -> int:
    # Linux reports ru_maxrss in KiB (macOS in bytes).
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss if platform.system() == "Darwin" else rss * 1024


def worker(vocab: int, positions: int, chunk_size: int | None, mode: str, threads: int) -> dict:
    """Runs in a fresh process; returns the measurement as a dict."""
    import torch

    sys.path.insert(0, str(REPO))
    from pipeline.rl.entropy import token_entropy

    torch.set_num_threads(threads)
    gen = torch.Generator().manual_seed(0)
    logits = torch.empty(positions, vocab, dtype=torch.float32).normal_(0.0, 3.0, generator=gen)
    logits_bytes = logits.numel() * logits.element_size()
    baseline = _maxrss_bytes()

    t0 = time.perf_counter()
    if mode == "nograd":
        with torch.no_grad():
            out = token_entropy(logits, chunk_size)
    elif mode == "grad_forward":
        logits.requires_grad_(True)
        out = token_entropy(logits, chunk_size)  # graph (and whatever it saved) still alive below
    elif mode == "forward_backward":
        logits.requires_grad_(True)
        out = token_entropy(logits, chunk_size)
        out.sum().backward()
    else:
        raise ValueError(f"unknown mode {mode!r}")
    seconds = time.perf_counter() - t0
    peak = _maxrss_bytes()
    extra = max(peak - baseline, 0)
    # Logits gradient is an unavoidable full-size output of backward: report it apart.
    grad_bytes = logits_bytes if mode == "forward_backward" else 0
    return {
        "chunk_size": chunk_size,
        "mode": mode,
        "logits_bytes": logits_bytes,
        "baseline_rss_bytes": baseline,
        "peak_rss_bytes": peak,
        "extra_bytes": extra,
        "extra_over_logits": extra / logits_bytes,
        "peak_total_over_logits": (logits_bytes + extra) / logits_bytes,
        "extra_excluding_grad_over_logits": max(extra - grad_bytes, 0) / logits_bytes,
        "seconds": seconds,
        "mean_entropy": float(out.detach().mean()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vocab", type=int, default=151_936)
    parser.add_argument("--positions", type=int, default=4_096)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None, help="JSON path (default results/benchmarks/entropy_memory.json)")
    parser.add_argument("--worker", nargs=3, metavar=("CHUNK", "MODE", "NAME"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        chunk, mode, _ = args.worker
        res = worker(args.vocab, args.positions, None if chunk == "none" else int(chunk), mode, args.threads)
        print(json.dumps(res))
        return 0

    machine = _common.machine_info(threads=args.threads)
    rows = []
    for name, chunk, mode in VARIANTS:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--vocab", str(args.vocab),
               "--positions", str(args.positions), "--threads", str(args.threads),
               "--worker", "none" if chunk is None else str(chunk), mode, name]
        env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
        if proc.returncode != 0:
            sys.stderr.write(proc.stderr)
            raise SystemExit(f"variant {name} failed with exit code {proc.returncode}")
        res = json.loads(proc.stdout.strip().splitlines()[-1])
        res["name"] = name
        rows.append(res)

    logits_gb = rows[0]["logits_bytes"] / 1e9
    from pipeline.rl.entropy import DEFAULT_CHUNK_SIZE  # noqa: E402  (after the workers)

    default = next(r for r in rows if r["chunk_size"] == DEFAULT_CHUNK_SIZE and r["mode"] == "nograd")
    print(f"token_entropy peak memory: {args.positions} positions x {args.vocab} vocab, float32 logits "
          f"{logits_gb:.2f} GB, {args.threads} threads")
    print(_common.machine_line(machine))
    print(f"{'variant':<30} {'chunk':>6} {'extra GB':>9} {'extra/logits':>13} {'peak/logits':>12} {'seconds':>8}")
    for r in rows:
        print(f"{r['name']:<30} {str(r['chunk_size']):>6} {r['extra_bytes'] / 1e9:>9.3f} "
              f"{r['extra_over_logits']:>13.3f} {r['peak_total_over_logits']:>12.3f} {r['seconds']:>8.2f}")
    meets = default["peak_total_over_logits"] <= GOAL_RATIO
    print(f"goal: chunked (chunk {DEFAULT_CHUNK_SIZE}) peak <= {GOAL_RATIO}x logits: "
          f"{default['peak_total_over_logits']:.3f}x -> {'met' if meets else 'NOT met'}")
    print("(forward_backward's extra includes the logits gradient, a full-size copy by definition)")

    report = {
        "config": {"vocab": args.vocab, "positions": args.positions, "dtype": "float32", "threads": args.threads,
                   "method": "ru_maxrss in a fresh subprocess per variant, minus the peak after allocating logits"},
        "machine": machine,
        "logits_bytes": rows[0]["logits_bytes"],
        "goal_peak_over_logits": GOAL_RATIO,
        "default_chunk_size": DEFAULT_CHUNK_SIZE,
        "default_chunked_peak_over_logits": default["peak_total_over_logits"],
        "goal_met": meets,
        "variants": rows,
    }
    _common.write_result("entropy_memory", report, args.out)
    return 0 if meets else 1


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    raise SystemExit(main())
