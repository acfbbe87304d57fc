"""Stage ``train``: RL-train the base policy with one method and one seed.

One readable loop (:meth:`Trainer.train`). Each rollout step:

1. **collect**: draw ``prompts_per_rollout`` training problems and sample ``group_size``
   responses each with the current policy (:func:`pipeline.rl.rollout.sample_rollout`);
2. **score**: grade them, +1 correct, -1 otherwise (truncated = wrong), in worker processes
   under a hard timeout;
3. one no-grad forward pass gives the rollout policy's log-probabilities and entropies (and,
   for PPO, the critic's values; with ``training.kl``, the reference's log-probabilities);
4. **advantages**: the method's estimator turns scores into per-token advantages (AER's
   controller first sees the rollout's own mean entropy and sets the coefficient the
   updates use);
5. **update the policy**, per mini-batch of prompts: a forward pass gives log-probabilities
   and token entropies together; the method's shaping adjusts the advantages (on a fresh
   tensor, with the current entropy), its policy loss and regularizer give the loss; one
   optimizer step — a *policy update*; then **update the critic** (PPO) on the same mini-batch;
6. **log** every update to the metrics JSONL, **checkpoint** every ``--checkpoint-every``
   rollouts.

The method is data (:mod:`pipeline.rl.methods`); every component comes from
:mod:`pipeline.rl.registry`. Every random draw is seeded from (seed, rollout index), so a
run resumed from a checkpoint continues exactly as an uninterrupted one would. Checkpoint
format, random state and SIGTERM handling live in :mod:`pipeline.rl.checkpoints`: a kill loses
at most one checkpoint interval; SIGTERM lets the update in progress finish, checkpoints
(mid-rollout if need be) and exits with code 75 so that Snakemake retries the job. A nan/inf
loss, advantage, gradient norm or parameter stops the run with a PipelineError (exit code 2)
naming the step; nothing is checkpointed after it.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import logging
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from pipeline import io, machine
from pipeline.data.schema import read_problems
from pipeline.errors import PipelineError
from pipeline.eval.grading import GraderPool
from pipeline.models import check_context_budget, load_model_and_tokenizer, save_model_atomically
from pipeline.progress import ProgressLog
from pipeline.prompts import render_prompts
from pipeline.rl import registry
from pipeline.rl.checkpoints import (
    CHECKPOINT_FORMAT, PREEMPTED_EXIT_CODE, Checkpoint, NonFiniteError, Preempted, SigtermGuard, load_latest_checkpoint,
    publish_snapshots, rng_state, run_id, save_checkpoint, set_rng_state,
)
from pipeline.rl.distributed import Processes
from pipeline.rl.entropy import logprobs_and_entropy
from pipeline.rl.losses import (
    aggregation_units, explained_variance_from_sums, explained_variance_sums, kl_penalty, value_loss,
)
from pipeline.rl.rollout import Rollout, micro_batches, sample_rollout, trimmed
from pipeline.rl.schedule import learning_rate
from pipeline.rl.tracking import log_scalars, open_sinks
from pipeline.sampling.base import end_of_sequence_ids
from pipeline.sampling.hf import HFSampler

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- model passes


def policy_logp_entropy(model, input_ids, attention, chunk_size, temperature: float = 1.0):
    """Log-probabilities of the next tokens and full-vocabulary entropies, from one forward pass.

    Both are those of the distribution the rollout was sampled from, ``softmax(logits /
    temperature)`` (as verl does), so the importance ratio and the entropy that the
    entropy advantage and AER use refer to the sampling policy.

    Sequences are right-padded, so causal attention alone is exact for every real token
    (padding only ever follows them): no padding mask is passed, which lets SDPA use its
    fused causal kernel instead of materialising a [B, 1, L, L] mask.
    """
    logits = model(input_ids=input_ids).logits[:, :-1]
    if temperature != 1.0:
        logits = logits / temperature
    return logprobs_and_entropy(logits, input_ids[:, 1:], chunk_size)


class ValueModel(nn.Module):
    """PPO critic: the policy's architecture (initialised from the base model) with a scalar head."""

    def __init__(self, base_dir: str, trust_remote_code: bool = False):
        super().__init__()
        from transformers import AutoModel

        # fp32 master weights whatever the checkpoint's dtype (see models.load_model_and_tokenizer)
        self.backbone = AutoModel.from_pretrained(base_dir, trust_remote_code=trust_remote_code, dtype=torch.float32)
        self.head = nn.Linear(self.backbone.config.hidden_size, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, input_ids, attention):
        # Right-padded like the policy's inputs: causal attention is exact for real tokens.
        hidden = self.backbone(input_ids=input_ids).last_hidden_state
        return self.head(hidden[:, :-1]).squeeze(-1)  # value of the state before each label token


def shaping_sum(advantages: torch.Tensor, shaped: torch.Tensor, mask: torch.Tensor) -> tuple[float, float]:
    """Numerator and count of :func:`pipeline.rl.advantages.shaping_ratio` (summable over micro-batches)."""
    a, s = advantages.detach().float(), shaped.detach().float()
    sel = mask.bool() & (a != 0)
    return float(((s[sel] - a[sel]) / a[sel].abs()).sum()), float(sel.sum())



class UpdateStats:
    """One policy update's logged values, summed over its micro-batches and processes.

    Losses are the weighted sums that make up the mini-batch loss; entropy and the loss
    functions' statistics (clip fractions, KL, ...: means over valid tokens) become
    token-weighted means; the shaping ratio a mean over tokens with A != 0.
    """

    def __init__(self):
        self.loss = self.reg = self.tokens = self.entropy = 0.0
        self.shaping = [0.0, 0.0]
        self.sums: dict[str, float] = {}
        self.counts: dict[str, float] = {}

    def add(self, *, weight, tokens, loss, reg_term, entropy_sum, stats, shaping) -> None:
        self.loss += loss * weight
        self.reg += reg_term * weight
        self.tokens += tokens
        self.entropy += entropy_sum
        if shaping is not None:
            self.shaping = [self.shaping[0] + shaping[0], self.shaping[1] + shaping[1]]
        for key, value in stats.items():
            self.sums.setdefault(key, 0.0)
            self.counts.setdefault(key, 0.0)
            if value is not None and math.isfinite(value) and tokens > 0:
                self.sums[key] += float(value) * tokens
                self.counts[key] += tokens

    def reduce(self, procs: Processes) -> dict:
        keys = sorted(self.sums)
        totals = procs.sum(
            [self.loss, self.reg, self.tokens, self.entropy, *self.shaping]
            + [self.sums[k] for k in keys] + [self.counts[k] for k in keys]
        )
        n = len(keys)
        loss, reg, tokens, entropy, shaping_num, shaping_count = totals[:6]
        return {
            "loss": loss, "reg_term": reg,
            "entropy": entropy / tokens if tokens else float("nan"),
            "shaping_ratio": shaping_num / shaping_count if shaping_count else None,
            "stats": {k: (totals[6 + i] / totals[6 + n + i] if totals[6 + n + i] else float("nan")) for i, k in enumerate(keys)},
        }



# --------------------------------------------------------------------------- finiteness


def _finite(name: str, value: torch.Tensor | float, where: str, detail: str = "") -> None:
    v = float(value.detach()) if isinstance(value, torch.Tensor) else float(value)
    if not math.isfinite(v):
        raise NonFiniteError(f"non-finite {name} ({v}) at {where}{detail}")


def _finite_tensor(name: str, tensor: torch.Tensor, where: str) -> None:
    t = tensor.detach()
    bad = ~torch.isfinite(t)
    if bool(bad.any()):
        n_nan = int(torch.isnan(t).sum())
        raise NonFiniteError(
            f"non-finite {name} at {where}: {n_nan} nan and {int(bad.sum()) - n_nan} inf among {t.numel()} values"
        )


def _finite_parameters(name: str, module: nn.Module, where: str) -> None:
    params = [p.detach() for p in module.parameters()]
    if params and not bool(torch.stack([torch.isfinite(p).all() for p in params]).all()):
        bad = [n for n, p in module.named_parameters() if not bool(torch.isfinite(p.detach()).all())]
        raise NonFiniteError(f"non-finite {name} parameters after {where} ({len(bad)} tensors, e.g. {bad[0]})")



def append_line(fh, line: str, path: Path) -> None:
    """Append to the live metrics log; a full disk is a one-line PipelineError."""
    try:
        fh.write(line)
        fh.flush()
    except OSError as err:
        if io.is_out_of_space(err):
            raise PipelineError(f"cannot write {path}: {err.strerror} (out of disk space?); the last checkpoint is kept") from None
        raise



# --------------------------------------------------------------------------- setup


def set_lr(optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def load_reference(args: argparse.Namespace, procs: Processes) -> nn.Module:
    """The frozen base model for the KL term (training.kl), on the trainer's device."""
    reference, _ = load_model_and_tokenizer(args.base_model, trust_remote_code=args.trust_remote_code)
    reference.requires_grad_(False)
    reference.eval()
    reference.to(procs.device)
    # FSDP shards it like the policy; DDP needs no wrapper for a frozen model
    return procs.wrap_model(reference) if procs.sharded else reference


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--base-model", required=True, help="model directory to start from")
    parser.add_argument("--train-problems", required=True, help="training split Parquet")
    parser.add_argument("--method-json", required=True, help="resolved method spec incl. its training settings")
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--template", required=True)
    parser.add_argument("--chat-template", action="store_true", help="wrap prompts in the tokenizer's chat template")
    parser.add_argument("--grader", default="answer_line", help="a registered grader or module:function")
    parser.add_argument("--grading-timeout-s", type=float, default=5.0, help="hard limit per graded rollout response")
    parser.add_argument("--grading-workers", type=int, default=1, help="grader worker processes (per trainer process)")
    parser.add_argument("--out-model", required=True, help="directory for the trained model")
    parser.add_argument("--metrics", required=True, help="metrics JSONL (one record per policy update)")
    parser.add_argument("--checkpoint-dir", required=True, help="where periodic checkpoints live (resume source)")
    parser.add_argument("--checkpoint-every", type=int, default=10, help="rollouts between checkpoints")
    parser.add_argument("--keep-checkpoints", type=int, default=2)
    parser.add_argument(
        "--sharding", choices=("ddp", "fsdp"), default="ddp",
        help="with several processes: replicate the model (ddp) or shard it (fsdp, torch's fully_shard)",
    )
    parser.add_argument(
        "--snapshot-dir", default=None,
        help="where the policy snapshots (training.snapshot_every) are published at the end",
    )
    parser.add_argument(
        "--trust-remote-code", action="store_true",
        help="let transformers run Python code shipped with the model (off unless the config opts in)",
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--progress", action="store_true")
    parser.add_argument("--progress-every-s", type=float, default=10.0, help="seconds between progress lines in the log")
    parser.add_argument("--tensorboard-dir", default=None, help="also write every policy update's metrics as TensorBoard scalars here")
    parser.add_argument("--wandb-project", default=None, help="also log every policy update's metrics to this W&B project")
    parser.add_argument("--wandb-dir", default="wandb", help="W&B's local run directory")
    parser.add_argument("--wandb-mode", default="offline", choices=["offline", "online"])


def training_defaults() -> dict:
    from pipeline.config import load_schema

    props = load_schema()["properties"]["training"]["properties"]
    return {k: v["default"] for k, v in props.items() if "default" in v}


# --------------------------------------------------------------------------- the method and one rollout's data


@dataclass
class Method:
    """The method's components, resolved once from its spec (:func:`method_components`)."""

    spec: dict
    estimator: object
    estimator_params: dict
    shaping: object
    shaping_params: dict
    loss_fn: object
    loss_params: dict
    regularizer: object
    token_selection: object | None  # Clip-Cov / KL-Cov: which tokens the loss acts on

    @property
    def aggregation(self) -> str:
        return self.spec["loss"]["aggregation"]

    @property
    def shaped(self) -> bool:
        return self.spec["shaping"]["name"] != "none"

    @property
    def critic(self) -> dict | None:
        """The GAE estimator's settings (PPO: the critic's learning rate, warm-up, clip), or None."""
        return self.spec["estimator"] if self.spec["estimator"]["name"] == "gae" else None


def method_components(spec: dict) -> Method:
    """The registered functions and parameters of a resolved method spec (pipeline/rl/methods.py)."""
    estimator_cfg, loss_cfg, regularizer_cfg = spec["estimator"], spec["loss"], spec["regularizer"]
    estimator_params = registry.params_of(estimator_cfg)
    if estimator_cfg["name"] == "gae":  # GAE and whitening take gamma/lam/whiten; the rest are critic settings
        estimator_params = {k: estimator_params[k] for k in ("gamma", "lam", "whiten")}
    return Method(
        spec=spec, estimator=registry.lookup("estimator", estimator_cfg["name"]), estimator_params=estimator_params,
        shaping=registry.lookup("shaping", spec["shaping"]["name"]), shaping_params=registry.params_of(spec["shaping"]),
        loss_fn=registry.lookup("loss", loss_cfg["name"]), loss_params=registry.params_of(loss_cfg),
        regularizer=registry.lookup("regularizer", regularizer_cfg["name"])(**registry.params_of(regularizer_cfg)),
        token_selection=registry.token_selection(loss_cfg["name"]),
    )


@dataclass
class RolloutBatch:
    """Everything the updates of one rollout read; a mid-rollout checkpoint holds all of it."""

    rollout: Rollout
    old_logp: torch.Tensor             # [N, L-1] the rollout policy's log-probs
    values: torch.Tensor | None        # [N, L-1] the critic's values (PPO)
    advantages: torch.Tensor           # [N, L-1] never modified in place
    returns: torch.Tensor | None
    ref_logp: torch.Tensor | None      # [N, L-1] the reference's log-probs (training.kl)
    rollout_entropy: float             # mean token entropy over the whole rollout (every process)
    rollout_stats: dict                # reward, accuracy, length, grader failures, EOS counts
    global_accuracy: torch.Tensor      # [P] per-prompt accuracy over every process's prompts
    reg_stats: dict                    # what the regularizer logs for this rollout
    shuffle: torch.Generator           # later epochs' prompt order
    selection: torch.Generator         # Clip-Cov / KL-Cov token draws
    first_epoch: int = 0               # where the updates start (a resumed rollout: mid-way)
    first_start: int = 0
    first_order: torch.Tensor | None = None
    sample_seconds: float = 0.0

    TENSORS = ("old_logp", "values", "advantages", "returns", "ref_logp")

    def partial_state(self, epoch: int, next_start: int, prompt_order, r: int) -> dict:
        return {
            "rollout": r, "epoch": epoch, "next_start": next_start, "prompt_order": prompt_order,
            "shuffle": self.shuffle.get_state(), "selection": self.selection.get_state(),
            "rollout_entropy": self.rollout_entropy, "rollout_stats": self.rollout_stats,
            "global_accuracy": self.global_accuracy,
            "tensors": {**{k: getattr(self.rollout, k) for k in Rollout.__dataclass_fields__},
                        **{k: getattr(self, k) for k in self.TENSORS}},
        }


def resumed_batch(partial: dict, regularizer, group_size: int) -> RolloutBatch:
    """The rollout a SIGTERM interrupted: its data, generators and position."""
    t = partial["tensors"]
    rollout = Rollout(**{k: t[k] for k in Rollout.__dataclass_fields__})
    global_accuracy = partial.get("global_accuracy", rollout.group_accuracy)
    shuffle, selection = torch.Generator(), torch.Generator()
    shuffle.set_state(partial["shuffle"])
    selection.set_state(partial["selection"])
    return RolloutBatch(
        rollout=rollout, old_logp=t["old_logp"], values=t["values"], advantages=t["advantages"], returns=t["returns"],
        ref_logp=t.get("ref_logp"), rollout_entropy=partial["rollout_entropy"],
        rollout_stats=partial.get("rollout_stats", {}), global_accuracy=global_accuracy,
        reg_stats=regularizer.begin_rollout(global_accuracy, group_size),  # no observation: the checkpoint holds it
        shuffle=shuffle, selection=selection,
        first_epoch=partial["epoch"], first_start=partial["next_start"], first_order=partial["prompt_order"],
    )


# --------------------------------------------------------------------------- the trainer


class Trainer:
    """One training job: its models, optimizers, method, rollout engine and counters.

    Built in the order the run's random draws depend on (policy, critic, reference, then
    the resumed state); :meth:`train` is the loop.
    """

    def __init__(self, args: argparse.Namespace):
        if args.checkpoint_every < 1 or args.keep_checkpoints < 1:
            raise PipelineError("--checkpoint-every and --keep-checkpoints must be >= 1")
        self.args = args
        self.spec = spec = json.loads(args.method_json)
        # Keys a spec written before they existed lacks take the schema's defaults.
        self.cfg = cfg = spec["training"] = {**training_defaults(), **spec["training"]}
        self.seed, self.group_size = args.seed, cfg["group_size"]
        try:
            self.procs = procs = Processes(cfg["precision"], args.sharding)
        except ValueError as err:
            raise PipelineError(str(err)) from None
        self.world, self.rank = procs.world, procs.rank
        self.n_prompts, self.minibatch_prompts = cfg["prompts_per_rollout"], cfg["minibatch_prompts"]
        if self.n_prompts % self.world or self.minibatch_prompts % self.world:
            raise PipelineError(
                f"training.prompts_per_rollout ({self.n_prompts}) and minibatch_prompts ({self.minibatch_prompts}) must be "
                f"multiples of the number of processes ({self.world}): each process trains on whole prompt groups"
            )
        torch.manual_seed(self.seed)
        problems = read_problems(args.train_problems)
        self.policy, self.tokenizer = load_model_and_tokenizer(args.base_model, trust_remote_code=args.trust_remote_code)
        if cfg["gradient_checkpointing"]:
            self.policy.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        self.policy.to(procs.device)
        self.policy.train()
        self.method = method_components(spec)
        self.critic = self.critic_opt = None
        self.critic_warmup = 0
        if self.method.critic is not None:
            self.critic = ValueModel(args.base_model, trust_remote_code=args.trust_remote_code).to(procs.device)
            self.critic_warmup = self.method.critic["critic_warmup_rollouts"]
        # KL to a frozen reference (the base model), off by default: neither paper uses it.
        kl_cfg = cfg.get("kl") or {}
        self.kl_coef, self.kl_estimator = float(kl_cfg.get("coef", 0.0)), kl_cfg.get("estimator", "k3")
        self.reference = load_reference(args, procs) if self.kl_coef > 0 else None
        engine_len = self._training_prompts(problems)
        self._resume()
        self._build_engine(engine_len)
        # The loop's constants: Dr.GRPO's length (the longest possible response + EOS), the
        # micro-batch, each process's share of a rollout, and the lr schedule's length (over
        # policy updates: a PPO critic warm-up does not advance it).
        self.norm_length = cfg["max_new_tokens"] + 1
        self.micro = cfg["micro_batch_size"] or self.n_prompts * self.group_size
        self.local_prompts, self.local_mb = self.n_prompts // self.world, self.minibatch_prompts // self.world
        self.updates_per_rollout = cfg["epochs"] * (self.n_prompts // self.minibatch_prompts)
        self.policy_updates_total = max(cfg["rollouts"] - self.critic_warmup, 1) * self.updates_per_rollout
        self.dtypes = self._measured_dtypes()

    # ------------------------------------------------------------------ setup steps
    def _training_prompts(self, problems) -> int:
        """Tokenized prompts and answers of the training set; the rollout's context length."""
        cfg, args = self.cfg, self.args
        prompt_ids = [self.tokenizer(p).input_ids
                      for p in render_prompts(problems["problem"], args.template, self.tokenizer, args.chat_template)]
        if cfg["max_prompt_tokens"] is not None:  # e.g. 1024 + 3072 response tokens in a 4096 context
            keep = [i for i, p in enumerate(prompt_ids) if len(p) <= cfg["max_prompt_tokens"]]
            log.info("training.max_prompt_tokens %d: %d of %d training prompts kept", cfg["max_prompt_tokens"], len(keep), len(problems))
            if not keep:
                raise PipelineError(f"training.max_prompt_tokens {cfg['max_prompt_tokens']}: no training prompt is that short")
            problems = problems.iloc[keep].reset_index(drop=True)
            prompt_ids = [prompt_ids[i] for i in keep]
        self.prompt_ids, self.answers = prompt_ids, list(problems["answer"])
        # A rollout must fit the model's context (checked now, not at the first long prompt).
        return check_context_budget(args.base_model, max(map(len, prompt_ids)), cfg["max_new_tokens"], where="training")

    def _find_checkpoint(self) -> Checkpoint | None:
        """The newest intact checkpoint of this very run, the same one on every process."""
        procs, ckpt_dir = self.procs, self.ckpt_dir
        if procs.is_main:
            ckpt_dir.mkdir(parents=True, exist_ok=True)
            for leftover in ckpt_dir.iterdir():  # temp files and directories of a killed writer
                if leftover.name.startswith("."):
                    shutil.rmtree(leftover, ignore_errors=True) if leftover.is_dir() else leftover.unlink(missing_ok=True)
        procs.barrier()
        ckpt = load_latest_checkpoint(ckpt_dir, self.run_id, max_rollout=self.cfg["rollouts"]) if procs.is_main else None
        if procs.distributed:  # every process resumes from the checkpoint the main one chose
            name = [ckpt.path.name if ckpt is not None else None]
            torch.distributed.broadcast_object_list(name, src=0)
            if not procs.is_main and name[0] is not None:
                path = ckpt_dir / name[0]
                ckpt = Checkpoint(path, torch.load(path / "state.pt", map_location="cpu", weights_only=True), "")
        if ckpt is not None and ckpt.state.get("partial") is not None and procs.distributed:
            raise PipelineError(f"checkpoint {ckpt.path} was written mid-rollout by a single process; resume it with one process")
        if ckpt is not None and ckpt.state.get("sharding", "ddp") != ("fsdp" if procs.sharded else "ddp"):
            raise PipelineError(
                f"checkpoint {ckpt.path} holds {'sharded' if ckpt.state.get('sharding') == 'fsdp' else 'unsharded'} optimizer "
                "state: resume it with the sharding it was written with (--sharding)"
            )
        return ckpt

    def _resume(self) -> None:
        """Resume or start: models, optimizers, regularizer, random state and counters."""
        procs, cfg = self.procs, self.cfg
        self.ckpt_dir = Path(self.args.checkpoint_dir)
        self.snapshot_store = self.ckpt_dir / "snapshots"  # survives a retry (the job's outputs do not)
        self.run_id = run_id(self.args, self.spec)
        ckpt = self._find_checkpoint()
        state = ckpt.state if ckpt is not None else None
        if state is not None:
            self.policy.load_state_dict(state["policy"])
            if self.critic is not None:
                self.critic.load_state_dict(state["critic"])
        # A full (unsharded) copy of the policy for rollouts and saving, when the trained one is sharded.
        self.full_policy = copy.deepcopy(self.policy) if procs.sharded else None
        # Optimizers are built on the wrapped (possibly sharded) parameters.
        self.policy = procs.wrap_model(self.policy)
        self.optimizer = torch.optim.AdamW(self.policy.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])
        if self.critic is not None:
            self.critic = procs.wrap_model(self.critic)
            self.critic_opt = torch.optim.AdamW(self.critic.parameters(), lr=self.method.critic["critic_lr"],
                                                weight_decay=self.method.critic["critic_weight_decay"])
        self.start_rollout, self.update, self.partial, self.metrics_lines = 0, 0, None, []
        if state is not None:
            procs.load_optimizer_state_dict(self.policy, self.optimizer, state["optimizer"])
            if self.critic is not None:
                procs.load_optimizer_state_dict(self.critic, self.critic_opt, state["critic_optimizer"])
            self.method.regularizer.load_state_dict(state["regularizer"])
            set_rng_state(state["rng"])
            self.start_rollout, self.update, self.partial = state["rollout"], state["update"], state["partial"]
            self.metrics_lines = ckpt.metrics.splitlines(keepends=True)
            log.info("resuming from checkpoint %s (rollout %d, update %d)", ckpt.path.name, self.start_rollout, self.update)
        self.optimizer = procs.wrap_optimizer(self.optimizer)
        if self.critic is not None:
            self.critic_opt = procs.wrap_optimizer(self.critic_opt)
        self.bare_policy = self.full_policy if self.full_policy is not None else procs.unwrap(self.policy)
        # The live log holds exactly the records of the updates the checkpoint contains.
        self.live_metrics = self.ckpt_dir / "metrics.jsonl"
        # Per rollout step: sampling, each update and the whole step, in seconds (benchmarks read it).
        self.timings_path = self.ckpt_dir / "timings.jsonl"
        if procs.is_main:
            io.write_text(self.live_metrics, "".join(self.metrics_lines))
        self.last_saved = (self.start_rollout, self.update) if ckpt is not None else None
        self.last_saved_name = ckpt.path.name if ckpt is not None else None
        # A resumed policy differs from the weights a vLLM engine loaded, and from FSDP's full copy.
        self.engine_stale = self.full_policy_stale = ckpt is not None

    def _build_engine(self, engine_len: int) -> None:
        """The rollout engine: HF sampling from the policy itself, or a colocated vLLM engine."""
        cfg, args = self.cfg, self.args
        if cfg["rollout_backend"] == "vllm":
            from pipeline.sampling.vllm_backend import VLLMRollouts

            self.engine = VLLMRollouts(
                args.base_model, seed=io.stable_seed(self.seed, "vllm-engine", self.rank),
                gpu_memory_utilization=cfg["vllm_gpu_memory_utilization"], trust_remote_code=args.trust_remote_code,
                max_model_len=engine_len,
                eos_token_ids=end_of_sequence_ids(self.tokenizer, self.bare_policy.generation_config),
                # the rollout policy in the precision the trainer computes in (bf16 under
                # training.precision bf16, as verl's rollouts; fp32 otherwise, = the trainer's log-probs)
                dtype="bfloat16" if cfg["precision"] == "bf16" else "float32", processes=self.world,
            )
        else:
            self.engine = HFSampler(self.bare_policy, self.tokenizer, batch_size=cfg["rollout_batch_size"])

    def _measured_dtypes(self) -> dict:
        """What the run trains in, as measured (logged with the timings): master weights and the
        dtype forward passes compute in (bf16 under training.precision bf16's autocast)."""
        with torch.no_grad(), self.procs.autocast():
            probe = self.policy(input_ids=torch.tensor([self.prompt_ids[0][:4]], device=self.procs.device)).logits
        return {"param_dtype": str(next(self.policy.parameters()).dtype).removeprefix("torch."),
                "compute_dtype": str(probe.dtype).removeprefix("torch."), "device": str(probe.device),
                "cpu_kernels": torch.backends.cpu.get_cpu_capability(), "cpu_fingerprint": machine.cpu_fingerprint()}

    # ------------------------------------------------------------------ weights, checkpoints, snapshots
    def full_weights(self) -> nn.Module:
        """The policy with its current full weights (gathered from the shards under FSDP; a collective)."""
        if self.full_policy is not None and self.full_policy_stale:
            self.full_policy.load_state_dict(self.procs.full_state_dict(self.policy, everywhere=True))
            self.full_policy_stale = False
        return self.bare_policy

    def training_state(self, rollouts_done: int, partial_state: dict | None = None) -> dict:
        """Everything a checkpoint holds (a collective under FSDP: every process calls it)."""
        procs = self.procs
        state = {
            "format": CHECKPOINT_FORMAT, "run": self.run_id, "rollout": rollouts_done, "update": self.update,
            "policy": procs.full_state_dict(self.policy), "optimizer": procs.optimizer_state_dict(self.policy, self.optimizer),
            "regularizer": self.method.regularizer.state_dict(), "rng": rng_state(), "partial": partial_state,
            "sharding": "fsdp" if procs.sharded else "ddp",
        }
        if self.critic is not None:
            state.update(critic=procs.full_state_dict(self.critic),
                         critic_optimizer=procs.optimizer_state_dict(self.critic, self.critic_opt))
        return state

    def checkpoint(self, rollouts_done: int, partial_state: dict | None = None) -> None:
        state = self.training_state(rollouts_done, partial_state)
        if self.procs.is_main:
            path = save_checkpoint(self.ckpt_dir, state, "".join(self.metrics_lines), self.args.keep_checkpoints)
            self.last_saved_name = path.name
        self.last_saved = (rollouts_done, self.update)
        self.procs.barrier()

    def save_policy_snapshot(self, rollouts_done: int) -> None:
        """The policy after ``rollouts_done`` rollouts, for the checkpoint analysis."""
        every = self.cfg["snapshot_every"]
        if not every or not (rollouts_done % every == 0 or rollouts_done == self.cfg["rollouts"]):
            return
        model = self.full_weights()  # every process: a collective under FSDP
        target = self.snapshot_store / f"rollout-{rollouts_done:04d}"
        if self.procs.is_main and not (target / "config.json").is_file():
            save_model_atomically(model, self.tokenizer, target)
        self.procs.barrier()

    def preempted_exit(self) -> int:
        log.warning(
            "preempted: checkpoint %s holds rollout %d, update %d; exiting with code %d so that the job is retried",
            self.last_saved_name, self.last_saved[0], self.last_saved[1], PREEMPTED_EXIT_CODE,
        )
        return PREEMPTED_EXIT_CODE

    # ------------------------------------------------------------------ passes over a rollout
    def to_global_rows(self, rows: torch.Tensor) -> torch.Tensor:
        """Local response rows -> rows of the whole rollout (process k holds prompts k, k+W, ...)."""
        group = self.group_size
        return (rows // group * self.world + self.rank) * group + rows % group

    def forward(self, model, rows, rollout: Rollout, want_grad: bool):
        """Log-probs and entropies of ``rows``, cut to their own longest sequence (``n_labels`` positions)."""
        input_ids, attention, n_labels = trimmed(rollout, rows)
        with (contextlib.nullcontext() if want_grad else torch.no_grad()), self.procs.autocast():
            logp, entropy = policy_logp_entropy(
                model, input_ids.to(self.procs.device), attention.to(self.procs.device),
                self.cfg["entropy_chunk_size"], self.cfg["temperature"],
            )
        logp, entropy = logp.float(), entropy.float()
        return (logp, entropy, n_labels) if want_grad else (logp.cpu(), entropy.cpu(), n_labels)

    def rollout_passes(self, rollout: Rollout, sampled=None):
        """No-grad passes over the whole rollout in length-sorted micro-batches: the rollout
        policy's log-probs and entropies, the critic's values (PPO) and the reference's
        log-probs (training.kl, once per rollout).

        With ``training.old_log_probs: rollout`` the policy's pass is skipped: the HF sampler
        already computed the same log-probs and entropies (same weights, fp32) while decoding,
        equal to the recomputed ones up to float rounding (~1e-6; tested)."""
        procs = self.procs
        n_rows, width = rollout.mask.shape
        from_sampler = sampled is not None and sampled.sampled_logp is not None
        if from_sampler:
            old_logp, old_entropy = sampled.sampled_logp, sampled.sampled_entropy
        else:
            old_logp, old_entropy = torch.zeros(n_rows, width), torch.zeros(n_rows, width)
        values = torch.zeros(n_rows, width) if self.critic is not None else None
        for rows in micro_batches(torch.arange(n_rows), rollout.lengths, self.micro):
            if not from_sampler:
                logp, entropy, n_labels = self.forward(self.policy, rows, rollout, want_grad=False)
                old_logp[rows, :n_labels], old_entropy[rows, :n_labels] = logp, entropy
            if self.critic is not None:
                input_ids, attention, n_labels = trimmed(rollout, rows)
                with torch.no_grad(), procs.autocast():
                    values[rows, :n_labels] = self.critic(input_ids.to(procs.device), attention.to(procs.device)).float().cpu()
        if values is not None:
            values = values * rollout.mask
        ref_logp = None
        if self.reference is not None:
            ref_logp = torch.zeros(n_rows, width)
            for rows in micro_batches(torch.arange(n_rows), rollout.lengths, self.micro):
                logp, _, n_labels = self.forward(self.reference, rows, rollout, want_grad=False)
                ref_logp[rows, :n_labels] = logp
        return old_logp, old_entropy, values, ref_logp

    # ------------------------------------------------------------------ 1-4: collect, score, advantages
    def collect(self, r: int, graders: GraderPool, term: SigtermGuard, clock: float) -> RolloutBatch:
        """Rollout ``r``: sample, grade, the no-grad passes, the rollout's statistics, advantages."""
        procs = self.procs
        if self.engine_stale and self.cfg["rollout_backend"] == "vllm":
            self.engine.load_weights(
                procs.full_state_dict(self.policy, everywhere=True),
                tie_word_embeddings=bool(getattr(self.bare_policy.config, "tie_word_embeddings", False)),
            )
        elif self.cfg["rollout_backend"] == "hf":
            self.full_weights()  # FSDP: the HF sampler's full copy gets the current weights
        self.engine_stale = False
        with term.interruptible():  # nothing below changes the run's state
            sampled = sample_rollout(self.engine, graders, self.prompt_ids, self.answers, seed=self.seed, r=r, cfg=self.cfg,
                                     rank=self.rank, world=self.world, pad_id=self.tokenizer.pad_token_id, clock=clock)
            rollout = sampled.rollout
            old_logp, old_entropy, values, ref_logp = self.rollout_passes(rollout, sampled)
            ent_sum, n_tok, reward_sum, n_correct, n_resp, length_sum, timeouts, errors, n_eos, n_finished = procs.sum([
                float((old_entropy * rollout.mask).sum()), float(rollout.mask.sum()),
                float(rollout.scores.sum()), float((rollout.scores > 0).sum()),
                float(len(rollout.scores)), float(rollout.response_lengths.sum()),
                sampled.grading_failures["grader_timeouts"], sampled.grading_failures["grader_errors"],
                sampled.eos_actions, sampled.finished,
            ])
            rollout_entropy = ent_sum / max(n_tok, 1.0)
            rollout_stats = {
                "reward": reward_sum / n_resp, "accuracy": n_correct / n_resp, "response_length": length_sum / n_resp,
                "grader_timeouts": int(timeouts), "grader_errors": int(errors),
                "finished": n_finished / n_resp, "eos_per_response": n_eos / n_resp,
            }
            global_accuracy = procs.gather_interleaved(rollout.group_accuracy)

        # ---- 4. advantages (stored; never modified in place). AER's controller sees this
        # rollout's entropy first and sets the coefficient its updates use.
        reg_stats = self.method.regularizer.begin_rollout(global_accuracy, self.group_size, rollout_entropy)
        inp = registry.EstimatorInput(
            scores=rollout.scores, mask=rollout.mask, group_size=self.group_size, values=values,
            sum_over_processes=procs.sum if procs.distributed else None,
        )
        advantages, returns = self.method.estimator(inp, **self.method.estimator_params)
        _finite_tensor("advantages", advantages, f"rollout {r} (before update {self.update})")
        return RolloutBatch(
            rollout=rollout, old_logp=old_logp, values=values, advantages=advantages, returns=returns, ref_logp=ref_logp,
            rollout_entropy=rollout_entropy, rollout_stats=rollout_stats, global_accuracy=global_accuracy,
            reg_stats=reg_stats, shuffle=torch.Generator().manual_seed(io.stable_seed(self.seed, "minibatch", r)),
            selection=torch.Generator().manual_seed(io.stable_seed(self.seed, "token-selection", r)),
            sample_seconds=sampled.sample_seconds,
        )

    def minibatches(self, batch: RolloutBatch):
        """``(epoch, start, prompt_order)`` of every policy update of the rollout.

        Epoch 0 takes the prompts in rollout order (already a seeded random draw from the
        training set): mini-batch m is the same set of prompts however many processes share
        the rollout, so W processes update exactly as one. Later epochs reshuffle each
        process's own prompts. A resumed rollout starts where its checkpoint stopped.
        """
        for epoch in range(batch.first_epoch, self.cfg["epochs"]):
            if epoch == batch.first_epoch and batch.first_order is not None:
                prompt_order = batch.first_order
            elif epoch == 0:
                prompt_order = torch.arange(self.local_prompts)
            else:
                prompt_order = torch.randperm(self.local_prompts, generator=batch.shuffle)
            for start in range(batch.first_start if epoch == batch.first_epoch else 0, self.local_prompts, self.local_mb):
                yield epoch, start, prompt_order

    # ------------------------------------------------------------------ 5: updates
    def choose_tokens(self, micros, batch: RolloutBatch) -> list[torch.Tensor]:
        """The tokens a covariance-based loss acts on, chosen over the whole mini-batch (every
        micro-batch of every process), per micro-batch as [rows, n_labels] bools. A no-grad pass
        gives the current policy's log-probs and entropies: the parameters are the ones the
        micro-batches' gradients will be taken at."""
        method, rollout = self.method, batch.rollout
        key_stride = 1 << 24  # canonical token order: global response row, then position
        parts = []
        for rows in micros:
            logp, entropy, n_labels = self.forward(self.policy, rows, rollout, want_grad=False)
            valid = rollout.mask[rows, :n_labels].bool()
            shaped = method.shaping(batch.advantages[rows, :n_labels], entropy, **method.shaping_params)
            keys = self.to_global_rows(rows)[:, None] * key_stride + torch.arange(n_labels)[None, :]
            parts.append((valid, logp[valid], batch.old_logp[rows, :n_labels][valid], shaped[valid], keys[valid]))
        flat = [torch.cat([p[i] for p in parts]) for i in range(1, 5)]
        picked = method.token_selection(*flat, generator=batch.selection, world=self.procs, **method.loss_params)
        out, offset = [], 0
        for valid, *_ in parts:
            n = int(valid.sum())
            mask = torch.zeros_like(valid)
            mask[valid] = picked[offset : offset + n]
            out.append(mask)
            offset += n
        return out

    def update_policy(self, batch: RolloutBatch, micros, units: float, where: str, policy_on: bool) -> dict:
        """One policy update over a mini-batch (its micro-batches accumulate gradients).

        The loss is normalised over the whole mini-batch (every process's share): micro-batch
        m's aggregate is weighted by units_m / units, and DDP's gradient average is undone by
        the factor W. During a PPO critic warm-up (``policy_on`` false) nothing is stepped.
        """
        method, procs, rollout = self.method, self.procs, batch.rollout
        stats_sum = UpdateStats()
        # Clip-Cov / KL-Cov choose their tokens over the whole mini-batch first
        chosen = self.choose_tokens(micros, batch) if method.token_selection is not None else [None] * len(micros)
        for m, rows in enumerate(micros):
            logp, entropy, n_labels = self.forward(self.policy, rows, rollout, want_grad=True)
            mask = rollout.mask[rows, :n_labels].to(logp.device)
            advantages = batch.advantages[rows, :n_labels].to(logp.device)
            shaped = method.shaping(advantages, entropy, **method.shaping_params)
            pg_loss, stats = method.loss_fn(
                logp, batch.old_logp[rows, :n_labels].to(logp.device), shaped, mask, norm_length=self.norm_length,
                selected=None if chosen[m] is None else chosen[m].to(logp.device), **method.loss_params,
            )
            reg_term = method.regularizer.term(entropy, mask, self.to_global_rows(rows), method.aggregation, self.norm_length)
            weight = aggregation_units(mask, method.aggregation) / max(units, 1.0)
            loss = (pg_loss - reg_term) * weight * self.world
            if self.reference is not None:
                kl = kl_penalty(logp, batch.ref_logp[rows, :n_labels].to(logp.device), mask, self.kl_estimator,
                                method.aggregation, self.norm_length)
                loss = loss + self.kl_coef * kl * weight * self.world
                stats = {**stats, "kl_ref": kl.item()}
            if not procs.distributed:  # distributed: the all-reduced grad norm catches it on every process
                _finite("loss", loss, where, f" (pg_loss {pg_loss.item()}, reg_term {reg_term.item()})")
            if policy_on:
                with procs.no_sync(self.policy, skip=m < len(micros) - 1):
                    procs.backward(loss)
            stats_sum.add(
                weight=weight, tokens=float(mask.sum()), loss=pg_loss.item(), reg_term=reg_term.item(),
                entropy_sum=float((entropy.detach() * mask).sum()), stats=stats,
                shaping=shaping_sum(advantages, shaped.detach(), mask) if method.shaped else None,
            )
        mean = stats_sum.reduce(procs)
        kl_term = self.kl_coef * mean["stats"]["kl_ref"] if self.reference is not None else 0.0
        record = {
            "update": self.update, "rollout": self.r, **batch.rollout_stats,
            "entropy": mean["entropy"], "rollout_entropy": batch.rollout_entropy, "shaping_ratio": mean["shaping_ratio"],
            "pg_loss": mean["loss"], "reg_term": mean["reg_term"], "loss": mean["loss"] - mean["reg_term"] + kl_term,
            "lr": self.optimizer.param_groups[0]["lr"], "policy_updated": policy_on,
            **mean["stats"], **batch.reg_stats, **method.regularizer.stats(),
        }
        if policy_on:
            grad_norm = procs.clip_grad_norm_(self.policy.parameters(), self.cfg["grad_clip"])
            _finite("grad norm", grad_norm, where, f" (loss {record['loss']})")
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            if not procs.sharded:  # shards differ per process: the global grad norm guards them
                _finite_parameters("policy", self.policy, where)
            record["grad_norm"] = float(grad_norm)
            self.engine_stale = self.full_policy_stale = True
        return record

    def update_critic(self, batch: RolloutBatch, micros, units: float, where: str) -> dict:
        """PPO: one critic step on the same mini-batch; its loss, statistics and explained variance."""
        procs, rollout, device = self.procs, batch.rollout, self.procs.device
        aggregation = self.method.aggregation
        stats_sum = UpdateStats()
        ev_sums = [0.0] * 5  # explained variance over the whole mini-batch
        for m, rows in enumerate(micros):
            input_ids, attention, n_labels = trimmed(rollout, rows)
            mask = rollout.mask[rows, :n_labels].to(device)
            with procs.autocast():
                values = self.critic(input_ids.to(device), attention.to(device)).float()
            returns = batch.returns[rows, :n_labels].to(device)
            loss, stats = value_loss(values * mask, batch.values[rows, :n_labels].to(device), returns, mask,
                                     clip=self.method.critic["value_clip"], agg=aggregation)
            weight = aggregation_units(mask, aggregation) / max(units, 1.0)
            if not procs.distributed:
                _finite("value loss", loss, where)
            with procs.no_sync(self.critic, skip=m < len(micros) - 1):
                procs.backward(loss * weight * self.world)
            ev_sums = [a + b for a, b in zip(ev_sums, explained_variance_sums(values, returns, mask))]
            stats_sum.add(weight=weight, tokens=float(mask.sum()), loss=loss.item(), reg_term=0.0, entropy_sum=0.0,
                          stats=stats, shaping=None)
        grad_norm = procs.clip_grad_norm_(self.critic.parameters(), self.cfg["grad_clip"])
        _finite("critic grad norm", grad_norm, where)
        self.critic_opt.step()
        self.critic_opt.zero_grad(set_to_none=True)
        if not procs.sharded:
            _finite_parameters("critic", self.critic, where)
        mean = stats_sum.reduce(procs)
        return {**mean["stats"], "value_loss": mean["loss"],
                "explained_variance": explained_variance_from_sums(procs.sum(ev_sums))}

    def update_step(self, batch: RolloutBatch, groups: torch.Tensor) -> dict:
        """The policy update (and the critic's) on the mini-batch of prompt ``groups``; its record."""
        cfg, group = self.cfg, self.group_size
        rows = (groups[:, None] * group + torch.arange(group)[None, :]).reshape(-1)
        where = f"rollout {self.r}, update {self.update}"
        policy_update = max(self.update - self.critic_warmup * self.updates_per_rollout, 0)  # the schedule's index
        set_lr(self.optimizer, learning_rate(cfg["lr"], cfg.get("lr_schedule") or {}, policy_update, self.policy_updates_total))
        units = self.procs.sum([aggregation_units(batch.rollout.mask[rows], self.method.aggregation)])[0]
        micros = micro_batches(rows, batch.rollout.lengths, self.micro)
        record = self.update_policy(batch, micros, units, where, policy_on=self.r >= self.critic_warmup)
        if self.critic is not None:
            record.update(self.update_critic(batch, micros, units, where))
        return record

    # ------------------------------------------------------------------ 6: log
    def log_update(self, record: dict, metrics_fh, tensorboard) -> None:
        line = json.dumps(record) + "\n"
        self.metrics_lines.append(line)
        if metrics_fh is not None:
            append_line(metrics_fh, line, self.live_metrics)
        if tensorboard is not None:
            log_scalars(tensorboard, record, self.update)
        self.update += 1

    def end_rollout(self, batch: RolloutBatch, record: dict, progress: ProgressLog, term: SigtermGuard) -> bool:
        """After rollout ``r``'s updates: AER's bookkeeping, progress, snapshot, checkpoint.
        True when a SIGTERM asks the run to stop here."""
        self.method.regularizer.end_rollout(batch.rollout_entropy)
        if self.procs.is_main:
            progress.step(extra=f"accuracy {record['accuracy']:.2f}, entropy {batch.rollout_entropy:.3f}")
        done = self.r + 1
        self.save_policy_snapshot(done)
        stop = self.procs.any(term.requested)
        if done % self.args.checkpoint_every == 0 or done == self.cfg["rollouts"] or stop:
            self.checkpoint(done)
        return stop and done < self.cfg["rollouts"]

    def finish(self, t_start: float) -> None:
        """Save the trained policy, the metrics and the snapshots; close the engine."""
        log.info("trained %s seed %d: %d updates in %.1fs", self.spec["name"], self.seed, self.update, time.time() - t_start)
        final = self.full_weights()
        if self.procs.is_main:
            save_model_atomically(final, self.tokenizer, self.args.out_model)
            io.write_text(self.args.metrics, "".join(self.metrics_lines))
            if self.args.snapshot_dir:
                publish_snapshots(self.snapshot_store, Path(self.args.snapshot_dir))
        self.procs.barrier()
        if hasattr(self.engine, "close"):
            self.engine.close()  # a vLLM engine: shut down while the process group still exists
        self.procs.end()

    # ------------------------------------------------------------------ the loop
    def train(self) -> int:
        cfg, procs, args = self.cfg, self.procs, self.args
        t_start, self.r = time.time(), self.start_rollout
        if self.start_rollout == 0 and self.update == 0:
            self.save_policy_snapshot(0)
        name = f"train {self.spec['name']} seed {self.seed}"
        bar = tqdm(range(self.start_rollout, cfg["rollouts"]), desc=name, disable=not (args.progress and procs.is_main))
        # plain progress lines in the job's log (tail -f), and the metrics in TensorBoard if asked
        progress = ProgressLog(f"{name}: rollouts", cfg["rollouts"], args.progress_every_s, start=self.start_rollout)
        tensorboard = open_sinks(args, f"{self.spec['name']}/seed{self.seed}", self.spec) if procs.is_main else None
        try:
            with SigtermGuard(interruptible_sampling=not procs.distributed) as term, contextlib.ExitStack() as stack:
                try:
                    graders = stack.enter_context(GraderPool(args.grader, args.grading_timeout_s, args.grading_workers))
                except ValueError as err:
                    raise PipelineError(str(err)) from None
                metrics_fh = stack.enter_context(open(self.live_metrics, "a")) if procs.is_main else None
                timings_fh = stack.enter_context(open(self.timings_path, "a")) if procs.is_main else None
                for self.r in bar:
                    t_step = time.perf_counter()
                    # ---- 1-4. collect, score, advantages (or the rollout a SIGTERM interrupted)
                    partial, self.partial = self.partial, None
                    if partial is not None and partial["rollout"] == self.r:
                        batch = resumed_batch(partial, self.method.regularizer, self.group_size)
                    else:
                        batch = self.collect(self.r, graders, term, t_step)
                    # ---- 5-6. policy (and critic) updates over mini-batches of whole prompt groups, logged
                    update_seconds = []
                    for epoch, start, prompt_order in self.minibatches(batch):
                        t_update = time.perf_counter()
                        record = self.update_step(batch, prompt_order[start : start + self.local_mb])
                        update_seconds.append(round(time.perf_counter() - t_update, 4))
                        self.log_update(record, metrics_fh, tensorboard)
                        # SIGTERM: the update is done; checkpoint the middle of the rollout
                        # (one process only: several processes finish the rollout first)
                        after = start + self.local_mb
                        if not procs.distributed and term.requested and (after < self.local_prompts or epoch + 1 < cfg["epochs"]):
                            position = (epoch, after, prompt_order) if after < self.local_prompts else (epoch + 1, 0, None)
                            self.checkpoint(self.r, batch.partial_state(*position, r=self.r))
                            return self.preempted_exit()
                    # Wall times go to their own log: metrics.jsonl stays byte-identical across runs.
                    if timings_fh is not None:
                        append_line(timings_fh, json.dumps({
                            "rollout": self.r, "sample_seconds": round(batch.sample_seconds, 4),
                            "update_seconds": update_seconds, "step_seconds": round(time.perf_counter() - t_step, 4),
                            "processes": self.world, **self.dtypes,
                        }) + "\n", self.timings_path)
                    bar.set_postfix(acc=f"{record['accuracy']:.2f}", H=f"{batch.rollout_entropy:.3f}")
                    if self.end_rollout(batch, record, progress, term):
                        return self.preempted_exit()
        except Preempted:  # raised only while sampling rollout r, which changes no state
            if self.last_saved != (self.r, self.update):
                self.checkpoint(self.r)
            return self.preempted_exit()
        except NonFiniteError as err:
            kept = (f"the last good checkpoint {self.ckpt_dir / self.last_saved_name} is kept" if self.last_saved_name
                    else "no checkpoint had been written")
            raise PipelineError(f"{err}; stopping ({kept})") from None
        finally:
            if tensorboard is not None:
                tensorboard.close()
        self.finish(t_start)
        return 0


def run(args: argparse.Namespace) -> int:
    torch.set_num_threads(args.threads)
    return Trainer(args).train()
