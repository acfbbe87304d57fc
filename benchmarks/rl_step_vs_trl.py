"""RL step time: our trainer vs TRL's ``GRPOTrainer`` on the same job, alternating A B A B.

    pip install -c constraints-cpu.txt -e '.[bench]'      # TRL: a benchmark extra, never a runtime dependency
    python benchmarks/rl_step_vs_trl.py [--rounds 3 --steps 3] [--threads 1]

The job (both sides): the embedded tiny base model (``results/models/base``), the RL
training problems (``results/data/train.parquet``) rendered with the config's template,
64 prompts x 8 completions per step (one generation batch of 512), max 112 new tokens,
temperature 1.0, top-p 1.0, plain GRPO (±1 outcome reward from our ``answer_line`` grader,
group-normalised advantages), clip-higher 0.2 / 0.28, no KL (beta = 0), no entropy
term, constant lr 1e-4 (AdamW, no weight decay, grad clip 1.0), fp32, gradient
checkpointing off, two optimizer steps of 256 completions per generation batch, loss
normalised by the number of valid tokens of each optimizer step (ours: ``token-mean``
over the mini-batch; TRL: ``loss_type="dapo"`` with gradient accumulation 1, which is
the same normaliser), and the rollout policy's log-probabilities from an extra no-grad
pass (TRL computes them because ``steps_per_generation`` 2 > gradient accumulation 1).

Per round, each side trains ``--steps`` + 1 generation steps from the base model; the first
step of every round is warm-up and dropped. Ours runs the real CLI in-process
(``python -m pipeline train``) and its step times are the trainer's own ``step_seconds``
per rollout step (sampling + grading + old-logp pass + the step's updates; from the
metrics records or the trainer's timings log); TRL's is the
wall time between the ends of consecutive generation steps (a ``TrainerCallback``).
Rounds alternate ours, TRL, ours, TRL, … so drift in machine load hits both alike.

Prints a table (median step time of each, ratio ours / TRL; target <= 0.5) and writes
``results/benchmarks/rl_step_vs_trl.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

ROOT = _common.ROOT
TARGET = 0.5

# What each side computes per generation step (P prompts x G completions, M optimizer steps).
WORK = {
    "ours": ("HFSampler: each prompt prefilled once, KV cache repeated G times, finished rows dropped; "
             "grading; one no-grad forward over the P*G sequences (old log-probs); per optimizer step one "
             "forward (log-probs + full-vocabulary entropy) and backward over P*G/M sequences trimmed to their "
             "longest; AdamW"),
    "trl": ("model.generate on the P*G prompt rows (each prompt prefilled G times, every row decoded until "
            "all have ended); reward function (our grader); no-grad forwards for the old log-probs in chunks of "
            "per_device_train_batch_size; per optimizer step one forward (log-probs + entropy) and backward "
            "over P*G/M sequences; AdamW"),
}


# --------------------------------------------------------------------------- ours


class _MetricsWatcher(threading.Thread):
    """Fallback timer when the metrics records carry no ``step_seconds``: notes when each
    record appears in the trainer's live metrics log (it is flushed after every update)."""

    def __init__(self, path: Path, interval: float = 0.002):
        super().__init__(daemon=True)
        self.path, self.interval = path, interval
        self.seen: list[tuple[float, dict]] = []
        self._stop_event = threading.Event()

    def run(self) -> None:
        offset, buf = 0, ""
        while not self._stop_event.is_set():
            try:
                with open(self.path) as fh:
                    fh.seek(offset)
                    chunk = fh.read()
                    offset = fh.tell()
            except FileNotFoundError:
                chunk = ""
            if chunk:
                now = time.perf_counter()
                buf += chunk
                *lines, buf = buf.split("\n")
                self.seen.extend((now, json.loads(line)) for line in lines if line.strip())
            time.sleep(self.interval)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


def _jsonl(path: Path) -> list[dict]:
    try:
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except (OSError, ValueError):
        return []


def our_spec(args) -> dict:
    from pipeline.config import load_config, method_specs

    spec = method_specs(load_config(args.configfile))["grpo"]
    spec["training"].update(
        rollouts=args.steps + 1, prompts_per_rollout=args.prompts, group_size=args.group,
        minibatch_prompts=args.prompts // args.updates, max_new_tokens=args.max_new_tokens,
        lr=args.lr, temperature=1.0, top_p=1.0, epochs=1, weight_decay=0.0, grad_clip=1.0,
    )
    # Matched with TRL's side: fp32, no gradient checkpointing (where the trainer has these settings).
    for key, value in (("precision", "fp32"), ("gradient_checkpointing", False)):
        if key in spec["training"]:
            spec["training"][key] = value
    assert spec["loss"]["aggregation"] == "token-mean" and spec["regularizer"]["name"] == "none"
    assert spec["shaping"]["name"] == "none" and spec["estimator"]["name"] == "grpo"
    return spec


def run_ours(args, spec: dict, template: str, grader: str, seed: int) -> dict:
    """One round of our trainer (the real CLI, in-process); per-step seconds of steps 2.."""
    from pipeline.cli import main as cli_main

    with tempfile.TemporaryDirectory(prefix="bench-ours-") as tmp:
        tmp = Path(tmp)
        ckpt = tmp / "ckpt"
        watcher = _MetricsWatcher(ckpt / "metrics.jsonl")
        watcher.start()
        t0 = time.perf_counter()
        try:
            rc = cli_main([
                "train", "--log-level", "WARNING", "--base-model", str(args.base_model),
                "--train-problems", str(args.train_problems), "--method-json", json.dumps(spec),
                "--seed", str(seed), "--template", template, "--grader", grader,
                "--out-model", str(tmp / "model"), "--metrics", str(tmp / "metrics.jsonl"),
                "--checkpoint-dir", str(ckpt), "--checkpoint-every", "100000", "--threads", str(args.threads),
            ])
        finally:
            watcher.stop()
        wall = time.perf_counter() - t0
        if rc != 0:
            raise SystemExit(f"our trainer failed with exit code {rc}")
        records = _jsonl(tmp / "metrics.jsonl")
        # Per-step wall times: in the metrics records, or in a timings log of their own
        # (the trainer may keep them apart so that metrics.jsonl stays byte-identical across runs).
        timed = {}
        for path in sorted(tmp.rglob("*.jsonl")):
            for rec in _jsonl(path):
                if "step_seconds" in rec and "rollout" in rec:
                    timed[rec["rollout"]] = rec
        timing_files = sorted({str(p.relative_to(tmp)) for p in tmp.rglob("*.jsonl")
                               if any("step_seconds" in rec for rec in _jsonl(p))})

    by_rollout: dict[int, list[dict]] = {}
    for rec in records:
        by_rollout.setdefault(rec["rollout"], []).append(rec)
    rollouts = sorted(by_rollout)
    if all(r in timed for r in rollouts):
        source = f"trainer's step_seconds ({', '.join(timing_files)})"
        step = [float(timed[r]["step_seconds"]) for r in rollouts]
        sample = [float(timed[r]["sample_seconds"]) if timed[r].get("sample_seconds") is not None else None
                  for r in rollouts]
    else:  # the trainer does not log step times: time the appearance of each step's last record
        source = "live metrics log watcher (metrics carry no step_seconds)"
        ends = {}
        for when, rec in watcher.seen:
            ends[rec["rollout"]] = when
        step = [None] + [ends[r] - ends[r - 1] for r in rollouts[1:]]
        sample = [None] * len(rollouts)
    tokens = [by_rollout[r][0]["response_length"] * args.prompts * args.group for r in rollouts]
    ends = {}
    for when, rec in watcher.seen:
        ends[rec["rollout"]] = when
    observed = [ends[r] - ends[r - 1] for r in rollouts[1:] if r in ends and r - 1 in ends]
    return {"step_seconds": step[1:], "observed_step_seconds": observed, "sample_seconds": sample[1:], "warmup_step_seconds": step[0],
            "tokens_per_step": tokens[1:], "updates_per_step": len(by_rollout[rollouts[0]]),
            "round_wall_seconds": wall, "timing_source": source}


# --------------------------------------------------------------------------- TRL


def trl_objects(args, template: str, grader: str):
    """The dataset and reward function TRL trains on (built once)."""
    from datasets import Dataset

    from pipeline.data.schema import read_problems
    from pipeline.eval.grading import grade
    from pipeline.models import load_model_and_tokenizer
    from pipeline.prompts import render_prompts

    problems = read_problems(args.train_problems)
    dataset = Dataset.from_dict({
        "prompt": render_prompts(problems["problem"], template),
        "answer": [str(a) for a in problems["answer"]],
    })
    _, tokenizer = load_model_and_tokenizer(args.base_model)
    eos = tokenizer.eos_token_id

    def answer_reward(prompts, completions, completion_ids, answer, **_):
        # Our scores: +1 if the completion ended (EOS) and its answer line is right, else -1 (truncated = wrong).
        return [1.0 if (ids and ids[-1] == eos and grade(text, ans, grader)) else -1.0
                for text, ids, ans in zip(completions, completion_ids, answer)]

    return dataset, answer_reward


def run_trl(args, dataset, reward_fn, seed: int) -> dict:
    import warnings

    import torch
    from transformers import PrinterCallback, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from pipeline.models import load_model_and_tokenizer

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.marks: list[float] = []
            self.threads: set[int] = set()
            self.logs: dict = {}

        def on_log(self, a, state, control, logs=None, **kw):
            self.logs.update(logs or {})  # logging is off: only the end-of-training summary arrives

        def on_train_begin(self, a, state, control, **kw):
            self.marks.append(time.perf_counter())

        def on_step_end(self, a, state, control, **kw):
            self.threads.add(torch.get_num_threads())
            if state.global_step % args.updates == 0:  # the last optimizer step of a generation batch
                self.marks.append(time.perf_counter())

    # transformers 5 renamed gradient_checkpointing to activation_checkpointing; TRL still sets the old name.
    warnings.filterwarnings("ignore", message=".*gradient_checkpointing.* is deprecated", category=FutureWarning)
    model, tokenizer = load_model_and_tokenizer(args.base_model)
    timer = StepTimer()
    # TRL samples through the policy's own generate() (unwrapped: one CPU process): time each call.
    generate, sample_seconds = model.generate, []

    def timed_generate(*a, **kw):
        t0 = time.perf_counter()
        try:
            return generate(*a, **kw)
        finally:
            sample_seconds.append(time.perf_counter() - t0)

    model.generate = timed_generate
    with tempfile.TemporaryDirectory(prefix="bench-trl-") as tmp:
        config = GRPOConfig(
            output_dir=tmp, seed=seed, use_cpu=True, bf16=False, fp16=False,
            gradient_checkpointing=False,
            per_device_train_batch_size=args.prompts * args.group // args.updates,
            gradient_accumulation_steps=1, steps_per_generation=args.updates, num_iterations=1,
            num_generations=args.group, max_completion_length=args.max_new_tokens,
            temperature=1.0, top_p=1.0, top_k=0,
            beta=0.0, epsilon=0.2, epsilon_high=0.28, loss_type="dapo", scale_rewards="group",
            mask_truncated_completions=False,
            learning_rate=args.lr, lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0,
            max_grad_norm=1.0, optim="adamw_torch",
            max_steps=(args.steps + 1) * args.updates,
            logging_strategy="no", save_strategy="no", report_to="none", disable_tqdm=True,
            log_completions=False, dataloader_num_workers=0,
        )
        trainer = GRPOTrainer(model=model, reward_funcs=reward_fn, args=config, train_dataset=dataset,
                              processing_class=tokenizer, callbacks=[timer])
        trainer.remove_callback(PrinterCallback)  # the end-of-training summary dict on stdout
        torch.set_num_threads(args.threads)
        t0 = time.perf_counter()
        trainer.train()
        wall = time.perf_counter() - t0
        checkpointing = bool(getattr(trainer.model, "is_activation_checkpointing", False))
    steps = [b - a for a, b in zip(timer.marks, timer.marks[1:])]
    mean_length = timer.logs.get("completions/mean_length")  # mean over the round's steps, warm-up included
    tokens = [float(mean_length) * args.prompts * args.group] if mean_length is not None else []
    return {"step_seconds": steps[1:], "warmup_step_seconds": steps[0] if steps else None,
            "sample_seconds": sample_seconds[1:] if len(sample_seconds) == len(steps) else [],
            "tokens_per_step": tokens, "activation_checkpointing": checkpointing,
            "threads_seen": sorted(timer.threads), "round_wall_seconds": wall,
            "timing_source": "TrainerCallback: time between the ends of consecutive generation steps"}


# --------------------------------------------------------------------------- main


def _fmt_s(x: float | None) -> str:
    return "—" if x is None else f"{x:.2f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-model", type=Path, default=ROOT / "results" / "models" / "base")
    parser.add_argument("--train-problems", type=Path, default=ROOT / "results" / "data" / "train.parquet")
    parser.add_argument("--configfile", default=str(ROOT / "config.yaml"), help="template, grader and the grpo method spec")
    parser.add_argument("--rounds", type=int, default=3, help="A B rounds (ours, TRL)")
    parser.add_argument("--steps", type=int, default=3, help="measured generation steps per round (+1 warm-up)")
    parser.add_argument("--prompts", type=int, default=64, help="prompts per generation step")
    parser.add_argument("--group", type=int, default=8, help="completions per prompt")
    parser.add_argument("--updates", type=int, default=2, help="optimizer steps per generation step")
    parser.add_argument("--max-new-tokens", type=int, default=112)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--only", choices=("both", "ours", "trl"), default="both")
    parser.add_argument("--out", default=None, help="JSON path (default results/benchmarks/rl_step_vs_trl.json)")
    args = parser.parse_args(argv)
    if args.prompts % args.updates:
        parser.error("--prompts must be divisible by --updates")

    _common.set_threads(args.threads)
    _common.require(args.base_model, "the base model both trainers start from")
    _common.require(args.train_problems, "the RL training problems")
    from pipeline.config import load_config

    cfg = load_config(args.configfile)
    template, grader = cfg["prompt"]["template"], cfg["grader"]
    spec = our_spec(args)
    machine = _common.machine_info(threads=args.threads)
    sides = ["ours", "trl"] if args.only == "both" else [args.only]
    trl_version = None
    if "trl" in sides:
        try:
            import trl
        except ImportError:
            raise SystemExit("TRL is not installed: pip install -c constraints-cpu.txt -e '.[bench]' (or --only ours)")
        trl_version = trl.__version__
        dataset, reward_fn = trl_objects(args, template, grader)

    rounds: list[dict] = []
    for i in range(args.rounds):
        for side in sides:  # A B A B ...
            t0 = time.perf_counter()
            res = run_ours(args, spec, template, grader, seed=i) if side == "ours" else run_trl(args, dataset, reward_fn, seed=i)
            res.update(side=side, round=i)
            rounds.append(res)
            print(f"round {i} {side:>4}: steps {', '.join(f'{s:.2f}' for s in res['step_seconds'])} s "
                  f"(warm-up {_fmt_s(res['warmup_step_seconds'])} s, round {time.perf_counter() - t0:.1f} s)",
                  flush=True)

    rows = []
    for side in sides:
        steps = [s for r in rounds if r["side"] == side for s in r["step_seconds"]]
        tokens = [t for r in rounds if r["side"] == side for t in r["tokens_per_step"]]
        samples = [s for r in rounds if r["side"] == side for s in r.get("sample_seconds", []) if s is not None]
        rows.append({"trainer": "ours" if side == "ours" else f"TRL {trl_version} GRPOTrainer",
                     "steps": len(steps), "median_step_s": _common.median(steps),
                     "min_s": min(steps), "max_s": max(steps),
                     "median_sample_s": _common.median(samples) if samples else None,
                     "tokens_per_step": _common.median(tokens) if tokens else None})
    ratio = rows[0]["median_step_s"] / rows[1]["median_step_s"] if len(rows) == 2 else None
    print()
    print(f"RL step: {args.prompts} prompts x {args.group} completions, max {args.max_new_tokens} new tokens, "
          f"{args.updates} optimizer steps per generation step, {args.threads} thread(s); "
          f"{args.rounds} rounds x {args.steps} steps (+1 warm-up each), alternating")
    print(_common.machine_line(machine))
    _common.print_table(rows, ["trainer", "steps", "median_step_s", "min_s", "max_s", "median_sample_s", "tokens_per_step"])
    if ratio is not None:
        print(f"ours / TRL median step time: {ratio:.2f}  (target <= {TARGET}: {'met' if ratio <= TARGET else 'NOT met'})")
    _common.write_result("rl_step_vs_trl", {
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "trl_version": trl_version,
        "machine": machine,
        "work_per_step": {s: WORK[s] for s in sides},
        "summary": rows, "ours_over_trl": ratio, "target": f"<= {TARGET}",
        "target_met": (ratio <= TARGET) if ratio is not None else None,
        "rounds": rounds,
    }, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
