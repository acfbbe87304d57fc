"""Stage ``score``: grade one model's samples on one suite and compute Pass@k.

Inputs: the suite's problems Parquet (``id, problem, answer, difficulty, source``) and
the samples Parquet (``problem_id, sample_index, text, num_tokens, finish_reason``).
Every problem must have the same number n of samples, and n >= k_max.

Truncated samples (``finish_reason == "length"``) are wrong whatever they contain and
are not graded (their verdict row has ``grader_status = "truncated"``). A sample whose
grader times out or fails is wrong too (``grader_status`` ``timeout``/``error``).

Outputs: per-sample verdicts Parquet (``problem_id, sample_index, correct,
finish_reason, grader_status``) and a Pass@k JSON (see ``build_summary``).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import re
import time
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.errors import PipelineError
from pipeline.eval.grading import GRADER_VERSION, GraderPool, resolve_grader
from pipeline.eval.majority import maj_at_ks
from pipeline.eval.passk import bootstrap_ci, pass_at_k, power_of_two_ks
from pipeline.eval.verdict_cache import VerdictCache, grader_identity, verdict_key
from pipeline.io import write_json, write_parquet

logger = logging.getLogger(__name__)

PROBLEM_COLUMNS = ("id", "problem", "answer", "difficulty", "source")
SAMPLE_COLUMNS = ("problem_id", "sample_index", "text", "num_tokens", "finish_reason")
FINISH_REASONS = ("stop", "length")
MODEL_ID_RE = re.compile(r"^(?P<method>[A-Za-z0-9][A-Za-z0-9_.+-]*)/seed(?P<seed>\d+)$")
EVAL_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--problems", required=True, type=Path, help="suite problems Parquet")
    parser.add_argument("--samples", required=True, type=Path, help="samples Parquet of one model on this suite")
    parser.add_argument("--model", required=True, help="'base', '<method>/seed<seed>' or 'eval/<name>'")
    parser.add_argument("--suite", required=True, help="suite name (recorded in the output)")
    parser.add_argument("--k-max", required=True, type=int, help="largest k of the Pass@k curve (<= samples per problem)")
    parser.add_argument("--grader", default="answer_line", help="grader name (default: answer_line) or 'module:function'")
    parser.add_argument("--timeout-s", type=float, default=5.0, help="hard per-sample grading timeout in seconds")
    parser.add_argument("--workers", type=int, default=1, help="grading worker processes")
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples over problems for CIs (0: none)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    parser.add_argument("--verdict-cache", type=Path, default=None,
                        help="directory of cached verdicts (reused, and extended as chunks finish: a rerun resumes)")
    parser.add_argument("--chunk-size", type=int, default=4096, help="samples graded between cache writes and progress lines")
    parser.add_argument("--out-verdicts", required=True, type=Path, help="per-sample verdicts Parquet")
    parser.add_argument("--out-passk", required=True, type=Path, help="Pass@k summary JSON")


def parse_model_id(model: str) -> tuple[str, int | None]:
    """``base`` -> ("base", None); ``grpo/seed1`` -> ("grpo", 1); an evaluated model
    ``eval/qwen-math`` -> ("qwen-math", None)."""
    if model == "base":
        return "base", None
    if model.startswith("eval/") and EVAL_NAME_RE.match(model[5:]):
        return model[5:], None
    m = MODEL_ID_RE.match(model)
    if not m:
        raise PipelineError(f"--model {model!r}: expected 'base', '<method>/seed<int>' or 'eval/<name>'")
    return m.group("method"), int(m.group("seed"))


def _read_parquet(path: Path, what: str, columns: tuple[str, ...]) -> pd.DataFrame:
    if not path.exists():
        raise PipelineError(f"{what} file {path} does not exist")
    try:
        frame = pd.read_parquet(path)
    except Exception as err:  # noqa: BLE001 - any reader failure is bad input
        raise PipelineError(f"{what} file {path}: cannot read Parquet ({err})") from err
    for col in columns:
        if col not in frame.columns:
            raise PipelineError(f"{what} file {path}: missing column {col!r} (has {list(frame.columns)})")
    for col in columns:
        if frame[col].isna().any():
            row = int(np.flatnonzero(frame[col].isna().to_numpy())[0])
            raise PipelineError(f"{what} file {path}: column {col!r} has a null value (row {row})")
    return frame


def _int_column(frame: pd.DataFrame, path: Path, col: str) -> np.ndarray:
    values = pd.to_numeric(frame[col], errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(values) | (values != np.round(values))
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise PipelineError(f"file {path}: column {col!r} must hold integers (row {row}: {frame[col].iloc[row]!r})")
    return values.astype(np.int64)


def load_inputs(problems_path: Path, samples_path: Path) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    """Validated problems and samples (samples sorted by problem order, then sample_index) and n."""
    problems = _read_parquet(problems_path, "problems", PROBLEM_COLUMNS)
    samples = _read_parquet(samples_path, "samples", SAMPLE_COLUMNS)
    if len(problems) == 0:
        raise PipelineError(f"problems file {problems_path} has no rows")
    problems = problems.assign(
        id=problems["id"].astype(str),
        answer=problems["answer"].astype(str),
        difficulty=_int_column(problems, problems_path, "difficulty"),
    )
    dup = problems["id"].duplicated()
    if dup.any():
        raise PipelineError(f"problems file {problems_path}: duplicate id {problems['id'][dup].iloc[0]!r}")

    samples = samples.assign(
        problem_id=samples["problem_id"].astype(str),
        sample_index=_int_column(samples, samples_path, "sample_index"),
        finish_reason=samples["finish_reason"].astype(str),
        text=samples["text"].astype(str),
    )
    bad_reason = ~samples["finish_reason"].isin(FINISH_REASONS)
    if bad_reason.any():
        raise PipelineError(
            f"samples file {samples_path}: column 'finish_reason' has {samples['finish_reason'][bad_reason].iloc[0]!r}"
            f" (expected one of {list(FINISH_REASONS)})"
        )
    known = set(problems["id"])
    unknown = ~samples["problem_id"].isin(known)
    if unknown.any():
        raise PipelineError(
            f"samples file {samples_path}: column 'problem_id' has {samples['problem_id'][unknown].iloc[0]!r},"
            f" which is not an id in problems file {problems_path}"
        )
    dup = samples.duplicated(["problem_id", "sample_index"])
    if dup.any():
        row = samples[dup].iloc[0]
        raise PipelineError(
            f"samples file {samples_path}: duplicate (problem_id, sample_index) = ({row['problem_id']!r}, {row['sample_index']})"
        )
    counts = samples.groupby("problem_id").size().reindex(problems["id"], fill_value=0)
    empty = counts[counts == 0]
    if len(empty):
        raise PipelineError(
            f"samples file {samples_path}: problem {empty.index[0]!r} of problems file {problems_path} has no samples"
        )
    n = int(counts.iloc[0])
    odd = counts[counts != n]
    if len(odd):
        raise PipelineError(
            f"samples file {samples_path}: every problem needs the same number of samples, but problem "
            f"{counts.index[0]!r} has {n} and problem {odd.index[0]!r} has {int(odd.iloc[0])}"
        )
    order = {pid: i for i, pid in enumerate(problems["id"])}
    samples = (
        samples.assign(_order=samples["problem_id"].map(order))
        .sort_values(["_order", "sample_index"], kind="stable")
        .drop(columns="_order")
        .reset_index(drop=True)
    )
    return problems.reset_index(drop=True), samples, n


def grade_samples(
    problems: pd.DataFrame, samples: pd.DataFrame, grader: str, timeout_s: float, workers: int,
    cache_dir: Path | None = None, chunk_size: int = 4096,
) -> pd.DataFrame:
    """Per-sample verdicts; truncated samples are wrong and not graded. With ``cache_dir``,
    verdicts graded before (by the same grader identity) are reused, and each graded chunk is
    stored as it finishes (pipeline/eval/verdict_cache.py): a rerun or a resumed job grades
    only what no earlier run finished."""
    answer_of = dict(zip(problems["id"], problems["answer"]))
    truncated = (samples["finish_reason"] == "length").to_numpy()
    correct = np.zeros(len(samples), dtype=bool)
    status = np.full(len(samples), "truncated", dtype=object)
    texts = samples["text"].to_numpy()
    pids = samples["problem_id"].to_numpy()
    cache = VerdictCache(cache_dir)
    identity = grader_identity(grader)
    keys = {i: verdict_key(identity, answer_of[pids[i]], texts[i]) for i in np.flatnonzero(~truncated)}
    todo, same = [], {}  # one grading per distinct (answer, text): repeated responses are common
    for i, key in keys.items():
        hit = cache.lookup(key)
        if hit is not None:
            correct[i], status[i] = hit, "ok"
        elif key in same:
            same[key].append(i)
        else:
            same[key] = [i]
            todo.append(i)
    if cache_dir is not None:
        logger.info("verdict cache %s: %d of %d gradable samples already graded; %d distinct left to grade",
                    cache_dir, len(keys) - sum(len(v) for v in same.values()), len(keys), len(todo))
    started, done = time.monotonic(), 0
    with GraderPool(grader, timeout_s, workers) if todo else contextlib.nullcontext() as pool:
        for start in range(0, len(todo), chunk_size):
            chunk = todo[start : start + chunk_size]
            results = pool.grade([texts[i] for i in chunk], [answer_of[pids[i]] for i in chunk])
            for i, res in zip(chunk, results):
                for j in same[keys[i]]:
                    correct[j], status[j] = res.correct, res.status
            cache.add([keys[i] for i, res in zip(chunk, results) if res.status == "ok"],
                      [bool(res.correct) for res in results if res.status == "ok"])
            done += len(chunk)
            rate = done / max(time.monotonic() - started, 1e-9)
            logger.info("graded %d/%d samples (%.0f/s, ETA %.0f s)", done, len(todo), rate, (len(todo) - done) / rate)
    return pd.DataFrame(
        {
            "problem_id": samples["problem_id"].astype(str),
            "sample_index": samples["sample_index"].astype(np.int64),
            "correct": correct,
            "finish_reason": samples["finish_reason"].astype(str),
            "grader_status": pd.Series(status, dtype=str),
        }
    )


def build_summary(
    *,
    problems: pd.DataFrame,
    verdicts: pd.DataFrame,
    n: int,
    model: str,
    suite: str,
    k_max: int,
    grader: str,
    n_boot: int,
    seed: int,
    texts=None,
) -> dict:
    """The Pass@k JSON object (keys of ``pass_at_k``/``pass_at_k_ci`` are ``str(k)``)."""
    method, model_seed = parse_model_id(model)
    c = verdicts.groupby("problem_id", sort=False)["correct"].sum().reindex(problems["id"]).to_numpy(dtype=np.int64)
    ks = power_of_two_ks(k_max)
    pass_at = {}
    pass_ci = {}
    for k in ks:
        per_problem = np.asarray(pass_at_k(n, c, k), dtype=np.float64)
        pass_at[str(k)] = float(per_problem.mean())
        if n_boot > 0:
            lo, hi = bootstrap_ci(per_problem, n_boot=n_boot, seed=seed)
            pass_ci[str(k)] = [lo, hi]
    status = verdicts["grader_status"]
    maj = None
    if texts is not None:
        maj = maj_at_ks(list(texts), verdicts["correct"].to_numpy(), verdicts["problem_id"].to_numpy(),
                        [str(p) for p in problems["id"]], ks, grader, seed,
                        truncated=(verdicts["finish_reason"] == "length").to_numpy())
    return {
        "model": model,
        "method": method,
        "seed": model_seed,
        "suite": suite,
        "k_max": int(k_max),
        "n_samples": int(n),
        "n_problems": int(len(problems)),
        "ks": ks,
        "pass_at_k": pass_at,
        "pass_at_k_ci": pass_ci,
        "pass1": float(verdicts["correct"].mean()),
        "pass1_ci": pass_ci.get("1"),
        # majority vote over the extracted answers of k samples (pipeline/eval/majority.py);
        # None when the grader has no answer extractor
        "maj_at_k": maj,
        "bootstrap": {"n_boot": int(n_boot), "seed": int(seed), "level": 0.95},
        "per_problem": {
            "problem_id": [str(p) for p in problems["id"]],
            "n": [int(n)] * len(problems),
            "c": [int(x) for x in c],
            "difficulty": [int(d) for d in problems["difficulty"]],
        },
        "grader": grader,
        "grader_version": GRADER_VERSION,
        "n_truncated": int((verdicts["finish_reason"] == "length").sum()),
        "n_grader_failures": int(status.isin(["timeout", "error"]).sum()),
    }


def run(args: argparse.Namespace) -> int:
    parse_model_id(args.model)
    if args.k_max < 1:
        raise PipelineError(f"--k-max must be >= 1, got {args.k_max}")
    if args.workers < 1:
        raise PipelineError(f"--workers must be >= 1, got {args.workers}")
    if not args.timeout_s > 0:
        raise PipelineError(f"--timeout-s must be > 0, got {args.timeout_s}")
    if args.bootstrap < 0:
        raise PipelineError(f"--bootstrap must be >= 0, got {args.bootstrap}")
    try:
        resolve_grader(args.grader)
    except ValueError as err:
        raise PipelineError(f"--grader: {err}") from err
    problems, samples, n = load_inputs(args.problems, args.samples)
    if args.k_max > n:
        raise PipelineError(
            f"--k-max {args.k_max} exceeds the {n} samples per problem in {args.samples}: Pass@k needs k <= n"
        )
    verdicts = grade_samples(problems, samples, args.grader, args.timeout_s, args.workers, args.verdict_cache, args.chunk_size)
    summary = build_summary(
        problems=problems,
        verdicts=verdicts,
        n=n,
        model=args.model,
        suite=args.suite,
        k_max=args.k_max,
        grader=args.grader,
        n_boot=args.bootstrap,
        seed=args.seed,
        texts=samples["text"].to_numpy(),
    )
    write_parquet(args.out_verdicts, verdicts)
    write_json(args.out_passk, summary)
    logger.info(
        "score %s on %s: %d problems x %d samples, pass@1 %.1f%%, pass@%d %.1f%%, %d truncated, %d grader failures",
        args.model,
        args.suite,
        summary["n_problems"],
        n,
        100 * summary["pass1"],
        args.k_max,
        100 * summary["pass_at_k"][str(args.k_max)],
        summary["n_truncated"],
        summary["n_grader_failures"],
    )
    return 0
