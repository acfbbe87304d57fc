"""Sampling throughput: our HF sampler vs a bare ``model.generate`` loop, and Pass@K sampling tokens/s.

    python benchmarks/sampling_throughput.py [--suite toy-amc --problems 40 --n 128] [--repeats 3]

Part 1 (the comparison): the same prompts (the first ``--problems`` of one evaluation
suite, rendered with the config's prompt template), the same protocol (temperature 0.6,
top-p 0.95, max 112 new tokens, from config.yaml's ``sampling``), the same batch size
(``--batch-size`` sequences per forward, prompts × n) and the same thread count, through

* ours: ``pipeline.sampling.hf.HFSampler.generate`` (prefill once per prompt, KV cache
  repeated n times, finished rows dropped);
* bare: ``model.generate(do_sample=True, temperature, top_p, top_k=0, max_new_tokens,
  num_return_sequences=n)`` over the same prompt chunks (left-padded).

The two alternate (A B A B …, ``--repeats`` rounds); each reports its median wall time.
Tokens counted for both: the real generated tokens up to (not including) EOS. Target:
ours / bare throughput >= 1.0.

Part 2 (Pass@K sampling): our sampler on whole suites with their configured n
(``--passk-suites``; ``none`` skips it), tokens/s and samples/s as the ``sample`` rule does it.

Prints the tables and writes ``results/benchmarks/sampling_throughput.json``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

ROOT = _common.ROOT


def load(model_dir: str):
    from pipeline.models import load_model_and_tokenizer

    model, tok = load_model_and_tokenizer(model_dir)
    model.eval()
    return model, tok


def suite_prompts(results: Path, suite: str, problems: int | None, template: str) -> list[str]:
    from pipeline.data.schema import read_problems
    from pipeline.prompts import render_prompts

    frame = read_problems(_common.require(results / "data" / "suites" / f"{suite}.parquet", f"the {suite} suite"))
    texts = list(frame["problem"])[: problems or None]
    return render_prompts(texts, template)


def run_ours(model, tok, prompts, n, sampling, batch_size, seed) -> dict:
    from pipeline.sampling.base import SamplingParams
    from pipeline.sampling.hf import HFSampler

    sampler = HFSampler(model, tok, batch_size=batch_size)
    params = SamplingParams(n=n, temperature=sampling["temperature"], top_p=sampling["top_p"],
                            top_k=sampling.get("top_k", 0), max_new_tokens=sampling["max_new_tokens"], seed=seed)
    t0 = time.perf_counter()
    outs = sampler.generate(prompts, params)
    seconds = time.perf_counter() - t0
    comps = [c for pc in outs for c in pc.completions]
    return {"seconds": seconds, "samples": len(comps), "tokens": sum(c.num_tokens for c in comps),
            "truncated": sum(c.finish_reason == "length" for c in comps)}


def run_bare(model, tok, prompts, n, sampling, batch_size, seed) -> dict:
    """The plain transformers loop: left-padded prompt chunks, ``model.generate`` with n return sequences."""
    import torch

    eos, pad = tok.eos_token_id, tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    per_chunk = max(1, batch_size // n)
    # The same chunks as ours: prompts of similar length together.
    ids = [tok(p).input_ids for p in prompts]
    order = sorted(range(len(ids)), key=lambda i: (len(ids[i]), i))
    torch.manual_seed(seed)
    samples = tokens = truncated = 0
    t0 = time.perf_counter()
    with torch.no_grad():
        for start in range(0, len(order), per_chunk):
            chunk = [ids[i] for i in order[start : start + per_chunk]]
            width = max(len(c) for c in chunk)
            input_ids = torch.full((len(chunk), width), pad, dtype=torch.long)
            attention = torch.zeros_like(input_ids)
            for r, c in enumerate(chunk):
                input_ids[r, width - len(c):] = torch.tensor(c)
                attention[r, width - len(c):] = 1
            out = model.generate(
                input_ids=input_ids, attention_mask=attention, do_sample=True,
                temperature=sampling["temperature"], top_p=sampling["top_p"], top_k=sampling.get("top_k", 0) or None,
                max_new_tokens=sampling["max_new_tokens"], num_return_sequences=n,
                eos_token_id=eos, pad_token_id=pad,
            )
            gen = out[:, width:]
            is_eos = gen == eos
            has_eos = is_eos.any(dim=1)
            first = torch.where(has_eos, is_eos.int().argmax(dim=1), torch.full_like(has_eos, gen.shape[1], dtype=torch.long))
            tokens += int(first.sum())  # real tokens before the first EOS (padding after it is not counted)
            truncated += int((~has_eos).sum())
            samples += gen.shape[0]
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "samples": samples, "tokens": tokens, "truncated": truncated}


def summarise(name: str, runs: list[dict]) -> dict:
    secs = _common.median(r["seconds"] for r in runs)
    tokens = _common.median(r["tokens"] for r in runs)
    samples = runs[0]["samples"]
    return {"sampler": name, "runs": len(runs), "samples": samples, "median_tokens": tokens,
            "median_s": secs, "tokens_per_s": tokens / secs, "samples_per_s": samples / secs,
            "mean_len": tokens / samples, "truncated_frac": _common.median(r["truncated"] for r in runs) / samples}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results-dir", default=str(ROOT / "results"), help="a finished run: models/base, data/suites")
    parser.add_argument("--model", default=None, help="model directory (default: <results>/models/base)")
    parser.add_argument("--configfile", default=str(ROOT / "config.yaml"))
    parser.add_argument("--suite", default="toy-amc")
    parser.add_argument("--problems", type=int, default=40, help="first N problems of the suite")
    parser.add_argument("--n", type=int, default=128, help="samples per prompt")
    parser.add_argument("--batch-size", type=int, default=None, help="sequences per forward (default: config sampling.batch_size)")
    parser.add_argument("--repeats", type=int, default=3, help="A B rounds; medians are reported")
    parser.add_argument("--passk-suites", default="toy-aime,toy-amc,toy-math500",
                        help="comma-separated suites sampled whole with their configured n (Pass@K sampling); 'none' skips")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="JSON path (default results/benchmarks/sampling_throughput.json)")
    args = parser.parse_args(argv)

    _common.set_threads(args.threads)
    from pipeline.config import load_config

    cfg = load_config(args.configfile)
    sampling = dict(cfg["sampling"])
    batch_size = args.batch_size or sampling["batch_size"]
    template = cfg["prompt"]["template"]
    results = Path(args.results_dir)
    model, tok = load(_common.require(args.model or results / "models" / "base", "the model to sample from"))
    n_params = sum(p.numel() for p in model.parameters())
    machine = _common.machine_info(threads=args.threads)

    prompts = suite_prompts(results, args.suite, args.problems, template)
    # Warm-up (first-call allocations, lazy imports) on a few prompts, for both.
    run_ours(model, tok, prompts[:2], min(args.n, 8), sampling, batch_size, args.seed)
    run_bare(model, tok, prompts[:2], min(args.n, 8), sampling, batch_size, args.seed)
    ours, bare = [], []
    for rep in range(args.repeats):
        ours.append(run_ours(model, tok, prompts, args.n, sampling, batch_size, args.seed + rep))
        bare.append(run_bare(model, tok, prompts, args.n, sampling, batch_size, args.seed + rep))
    rows = [summarise("ours (HFSampler)", ours), summarise("bare model.generate", bare)]
    ratio = rows[0]["tokens_per_s"] / rows[1]["tokens_per_s"]
    print(f"sampling throughput: {len(prompts)} {args.suite} prompts x n={args.n}, batch {batch_size} sequences, "
          f"T={sampling['temperature']} top-p={sampling['top_p']} max {sampling['max_new_tokens']} new tokens, "
          f"{args.threads} thread(s), model {n_params:,} parameters")
    print(_common.machine_line(machine))
    _common.print_table(rows, ["sampler", "runs", "samples", "median_s", "tokens_per_s", "samples_per_s", "mean_len", "truncated_frac"])
    print(f"ours / bare throughput (tokens/s): {ratio:.2f}x  (target >= 1.0: {'met' if ratio >= 1.0 else 'NOT met'})")

    passk = []
    suites = [] if args.passk_suites.strip().lower() in ("", "none") else [s.strip() for s in args.passk_suites.split(",")]
    for suite in suites:
        n = cfg["suites"][suite]["n_samples"]
        p = suite_prompts(results, suite, None, template)
        r = run_ours(model, tok, p, n, sampling, batch_size, args.seed)
        passk.append({"suite": suite, "problems": len(p), "n": n, "samples": r["samples"], "tokens": r["tokens"],
                      "seconds": r["seconds"], "tokens_per_s": r["tokens"] / r["seconds"],
                      "samples_per_s": r["samples"] / r["seconds"]})
    if passk:
        print()
        _common.print_table(passk, ["suite", "problems", "n", "samples", "tokens", "seconds", "tokens_per_s", "samples_per_s"],
                            title="Pass@K sampling with our sampler (whole suites, configured n):")

    _common.write_result("sampling_throughput", {
        "settings": {"suite": args.suite, "problems": len(prompts), "n": args.n, "batch_size": batch_size,
                     "sampling": sampling, "threads": args.threads, "repeats": args.repeats, "model_parameters": n_params,
                     "tokens": "generated tokens before the first EOS (EOS and padding not counted)"},
        "machine": machine,
        "comparison": rows, "ours_over_bare": ratio, "target": ">= 1.0", "target_met": ratio >= 1.0,
        "raw": {"ours": ours, "bare": bare},
        "passk_sampling": passk,
    }, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
