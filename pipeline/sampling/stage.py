"""Stage ``sample``: n samples per problem of one suite from one model (base or trained).

Every sample is stored — problem id, sample index, text, token count, finish reason —
in Parquet, so that grading and Pass@K can be recomputed without sampling again.
"""

from __future__ import annotations

import argparse
import json
import logging
import time

import pandas as pd
import torch

from pipeline import io
from pipeline.data.schema import read_problems
from pipeline.models import check_model_dir, load_model_and_tokenizer
from pipeline.prompts import render_prompts
from pipeline.sampling.base import SamplingParams

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="model directory (save_pretrained layout)")
    parser.add_argument("--problems", required=True, help="suite Parquet file")
    parser.add_argument("--n", type=int, required=True, help="samples per problem")
    parser.add_argument("--sampling-json", required=True, help="the sampling config slice (JSON)")
    parser.add_argument("--template", required=True, help="prompt template with {problem}")
    parser.add_argument("--chat-template", action="store_true", help="wrap prompts in the tokenizer's chat template")
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--out", required=True, help="samples Parquet file")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--progress", action="store_true")


def make_sampler(model_dir: str, cfg: dict, progress: bool):
    """The configured backend over ``model_dir``: ``hf`` (transformers, CPU or GPU) or ``vllm``."""
    if cfg["backend"] == "vllm":
        from transformers import AutoTokenizer

        from pipeline.sampling.vllm_backend import VLLMSampler

        check_model_dir(model_dir)
        sampler = VLLMSampler(
            model_dir, tensor_parallel_size=cfg["tensor_parallel_size"], dtype=cfg["dtype"],
            max_model_len=cfg["max_model_len"], max_n_per_request=cfg["max_n_per_request"], show_progress=progress,
        )
        return sampler, AutoTokenizer.from_pretrained(model_dir)
    from pipeline.sampling.hf import HFSampler

    model, tokenizer = load_model_and_tokenizer(model_dir)
    if torch.cuda.is_available():
        model = model.to("cuda", dtype=torch.bfloat16 if cfg["dtype"] == "bfloat16" else torch.float32)
    return HFSampler(model, tokenizer, batch_size=cfg["batch_size"], show_progress=progress), tokenizer


def run(args: argparse.Namespace) -> int:
    torch.set_num_threads(args.threads)
    cfg = json.loads(args.sampling_json)
    problems = read_problems(args.problems)
    params = SamplingParams(
        n=args.n, temperature=cfg["temperature"], top_p=cfg["top_p"], top_k=cfg["top_k"],
        max_new_tokens=cfg["max_new_tokens"], seed=args.seed,
    )
    sampler, tokenizer = make_sampler(args.model, cfg, args.progress)
    t0 = time.time()
    prompts = render_prompts(problems["problem"], args.template, tokenizer, args.chat_template)
    outputs = sampler.generate(prompts, params)
    seconds = time.time() - t0
    rows = {"problem_id": [], "sample_index": [], "text": [], "num_tokens": [], "finish_reason": []}
    for pid, out in zip(problems["id"], outputs):
        for j, c in enumerate(out.completions):
            rows["problem_id"].append(pid)
            rows["sample_index"].append(j)
            rows["text"].append(c.text)
            rows["num_tokens"].append(c.num_tokens)
            rows["finish_reason"].append(c.finish_reason)
    frame = pd.DataFrame(rows)
    io.write_parquet(args.out, frame)
    tokens = int(frame["num_tokens"].sum())
    log.info(
        "%d samples, %d tokens in %.1fs (%.0f tokens/s), %.1f%% truncated",
        len(frame), tokens, seconds, tokens / max(seconds, 1e-9), 100 * (frame["finish_reason"] == "length").mean(),
    )
    return 0
