"""Stage ``analyze-checkpoints``: the Fig. 8 quantities (Cheng et al. 2025) across one run's
training snapshots.

Training with ``training.snapshot_every`` leaves one ``save_pretrained`` directory per
snapshot in ``train/<method>/seed<s>/snapshots/`` — ``rollout-0000`` (the starting
policy), ``rollout-0005``, …, and the final rollout. From every snapshot the same fixed
problems (a seeded subset of one suite) are sampled with the evaluation protocol
(``sampling:`` temperature, top-p, max new tokens; the HF sampler) and the same seed, so
that differences come from the policy alone. The responses' entropies are recomputed
by a teacher-forced pass of the snapshot and measured like the stored samples (see
:mod:`pipeline.analysis.annotate`):

``rollout, responses, accuracy, response_length, mean_entropy, pivotal_per_response,
pivotal_entropy, <category>_per_response…, reflective_per_response, reflective_share,
reflective_entropy, repetition`` — one CSV row per snapshot.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import time
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline import io
from pipeline.errors import PipelineError

log = logging.getLogger(__name__)

SNAPSHOT_RE = re.compile(r"^rollout-(\d+)$")
RUN_RE = re.compile(r"^(?P<method>[A-Za-z0-9][A-Za-z0-9_.+-]*)/seed(?P<seed>\d+)$")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--snapshots", nargs="+", required=True, help="directory of rollout-NNNN model directories, per run")
    parser.add_argument("--run", nargs="+", required=True, help="METHOD/seedN of each training run")
    parser.add_argument("--problems", required=True, help="suite Parquet file the fixed problems come from")
    parser.add_argument("--analysis-json", required=True, help="the analysis config slice (JSON)")
    parser.add_argument("--sampling-json", required=True, help="the sampling config slice (JSON)")
    parser.add_argument("--template", required=True)
    parser.add_argument("--chat-template", action="store_true")
    parser.add_argument("--grader", default="answer_line")
    parser.add_argument("--grading-timeout-s", type=float, default=5.0)
    parser.add_argument("--trust-remote-code", action="store_true")
    parser.add_argument("--out", nargs="+", required=True, help="CSV of each run, one row per snapshot")
    parser.add_argument("--threads", type=int, default=1)


def list_snapshots(directory: str | Path) -> list[tuple[int, Path]]:
    """``(rollout, path)`` of every ``rollout-NNNN`` subdirectory, by rollout number."""
    directory = Path(directory)
    if not directory.is_dir():
        raise PipelineError(f"snapshot directory {directory} does not exist (train with training.snapshot_every)")
    found = []
    for child in directory.iterdir():
        m = SNAPSHOT_RE.match(child.name)
        if m and child.is_dir():
            found.append((int(m.group(1)), child))
    if not found:
        raise PipelineError(f"snapshot directory {directory} holds no rollout-NNNN model directories "
                            "(was the run trained with training.snapshot_every > 0?)")
    return sorted(found)


def summarise(rollout: int, summaries: list[dict], correct: list[bool], categories: list[str]) -> dict:
    """One row of the checkpoint table from the per-response summaries of one snapshot."""
    frame = pd.DataFrame(summaries)
    n = len(frame)
    n_pivotal = frame["n_pivotal"].sum()
    n_reflective = frame["n_reflective"].sum()
    tokens = frame["n_tokens"].sum()
    row = {
        "rollout": rollout,
        "responses": n,
        "accuracy": float(np.mean(correct)) if correct else float("nan"),
        "response_length": float(frame["n_tokens"].mean()),
        # token-weighted mean over all response tokens
        "mean_entropy": float((frame["mean_entropy"].fillna(0) * frame["n_tokens"]).sum() / tokens) if tokens else float("nan"),
        "pivotal_per_response": float(n_pivotal / n),
        "pivotal_entropy": float(frame["pivotal_entropy_sum"].sum() / n_pivotal) if n_pivotal else float("nan"),
    }
    for cat in categories:
        row[f"pivotal_{cat}_per_response"] = float(frame[f"n_{cat}"].sum() / n)
    row.update({
        "reflective_per_response": float(n_reflective / n),
        "reflective_share": float((frame["n_reflective"] > 0).mean()),
        "reflective_entropy": float(frame["reflective_entropy_sum"].sum() / n_reflective) if n_reflective else float("nan"),
        "repetition": float(frame["repetition"].mean()),
    })
    return row


def analyse_run(snapshot_dir, run_name: str, problems: pd.DataFrame, cfg: dict, sampling: dict, args) -> pd.DataFrame:
    from pipeline.analysis.annotate import annotate_response
    from pipeline.analysis.settings import compile_patterns
    from pipeline.analysis.token_entropy import load_model, response_tokens, select_problems
    from pipeline.eval.grading import grade_many
    from pipeline.prompts import render_prompts
    from pipeline.sampling.base import SamplingParams
    from pipeline.sampling.hf import HFSampler

    m = RUN_RE.match(run_name)
    if not m:
        raise PipelineError(f"--run {run_name!r}: expected METHOD/seedN")
    patterns = compile_patterns(cfg)
    ck = cfg["checkpoints"]
    snapshots = list_snapshots(snapshot_dir)
    ids = select_problems(problems["id"], ck["problems"], cfg["seed"])
    chosen = problems.set_index(problems["id"].astype(str)).loc[ids]
    answers = [str(a) for a in chosen["answer"] for _ in range(ck["samples_per_problem"])]
    # The same seed for every snapshot (and run): differences come from the policy alone.
    params = SamplingParams(
        n=ck["samples_per_problem"], temperature=sampling["temperature"], top_p=sampling["top_p"],
        top_k=sampling.get("top_k", 0), max_new_tokens=sampling["max_new_tokens"],
        seed=io.stable_seed("analysis-checkpoints", cfg["seed"]),
    )
    rows = []
    for rollout, path in snapshots:
        t0 = time.time()
        model, tokenizer = load_model(str(path), args.trust_remote_code)
        prompts = render_prompts(list(chosen["problem"]), args.template, tokenizer, args.chat_template)
        sampler = HFSampler(model, tokenizer, batch_size=max(params.n, sampling.get("batch_size", 1024)))
        outputs = sampler.generate(prompts, params)
        texts = [c.text for out in outputs for c in out.completions]
        flat_prompts = [p for p, out in zip(prompts, outputs) for _ in out.completions]
        per_response = response_tokens(model, tokenizer, flat_prompts, texts, batch_size=cfg["batch_size"],
                                       chunk_size=cfg["chunk_size"], temperature=cfg["temperature"])
        summaries = [
            annotate_response(t, r["token_ids"], r["starts"], r["ends"], r["entropy"], patterns, cfg["repetition"])[2]
            for t, r in zip(texts, per_response)
        ]
        correct = [g.correct for g in grade_many(texts, answers, args.grader, timeout_s=args.grading_timeout_s)]
        rows.append(summarise(rollout, summaries, correct, list(patterns.categories)))
        log.info("%s %s: %d responses in %.1fs, accuracy %.3f, mean entropy %.4f", run_name, path.name, len(texts),
                 time.time() - t0, rows[-1]["accuracy"], rows[-1]["mean_entropy"])
        del model, sampler
    frame = pd.DataFrame(rows)
    frame.insert(0, "seed", int(m.group("seed")))
    frame.insert(0, "method", m.group("method"))
    return frame


def run(args: argparse.Namespace) -> int:
    """One job for all runs (a job's start-up costs more than a toy snapshot's analysis)."""
    import torch

    from pipeline.analysis.settings import fill_defaults
    from pipeline.data.schema import read_problems

    torch.set_num_threads(args.threads)
    if not (len(args.snapshots) == len(args.run) == len(args.out)):
        raise PipelineError("--snapshots, --run and --out need one entry per run")
    cfg = fill_defaults(json.loads(args.analysis_json))
    sampling = json.loads(args.sampling_json)
    problems = read_problems(args.problems)
    for snapshot_dir, run_name, out in zip(args.snapshots, args.run, args.out):
        frame = analyse_run(snapshot_dir, run_name, problems, cfg, sampling, args)
        io.write_text(out, frame.to_csv(index=False, float_format="%.6g"))
        log.info("wrote %s (%d snapshots)", out, len(frame))
    return 0
