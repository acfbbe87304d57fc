"""Stage ``token-entropy``: per-token entropies of stored samples, recomputed by a teacher-forced
forward pass of the model that produced them.

Each analysed response is laid out as the sampler laid it out — the rendered prompt
encoded by the tokenizer (with its BOS), then the response tokens — and one forward
pass gives, at every response position, the full-vocabulary entropy of
``softmax(logits / temperature)`` and the log-probability of the token actually written
(chunked over positions: :func:`pipeline.rl.entropy.logprobs_and_entropy`).

Samples are stored as text, so the response is re-encoded with the tokenizer's offsets
(a fast tokenizer is required); for the toy's character tokenizer this gives back
exactly the sampled tokens, for a BPE tokenizer the canonical segmentation of the same
text (the count of responses whose re-encoding differs in length from the stored
``num_tokens`` is logged).

Output: one Parquet row per response token — ``model, problem_id, sample_index,
position, token_id, token`` (the token's text), ``start, end`` (its character span in
the response), ``entropy, logprob`` (nats).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from typing import Sequence

import numpy as np
import pandas as pd

from pipeline import io
from pipeline.errors import PipelineError

log = logging.getLogger(__name__)

TOKEN_COLUMNS = ("model", "problem_id", "sample_index", "position", "token_id", "token", "start", "end", "entropy", "logprob")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", nargs="+", required=True, help="model directories that produced the samples")
    parser.add_argument("--model-name", nargs="+", required=True,
                        help="label stored in the 'model' column of each (e.g. base, grpo/seed0)")
    parser.add_argument("--samples", nargs="+", required=True, help="samples Parquet file of each model, from 'sample'")
    parser.add_argument("--problems", required=True, help="the suite's Parquet file (prompts)")
    parser.add_argument("--analysis-json", required=True,
                        help="JSON: problems, samples_per_problem, seed, temperature, batch_size, chunk_size")
    parser.add_argument("--template", required=True, help="prompt template with {problem}")
    parser.add_argument("--chat-template", action="store_true")
    parser.add_argument("--trust-remote-code", action="store_true")
    parser.add_argument("--out", nargs="+", required=True, help="per-token Parquet file of each model")
    parser.add_argument("--threads", type=int, default=1)


# --------------------------------------------------------------------------- selection

def select_problems(ids: Sequence[str], count: int, seed: int) -> list[str]:
    """A seeded subset of ``count`` problem ids, kept in suite order (all of them if fewer)."""
    ids = [str(i) for i in ids]
    if count >= len(ids):
        return ids
    chosen = np.random.default_rng(seed).choice(len(ids), size=count, replace=False)
    return [ids[i] for i in sorted(chosen)]


def select_samples(samples: pd.DataFrame, problem_ids: Sequence[str], per_problem: int) -> pd.DataFrame:
    """The first ``per_problem`` samples of each chosen problem, in problem then sample order."""
    order = {pid: i for i, pid in enumerate(problem_ids)}
    frame = samples[samples["problem_id"].astype(str).isin(order) & (samples["sample_index"] < per_problem)].copy()
    frame["problem_id"] = frame["problem_id"].astype(str)
    frame["_order"] = frame["problem_id"].map(order)
    return frame.sort_values(["_order", "sample_index"], kind="stable").drop(columns="_order").reset_index(drop=True)


# --------------------------------------------------------------------------- model pass

def encode_responses(tokenizer, texts: Sequence[str]) -> list[tuple[list[int], np.ndarray, np.ndarray]]:
    """Token ids and character spans of each response (no special tokens)."""
    if not getattr(tokenizer, "is_fast", False):
        raise PipelineError("the exploration analysis needs a fast tokenizer (character offsets); this model's is not")
    out = []
    for text in texts:
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        offsets = np.asarray(enc["offset_mapping"], dtype=np.int64).reshape(-1, 2)
        out.append((list(enc["input_ids"]), offsets[:, 0].copy(), offsets[:, 1].copy()))
    return out


def teacher_forced(
    model, prompt_ids: Sequence[Sequence[int]], response_ids: Sequence[Sequence[int]], *,
    batch_size: int = 64, chunk_size: int | None = None, temperature: float = 1.0, pad_id: int = 0,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(entropy, logprob)`` arrays over each response's tokens, from prompt + response.

    Sequences are right-padded, so causal attention alone is exact for every real token
    (as in the trainer); batches are formed from sequences of similar length.
    """
    import torch

    from pipeline.rl.entropy import logprobs_and_entropy

    if len(prompt_ids) != len(response_ids):
        raise ValueError("one prompt per response")
    results: list[tuple[np.ndarray, np.ndarray]] = [(np.zeros(0), np.zeros(0))] * len(response_ids)
    lengths = [len(p) + len(r) for p, r in zip(prompt_ids, response_ids)]
    order = sorted((i for i in range(len(lengths)) if len(response_ids[i])), key=lambda i: (lengths[i], i))
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for b in range(0, len(order), batch_size):
                rows = order[b : b + batch_size]
                width = max(lengths[i] for i in rows)
                ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
                for j, i in enumerate(rows):
                    ids[j, : lengths[i]] = torch.tensor(list(prompt_ids[i]) + list(response_ids[i]), dtype=torch.long)
                ids = ids.to(device)
                logits = model(input_ids=ids).logits
                for j, i in enumerate(rows):
                    # Only the response positions, as a view (logits at t predict token t + 1); the
                    # chunked entropy upcasts chunk by chunk, so no float32 copy of the logits is made.
                    first = len(prompt_ids[i]) - 1
                    span = slice(first, first + len(response_ids[i]))
                    z = logits[j, span]
                    if temperature != 1.0:
                        z = z / temperature
                    logp, ent = logprobs_and_entropy(z, ids[j, first + 1 : first + 1 + len(response_ids[i])], chunk_size)
                    results[i] = (ent.double().cpu().numpy(), logp.double().cpu().numpy())
                del logits
    finally:
        model.train(was_training)
    return results


def response_tokens(
    model, tokenizer, prompts: Sequence[str], texts: Sequence[str], *, batch_size: int = 64,
    chunk_size: int | None = None, temperature: float = 1.0,
) -> list[dict]:
    """Per response: ``token_ids``, ``starts``, ``ends``, ``entropy``, ``logprob`` (arrays)."""
    prompt_ids = [tokenizer(p).input_ids for p in prompts]
    encoded = encode_responses(tokenizer, texts)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    passes = teacher_forced(model, prompt_ids, [e[0] for e in encoded], batch_size=batch_size,
                            chunk_size=chunk_size, temperature=temperature, pad_id=pad)
    return [
        {"token_ids": np.asarray(ids, dtype=np.int64), "starts": starts, "ends": ends, "entropy": ent, "logprob": lp}
        for (ids, starts, ends), (ent, lp) in zip(encoded, passes)
    ]


def token_frame(model_name: str, keys: Sequence[tuple[str, int]], texts: Sequence[str], per_response: Sequence[dict]) -> pd.DataFrame:
    """The long per-token table of :data:`TOKEN_COLUMNS`."""
    cols: dict[str, list] = {c: [] for c in TOKEN_COLUMNS}
    for (pid, sidx), text, r in zip(keys, texts, per_response):
        n = len(r["token_ids"])
        cols["problem_id"].extend([str(pid)] * n)
        cols["sample_index"].extend([int(sidx)] * n)
        cols["position"].extend(range(n))
        cols["token_id"].extend(r["token_ids"].tolist())
        cols["token"].extend(text[s:e] for s, e in zip(r["starts"].tolist(), r["ends"].tolist()))
        cols["start"].extend(r["starts"].tolist())
        cols["end"].extend(r["ends"].tolist())
        cols["entropy"].extend(r["entropy"].tolist())
        cols["logprob"].extend(r["logprob"].tolist())
    cols["model"] = [model_name] * len(cols["problem_id"])
    frame = pd.DataFrame(cols, columns=list(TOKEN_COLUMNS))
    return frame.astype({"sample_index": "int64", "position": "int64", "token_id": "int64", "start": "int64",
                         "end": "int64", "entropy": "float64", "logprob": "float64"})


def load_model(model_dir: str, trust_remote_code: bool = False):
    import torch

    from pipeline.models import load_model_and_tokenizer

    model, tokenizer = load_model_and_tokenizer(model_dir, trust_remote_code=trust_remote_code)
    if torch.cuda.is_available():
        model = model.to("cuda")
    return model, tokenizer


def analyse_model(model_dir: str, name: str, samples_path: str, problems: pd.DataFrame, cfg: dict, args) -> pd.DataFrame:
    from pipeline.prompts import render_prompts

    try:
        samples = pd.read_parquet(samples_path)
    except Exception as err:  # noqa: BLE001 - any unreadable file is one message
        raise PipelineError(f"samples file {samples_path} cannot be read ({str(err).splitlines()[0]})") from None
    missing = {"problem_id", "sample_index", "text"} - set(samples.columns)
    if missing:
        raise PipelineError(f"samples file {samples_path}: missing column(s) {', '.join(sorted(missing))}")
    ids = select_problems(problems["id"], cfg["problems"], cfg["seed"])
    chosen = select_samples(samples, ids, cfg["samples_per_problem"])
    if chosen.empty:
        raise PipelineError(f"samples file {samples_path} holds no samples of the analysed problems")
    model, tokenizer = load_model(model_dir, args.trust_remote_code)
    by_id = dict(zip(problems["id"].astype(str), problems["problem"]))
    prompts = render_prompts([by_id[p] for p in chosen["problem_id"]], args.template, tokenizer, args.chat_template)
    t0 = time.time()
    per_response = response_tokens(model, tokenizer, prompts, list(chosen["text"]), batch_size=cfg["batch_size"],
                                   chunk_size=cfg["chunk_size"], temperature=cfg["temperature"])
    if "num_tokens" in chosen.columns:
        differ = sum(len(r["token_ids"]) != n for r, n in zip(per_response, chosen["num_tokens"]))
        if differ:
            log.warning("%s: %d of %d responses re-encode to a different number of tokens than sampled "
                        "(entropies are those of the re-encoded text)", name, differ, len(chosen))
    frame = token_frame(name, list(zip(chosen["problem_id"], chosen["sample_index"])), list(chosen["text"]), per_response)
    log.info("token entropies of %s: %d responses, %d tokens in %.1fs, mean entropy %.4f nats",
             name, len(chosen), len(frame), time.time() - t0, frame["entropy"].mean() if len(frame) else float("nan"))
    return frame


def run(args: argparse.Namespace) -> int:
    """One job for several models (the start-up of a job costs more than a toy model's pass)."""
    import torch

    from pipeline.data.schema import read_problems

    torch.set_num_threads(args.threads)
    if not (len(args.model) == len(args.model_name) == len(args.samples) == len(args.out)):
        raise PipelineError("--model, --model-name, --samples and --out need one entry per model")
    cfg = json.loads(args.analysis_json)
    problems = read_problems(args.problems)
    for model_dir, name, samples_path, out in zip(args.model, args.model_name, args.samples, args.out):
        frame = analyse_model(model_dir, name, samples_path, problems, cfg, args)
        io.write_parquet(out, frame)
    return 0
