"""Sampling throughput of vLLM's CPU build vs our HF sampler, on the rehearsal's tiny Qwen2 model.

    .venv-vllm/bin/python benchmarks/vllm_vs_hf.py [--model DIR] [--prompts 32 --n 16] [--repeats 3]

The same prompts (mirror-style arithmetic problems rendered with the Qwen-Math template),
the same protocol (temperature 0.6, top-p 0.95, ``--max-new-tokens``), one thread each
(``OMP_NUM_THREADS=1``, as the rehearsal runs vLLM), through

* vLLM: ``pipeline.sampling.vllm_backend.VLLMSampler`` (fp32 engine, built once, not timed);
* HF: ``pipeline.sampling.hf.HFSampler`` on the model loaded by ``load_model_and_tokenizer``.

Alternating A B A B over ``--repeats`` rounds; each side's median wall time, tokens counted
as the generated tokens without the EOS. Runs in the vLLM environment (``make vllm-env``).
Writes ``results/benchmarks/vllm_vs_hf.json``. The model defaults to the one the tests cache
(``.pytest_cache/d/rehearsal-tiny-model``) or is built (``rehearsal.tiny_model``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ["OMP_NUM_THREADS"] = "1"
sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

ROOT = _common.ROOT
TEMPLATE = "{problem}\nPlease reason step by step, and put your final answer within \\boxed{{}}."


def default_model() -> Path:
    cached = sorted((ROOT / ".pytest_cache" / "d" / "rehearsal-tiny-model").glob("seed0-*/model.safetensors"))
    if cached:
        return cached[-1].parent
    from rehearsal.tiny_model import build_tiny_model

    out = ROOT / "results" / "benchmarks" / "tiny_model"
    if not (out / "model.safetensors").is_file():
        build_tiny_model(out, seed=0, report=False)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    _common.set_threads(1)
    import random

    from pipeline.models import load_model_and_tokenizer
    from pipeline.sampling.base import SamplingParams
    from pipeline.sampling.hf import HFSampler
    from pipeline.sampling.vllm_backend import VLLMSampler
    from rehearsal.problems import unique_problems

    info = _common.machine_info()
    model_dir = Path(args.model) if args.model else default_model()
    problems = unique_problems(random.Random(1), "math500", args.prompts)
    prompts = [TEMPLATE.format(problem=p.text) for p in problems]
    model, tok = load_model_and_tokenizer(model_dir)
    hf = HFSampler(model, tok, batch_size=1024)
    t0 = time.perf_counter()
    engine = VLLMSampler(str(model_dir), dtype="float32", max_model_len=256)
    params = SamplingParams(n=args.n, temperature=0.6, top_p=0.95, max_new_tokens=args.max_new_tokens, seed=0)
    engine.generate(prompts[:1], SamplingParams(n=1, temperature=0.6, top_p=0.95, max_new_tokens=4, seed=0))
    engine_seconds = time.perf_counter() - t0
    runs = {"vllm": [], "hf": []}
    for r in range(args.repeats):
        for name, sampler in (("vllm", engine), ("hf", hf)):
            start = time.perf_counter()
            out = sampler.generate(prompts, SamplingParams(**{**params.__dict__, "seed": r}))
            seconds = time.perf_counter() - start
            tokens = sum(c.num_tokens for pc in out for c in pc.completions)
            runs[name].append({"seconds": seconds, "tokens": tokens})
    rows = []
    for name, values in runs.items():
        s = _common.median(v["seconds"] for v in values)
        t = _common.median(v["tokens"] for v in values)
        rows.append({"sampler": name, "samples": args.prompts * args.n, "median s": round(s, 2), "tokens": int(t),
                     "tokens/s": round(t / s)})
    ratio = rows[0]["tokens/s"] / rows[1]["tokens/s"]
    _common.print_table(rows, title=f"{args.prompts} prompts x n = {args.n}, T 0.6, top-p 0.95, {args.max_new_tokens} new tokens; vLLM/HF = {ratio:.2f}; engine start {engine_seconds:.1f} s")
    print(_common.machine_line(info))
    _common.write_result("vllm_vs_hf", {"machine": info, "rows": rows, "runs": runs, "vllm_over_hf": ratio,
                                        "engine_start_seconds": engine_seconds, "model": str(model_dir)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
