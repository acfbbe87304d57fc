"""Stage ``train``: RL-train the base policy with one method and one seed.

One readable loop. Each rollout step:

1. draw ``prompts_per_rollout`` training problems and sample ``group_size`` responses each
   (temperature 1.0, the current policy);
2. grade them: +1 correct, -1 otherwise (truncated = wrong);
3. one no-grad forward pass gives the rollout policy's log-probabilities (and, for PPO,
   the critic's values);
4. the method's **estimator** turns scores into per-token advantages;
5. for each mini-batch of prompts: a forward pass gives log-probabilities and token
   entropies together; the method's **shaping** adjusts the advantages (on a fresh
   tensor, every mini-batch, with the current entropy), its **policy loss** and
   **regularizer** give the loss; one optimizer step — a *policy update*, logged to the
   metrics JSONL;
6. (AER: before the updates of step 4-5 its controller has seen the rollout's own mean
   entropy and set the coefficient they use.)

The method is data (:mod:`pipeline.rl.methods`); every component comes from
:mod:`pipeline.rl.registry`. Every random draw is seeded from (seed, rollout index), so a
run resumed from a checkpoint continues exactly as an uninterrupted one would.

Reliability: checkpoints are written every ``--checkpoint-every`` rollouts, atomically and
with an integrity marker (see "checkpoints" below); a restarted job resumes from the
newest intact one of the same run configuration, so a kill loses at most one checkpoint
interval. SIGTERM (preemption) lets the policy update in progress finish, writes a
checkpoint (mid-rollout if need be: the rollout's data and generator states included)
and exits with code 75, which makes Snakemake retry the job, and the retry resumes. A
nan/inf loss, advantage, gradient norm or parameter stops the run with a PipelineError
(exit code 2) naming the step; nothing is checkpointed after it.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import logging
import math
import os
import random
import re
import shutil
import signal
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from pipeline import io
from pipeline.data.schema import read_problems
from pipeline.errors import PipelineError
from pipeline.eval.grading import GraderPool
from pipeline.models import check_context_budget, load_model_and_tokenizer, model_fingerprint, save_model_atomically
from pipeline.progress import ProgressLog
from pipeline.prompts import render_prompts
from pipeline.rl import registry
from pipeline.rl.entropy import logprobs_and_entropy
from pipeline.rl.distributed import Processes
from pipeline.rl.losses import (
    aggregation_units, explained_variance_from_sums, explained_variance_sums, kl_penalty, value_loss,
)
from pipeline.rl.schedule import learning_rate
from pipeline.rl.tracking import log_scalars, open_sinks
from pipeline.sampling.base import SamplingParams, end_of_sequence_ids
from pipeline.sampling.hf import HFSampler

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- rollouts


@dataclass
class Rollout:
    input_ids: torch.Tensor       # [N, L] prompt + response (+ EOS), right-padded
    attention: torch.Tensor       # [N, L]
    mask: torch.Tensor            # [N, L-1] 1 where the label is a response token
    scores: torch.Tensor          # [N] +1 / -1
    response_lengths: torch.Tensor  # [N]
    group_accuracy: torch.Tensor  # [P]

    @property
    def lengths(self) -> torch.Tensor:
        """[N] tokens of each sequence (prompt + response + EOS)."""
        return self.attention.sum(dim=1)


def grade_rollout(prompt_completions, answers, pool: GraderPool) -> tuple[list[bool], dict[str, int]]:
    """Correctness of every response, prompt by prompt; a truncated response is wrong
    without being graded. Graded in the pool's worker processes under a hard per-sample
    timeout: a hostile response that hangs or crashes the grader counts as wrong."""
    finished = [(c.text, answer) for pc, answer in zip(prompt_completions, answers) for c in pc.completions if c.finish_reason == "stop"]
    verdicts = iter(pool.grade([t for t, _ in finished], [a for _, a in finished]))
    correct, failures = [], {"grader_timeouts": 0, "grader_errors": 0}
    for pc in prompt_completions:
        for c in pc.completions:
            verdict = next(verdicts) if c.finish_reason == "stop" else None
            correct.append(verdict is not None and verdict.correct)
            if verdict is not None and verdict.status != "ok":
                failures["grader_timeouts" if verdict.status == "timeout" else "grader_errors"] += 1
    return correct, failures


def build_rollout(prompt_completions, correct: list[bool], group_size, pad_id) -> Rollout:
    """The rollout's tensors from the sampled responses and their correctness (+1 / -1)."""
    sequences, starts, scores, lengths = [], [], [], []
    flat = iter(correct)
    for pc in prompt_completions:
        for c in pc.completions:
            response = c.sampled_ids  # every sampled token once, the EOS that ended it included
            sequences.append(pc.prompt_ids + response)
            starts.append(len(pc.prompt_ids))
            scores.append(1.0 if next(flat) else -1.0)
            lengths.append(len(response))
    width = max(len(s) for s in sequences)
    input_ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    attention = torch.zeros_like(input_ids)
    mask = torch.zeros((len(sequences), width - 1), dtype=torch.float32)
    for i, (seq, start) in enumerate(zip(sequences, starts)):
        input_ids[i, : len(seq)] = torch.tensor(seq)
        attention[i, : len(seq)] = 1
        mask[i, start - 1 : len(seq) - 1] = 1.0  # label position t predicts token t+1
    score_t = torch.tensor(scores)
    return Rollout(
        input_ids=input_ids, attention=attention, mask=mask, scores=score_t,
        response_lengths=torch.tensor(lengths, dtype=torch.float32),
        group_accuracy=(score_t.view(-1, group_size) > 0).float().mean(dim=1),
    )


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


def _trim(rollout: Rollout, rows: torch.Tensor):
    """The rows' tensors cut to their own longest sequence (no compute on trailing padding)."""
    width = int(rollout.attention[rows].sum(dim=1).max())
    return rollout.input_ids[rows, :width], rollout.attention[rows, :width], width - 1


def micro_batches(rows: torch.Tensor, lengths: torch.Tensor, size: int) -> list[torch.Tensor]:
    """``rows`` sorted by sequence length and cut into micro-batches of ``size`` rows.

    Each forward pass then pads only to its own longest sequence: on the toy, responses
    of 10 to 112 tokens cost about half as much as one mini-batch padded to the longest.
    """
    order = rows[torch.argsort(lengths[rows], stable=True)]
    return list(order.split(size))


def _shaping_sum(advantages: torch.Tensor, shaped: torch.Tensor, mask: torch.Tensor) -> tuple[float, float]:
    """Numerator and count of :func:`pipeline.rl.advantages.shaping_ratio` (summable over micro-batches)."""
    a, s = advantages.detach().float(), shaped.detach().float()
    sel = mask.bool() & (a != 0)
    return float(((s[sel] - a[sel]) / a[sel].abs()).sum()), float(sel.sum())


class _MicroStats:
    """One policy update's logged values, summed over its micro-batches and processes.

    Losses are the weighted sums that make up the mini-batch loss; entropy and the loss
    functions' statistics (clip fractions, KL, ...: means over valid tokens) become
    token-weighted means; the shaping ratio a mean over tokens with A != 0.
    """

    def __init__(self):
        self.pg = self.reg = self.tokens = self.entropy = 0.0
        self.shaping = [0.0, 0.0]
        self.sums: dict[str, float] = {}
        self.counts: dict[str, float] = {}

    def add(self, *, weight, tokens, pg_loss, reg_term, entropy_sum, stats, shaping) -> None:
        self.pg += pg_loss * weight
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
            [self.pg, self.reg, self.tokens, self.entropy, *self.shaping]
            + [self.sums[k] for k in keys] + [self.counts[k] for k in keys]
        )
        n = len(keys)
        pg, reg, tokens, entropy, shaping_num, shaping_count = totals[:6]
        return {
            "pg_loss": pg, "reg_term": reg,
            "entropy": entropy / tokens if tokens else float("nan"),
            "shaping_ratio": shaping_num / shaping_count if shaping_count else None,
            "stats": {k: (totals[6 + i] / totals[6 + n + i] if totals[6 + n + i] else float("nan")) for i, k in enumerate(keys)},
        }


# --------------------------------------------------------------------------- finiteness


class NonFiniteError(PipelineError):
    """A loss, advantage, gradient or parameter became nan/inf: training stops at once,
    before anything non-finite can reach a checkpoint."""


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


def _check_state_finite(obj, path: str = "state") -> None:
    """Refuse to persist a nan/inf anywhere in a checkpoint (weights, optimizer moments)."""
    if isinstance(obj, torch.Tensor):
        if obj.is_floating_point() and not bool(torch.isfinite(obj).all()):
            raise NonFiniteError(f"non-finite values in {path}; the checkpoint is not written")
    elif isinstance(obj, dict):
        for key, value in obj.items():
            _check_state_finite(value, f"{path}.{key}")
    elif isinstance(obj, (list, tuple)):
        for i, value in enumerate(obj):
            _check_state_finite(value, f"{path}[{i}]")
    elif isinstance(obj, float) and not math.isfinite(obj):
        raise NonFiniteError(f"non-finite value {obj} in {path}; the checkpoint is not written")


# --------------------------------------------------------------------------- checkpoints
#
# A checkpoint is a directory ``step-<rollouts done>`` (at a rollout boundary) or
# ``step-<rollouts done>-u<updates done>`` (written on SIGTERM in the middle of a rollout)
# holding ``state.pt`` (torch.save, loadable with weights_only=True), ``metrics.jsonl``
# (the records of every update it contains) and, written last, ``COMPLETE``: JSON with
# the counters and the sha256 and size of both files. It is built in a temporary
# directory, fsynced and renamed into place; a directory without a valid ``COMPLETE``
# (a crash while writing, a truncated copy) is never loaded.

CHECKPOINT_FORMAT = 1
MARKER = "COMPLETE"
PREEMPTED_EXIT_CODE = 75  # EX_TEMPFAIL: "try again later" (SIGTERM, e.g. SLURM preemption)
_NAME = re.compile(r"^step-(\d+)(?:-u(\d+))?$")


class Preempted(Exception):
    """SIGTERM was received; the trainer checkpoints and exits with PREEMPTED_EXIT_CODE."""


@dataclass
class Checkpoint:
    path: Path
    state: dict
    metrics: str  # the metrics JSONL of the updates the state contains


def checkpoint_name(rollout: int, update: int, partial: bool) -> str:
    return f"step-{rollout:06d}-u{update:08d}" if partial else f"step-{rollout:06d}"


def _order(path: Path) -> tuple[int, int, int]:
    m = _NAME.match(path.name)
    return int(m[1]), m[2] is not None, int(m[2] or 0)


def list_checkpoints(ckpt_dir: Path) -> list[Path]:
    """Checkpoint directories, oldest first (complete or not)."""
    if not ckpt_dir.is_dir():
        return []
    return sorted((p for p in ckpt_dir.iterdir() if p.is_dir() and _NAME.match(p.name)), key=_order)


def save_checkpoint(ckpt_dir: Path, state: dict, metrics: str, keep: int) -> Path:
    """Write a checkpoint atomically (temp dir, fsync, ``COMPLETE`` last, rename), then keep
    the newest ``keep`` complete ones. Refuses a state holding a nan/inf."""
    _check_state_finite({k: v for k, v in state.items() if k not in ("rng", "partial")})
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    name = checkpoint_name(state["rollout"], state["update"], state.get("partial") is not None)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{name}.", dir=ckpt_dir))
    try:
        with io.atomic_stream(tmp / "state.pt") as fh:
            torch.save(state, fh)
        files = {"state.pt": {"sha256": fh.sha256.hexdigest(), "bytes": fh.tell()}}
        data = metrics.encode("utf-8")
        files["metrics.jsonl"] = {"sha256": io.write_bytes(tmp / "metrics.jsonl", data), "bytes": len(data)}
        io.write_json(tmp / MARKER, {
            "format": CHECKPOINT_FORMAT, "rollout": state["rollout"], "update": state["update"],
            "partial": state.get("partial") is not None, "files": files,
        })
        os.chmod(tmp, 0o755)
        io.fsync_dir(tmp)
        io.replace_dir(tmp, ckpt_dir / name)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    prune_checkpoints(ckpt_dir, keep)
    return ckpt_dir / name


def prune_checkpoints(ckpt_dir: Path, keep: int) -> None:
    """Keep the newest ``keep`` complete checkpoints; remove every checkpoint older than them."""
    complete = [p for p in list_checkpoints(ckpt_dir) if (p / MARKER).is_file()]
    if len(complete) <= keep:
        return
    oldest_kept = _order(complete[-keep])
    for old in list_checkpoints(ckpt_dir):
        if _order(old) < oldest_kept:
            shutil.rmtree(old, ignore_errors=True)


def verify_checkpoint(path: Path) -> dict:
    """The ``COMPLETE`` record of a checkpoint whose files match it; ValueError otherwise."""
    try:
        marker = json.loads((path / MARKER).read_text())
    except FileNotFoundError:
        raise ValueError(f"no {MARKER} marker (incompletely written)") from None
    except (OSError, ValueError) as err:
        raise ValueError(f"unreadable {MARKER} marker ({err})") from None
    if not isinstance(marker, dict) or marker.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"unknown checkpoint format {marker.get('format') if isinstance(marker, dict) else marker!r}")
    for fname, meta in marker["files"].items():
        f = path / fname
        if not f.is_file():
            raise ValueError(f"{fname} is missing")
        if f.stat().st_size != meta["bytes"]:
            raise ValueError(f"{fname} has {f.stat().st_size} bytes, {MARKER} says {meta['bytes']}")
        if io.file_sha256(f) != meta["sha256"]:
            raise ValueError(f"{fname} does not match its sha256 in {MARKER}")
    return marker


def load_latest_checkpoint(ckpt_dir: Path, run_id: str | None = None, max_rollout: int | None = None) -> Checkpoint | None:
    """The newest complete, intact checkpoint of this run (``run_id``); others are skipped.

    Checkpoints of another run configuration (a changed method, seed, data or base model)
    and checkpoints past this run's last rollout (``max_rollout``, a shortened run) are
    removed: they can never be resumed by this job.
    """
    for candidate in reversed(list_checkpoints(ckpt_dir)):
        try:
            marker = verify_checkpoint(candidate)
            state = torch.load(candidate / "state.pt", map_location="cpu", weights_only=True)
            if (state.get("rollout"), state.get("update")) != (marker["rollout"], marker["update"]):
                raise ValueError("state.pt does not hold the counters of its marker")
            metrics = (candidate / "metrics.jsonl").read_text()
        except Exception as err:  # noqa: BLE001 - any defect: fall back to the previous checkpoint
            log.warning("skipping checkpoint %s: %s", candidate, str(err).splitlines()[0] if str(err) else type(err).__name__)
            continue
        if run_id is not None and state.get("run") != run_id:
            log.warning("removing checkpoint %s: it belongs to another run configuration", candidate)
            shutil.rmtree(candidate, ignore_errors=True)
            continue
        if max_rollout is not None and state["rollout"] > max_rollout:
            log.warning("removing checkpoint %s: it is past this run's %d rollouts", candidate, max_rollout)
            shutil.rmtree(candidate, ignore_errors=True)
            continue
        return Checkpoint(candidate, state, metrics)
    return None


def _rng_state() -> dict:
    """Every global random state (the loop seeds its own draws, but a model or library may not)."""
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": {
            "name": np_state[0], "keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4]),
        },
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]))
    if "cuda" in state and torch.cuda.is_available() and torch.cuda.device_count() == len(state["cuda"]):
        torch.cuda.set_rng_state_all(state["cuda"])


class _SigtermGuard:
    """SIGTERM (a SLURM preemption or time limit, Snakemake stopping) sets a flag: the
    trainer finishes the policy update in progress, checkpoints and exits with
    PREEMPTED_EXIT_CODE. During sampling (which changes no state) it interrupts at once."""

    def __init__(self, interruptible_sampling: bool = True):
        self.requested = False
        self._interruptible = False
        self._previous = None
        # Several processes must leave their collectives together: they never interrupt
        # sampling, they finish the rollout step and agree to stop at its end.
        self._sampling_interruptible = interruptible_sampling

    def __enter__(self) -> "_SigtermGuard":
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)

    def _handle(self, signum, frame) -> None:
        if not self.requested:
            log.warning("SIGTERM: checkpointing after the current policy update, then exiting")
        self.requested = True
        if self._interruptible:
            self._interruptible = False
            raise Preempted()

    @contextlib.contextmanager
    def interruptible(self):
        if not self._sampling_interruptible:
            yield
            return
        if self.requested:
            raise Preempted()
        self._interruptible = True
        try:
            yield
        finally:
            self._interruptible = False


def _append(fh, line: str, path: Path) -> None:
    """Append to the live metrics log; a full disk is a one-line PipelineError."""
    try:
        fh.write(line)
        fh.flush()
    except OSError as err:
        if io.is_out_of_space(err):
            raise PipelineError(f"cannot write {path}: {err.strerror} (out of disk space?); the last checkpoint is kept") from None
        raise


def run_id(args: argparse.Namespace, spec: dict) -> str:
    """What a checkpoint must match to be resumed: everything the run's trajectory depends
    on except its length (a run may be extended by raising ``rollouts``)."""
    spec = {**spec, "training": {k: v for k, v in spec["training"].items() if k != "rollouts"}}
    return io.stable_hash({
        "spec": spec, "seed": args.seed, "template": args.template, "chat_template": bool(args.chat_template),
        "grader": args.grader, "base_model": model_fingerprint(args.base_model),
        "train_problems": io.file_sha256(args.train_problems),
    }, length=32)


# --------------------------------------------------------------------------- the loop


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


def run(args: argparse.Namespace) -> int:
    torch.set_num_threads(args.threads)
    if args.checkpoint_every < 1 or args.keep_checkpoints < 1:
        raise PipelineError("--checkpoint-every and --keep-checkpoints must be >= 1")
    spec = json.loads(args.method_json)
    # Keys a spec written before they existed lacks take the schema's defaults.
    cfg = spec["training"] = {**training_defaults(), **spec["training"]}
    seed, G = args.seed, cfg["group_size"]
    try:
        procs = Processes(cfg["precision"], args.sharding)
    except ValueError as err:
        raise PipelineError(str(err)) from None
    W, rank = procs.world, procs.rank
    n_prompts, mb_prompts, epochs = cfg["prompts_per_rollout"], cfg["minibatch_prompts"], cfg["epochs"]
    if n_prompts % W or mb_prompts % W:
        raise PipelineError(
            f"training.prompts_per_rollout ({n_prompts}) and minibatch_prompts ({mb_prompts}) must be "
            f"multiples of the number of processes ({W}): each process trains on whole prompt groups"
        )
    torch.manual_seed(seed)

    problems = read_problems(args.train_problems)
    policy, tokenizer = load_model_and_tokenizer(args.base_model, trust_remote_code=args.trust_remote_code)
    if cfg["gradient_checkpointing"]:
        policy.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    policy.to(procs.device)
    policy.train()
    est, shp, pol, reg = spec["estimator"], spec["shaping"], spec["loss"], spec["regularizer"]
    estimator_params = registry.params_of(est)
    shaping = registry.SHAPINGS[shp["name"]]
    shaping_params = registry.params_of(shp)
    loss_fn = registry.POLICY_LOSSES[pol["name"]]
    loss_params = registry.params_of(pol)
    aggregation = pol["aggregation"]
    regularizer = registry.REGULARIZERS[reg["name"]](**registry.params_of(reg))
    critic = critic_opt = None
    critic_warmup = 0
    if est["name"] == "gae":
        critic = ValueModel(args.base_model, trust_remote_code=args.trust_remote_code).to(procs.device)
        critic_warmup = est["critic_warmup_rollouts"]
        # GAE and whitening take gamma/lam/whiten; the rest are critic settings.
        estimator_params = {k: estimator_params[k] for k in ("gamma", "lam", "whiten")}
    estimator = registry.ESTIMATORS[est["name"]]
    # KL to a frozen reference (the base model), off by default: neither paper uses it.
    kl_cfg = cfg.get("kl") or {}
    kl_coef, kl_estimator = float(kl_cfg.get("coef", 0.0)), kl_cfg.get("estimator", "k3")
    reference = load_reference(args, procs) if kl_coef > 0 else None

    prompt_ids_all = [tokenizer(p).input_ids for p in render_prompts(problems["problem"], args.template, tokenizer, args.chat_template)]
    if cfg["max_prompt_tokens"] is not None:  # e.g. 1024 + 3072 response tokens in a 4096 context
        keep = [i for i, p in enumerate(prompt_ids_all) if len(p) <= cfg["max_prompt_tokens"]]
        log.info("training.max_prompt_tokens %d: %d of %d training prompts kept", cfg["max_prompt_tokens"], len(keep), len(problems))
        if not keep:
            raise PipelineError(f"training.max_prompt_tokens {cfg['max_prompt_tokens']}: no training prompt is that short")
        problems = problems.iloc[keep].reset_index(drop=True)
        prompt_ids_all = [prompt_ids_all[i] for i in keep]
    n_problems = len(problems)
    # A rollout must fit the model's context (checked now, not at the first long prompt).
    engine_len = check_context_budget(
        args.base_model, max(map(len, prompt_ids_all)), cfg["max_new_tokens"], where="training"
    )
    answers_all = list(problems["answer"])

    # ---- resume: the newest intact checkpoint of this very run, if any
    ckpt_dir = Path(args.checkpoint_dir)
    snapshot_store = ckpt_dir / "snapshots"  # survives a retry (the job's outputs do not)
    if procs.is_main:
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        for leftover in ckpt_dir.iterdir():  # temp files and directories of a killed writer
            if leftover.name.startswith("."):
                shutil.rmtree(leftover, ignore_errors=True) if leftover.is_dir() else leftover.unlink(missing_ok=True)
    procs.barrier()
    this_run = run_id(args, spec)
    start_rollout, update, partial = 0, 0, None
    metrics_lines: list[str] = []
    ckpt = load_latest_checkpoint(ckpt_dir, this_run, max_rollout=cfg["rollouts"]) if procs.is_main else None
    if procs.distributed:  # every process resumes from the checkpoint the main one chose
        name = [ckpt.path.name if ckpt is not None else None]
        torch.distributed.broadcast_object_list(name, src=0)
        if not procs.is_main and name[0] is not None:
            path = ckpt_dir / name[0]
            ckpt = Checkpoint(path, torch.load(path / "state.pt", map_location="cpu", weights_only=True), "")
    state = ckpt.state if ckpt is not None else None
    if state is not None:
        if state.get("partial") is not None and procs.distributed:
            raise PipelineError(f"checkpoint {ckpt.path} was written mid-rollout by a single process; resume it with one process")
        if state.get("sharding", "ddp") != ("fsdp" if procs.sharded else "ddp"):
            raise PipelineError(
                f"checkpoint {ckpt.path} holds {'sharded' if state.get('sharding') == 'fsdp' else 'unsharded'} optimizer "
                "state: resume it with the sharding it was written with (--sharding)"
            )
        policy.load_state_dict(state["policy"])
        if critic is not None:
            critic.load_state_dict(state["critic"])
    # A full (unsharded) copy of the policy for rollouts and saving, when the trained one is sharded.
    full_policy = copy.deepcopy(policy) if procs.sharded else None
    # Optimizers are built on the wrapped (possibly sharded) parameters.
    policy = procs.wrap_model(policy)
    optimizer = torch.optim.AdamW(policy.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    if critic is not None:
        critic = procs.wrap_model(critic)
        critic_opt = torch.optim.AdamW(critic.parameters(), lr=est["critic_lr"], weight_decay=est["critic_weight_decay"])
    if state is not None:
        procs.load_optimizer_state_dict(policy, optimizer, state["optimizer"])
        if critic is not None:
            procs.load_optimizer_state_dict(critic, critic_opt, state["critic_optimizer"])
        regularizer.load_state_dict(state["regularizer"])
        _set_rng_state(state["rng"])
        start_rollout, update, partial = state["rollout"], state["update"], state["partial"]
        metrics_lines = ckpt.metrics.splitlines(keepends=True)
        log.info("resuming from checkpoint %s (rollout %d, update %d)", ckpt.path.name, start_rollout, update)
    optimizer = procs.wrap_optimizer(optimizer)
    if critic is not None:
        critic_opt = procs.wrap_optimizer(critic_opt)
    bare_policy = full_policy if full_policy is not None else procs.unwrap(policy)
    full_policy_stale = False  # FSDP: the full copy lags the sharded policy after an update

    def full_weights() -> nn.Module:
        """The policy with its current full weights (gathered from the shards under FSDP; a collective)."""
        nonlocal full_policy_stale
        if full_policy is not None and full_policy_stale:
            full_policy.load_state_dict(procs.full_state_dict(policy, everywhere=True))
            full_policy_stale = False
        return bare_policy

    # ---- rollout engine: HF sampling from the policy itself, or a colocated vLLM engine
    if cfg["rollout_backend"] == "vllm":
        from pipeline.sampling.vllm_backend import VLLMRollouts

        engine = VLLMRollouts(
            args.base_model, seed=io.stable_seed(seed, "vllm-engine", rank),
            gpu_memory_utilization=cfg["vllm_gpu_memory_utilization"], trust_remote_code=args.trust_remote_code,
            max_model_len=engine_len,
            eos_token_ids=end_of_sequence_ids(tokenizer, bare_policy.generation_config),
            # the rollout policy in the precision the trainer computes in (bf16 under
            # training.precision bf16, as verl's rollouts; fp32 otherwise, = the trainer's log-probs)
            dtype="bfloat16" if cfg["precision"] == "bf16" else "float32", processes=W,
        )
    else:
        engine = HFSampler(bare_policy, tokenizer, batch_size=cfg["rollout_batch_size"])
    engine_stale = ckpt is not None  # a resumed policy differs from the weights vLLM loaded
    full_policy_stale = ckpt is not None

    # The live log holds exactly the records of the updates the checkpoint contains.
    live_metrics = ckpt_dir / "metrics.jsonl"
    # Per rollout step: sampling, each update and the whole step, in seconds (benchmarks read it).
    timings_path = ckpt_dir / "timings.jsonl"
    if procs.is_main:
        io.write_text(live_metrics, "".join(metrics_lines))
    last_saved = (start_rollout, update) if ckpt is not None else None
    last_saved_name = ckpt.path.name if ckpt is not None else None

    def snapshot(rollouts_done: int, partial_state: dict | None = None) -> dict:
        state = {
            "format": CHECKPOINT_FORMAT, "run": this_run, "rollout": rollouts_done, "update": update,
            "policy": procs.full_state_dict(policy), "optimizer": procs.optimizer_state_dict(policy, optimizer),
            "regularizer": regularizer.state_dict(), "rng": _rng_state(), "partial": partial_state,
            "sharding": "fsdp" if procs.sharded else "ddp",
        }
        if critic is not None:
            state.update(critic=procs.full_state_dict(critic), critic_optimizer=procs.optimizer_state_dict(critic, critic_opt))
        return state

    def checkpoint(rollouts_done: int, partial_state: dict | None = None) -> None:
        nonlocal last_saved, last_saved_name
        state = snapshot(rollouts_done, partial_state)  # a collective under FSDP: every process
        if procs.is_main:
            path = save_checkpoint(ckpt_dir, state, "".join(metrics_lines), args.keep_checkpoints)
            last_saved_name = path.name
        last_saved = (rollouts_done, update)
        procs.barrier()

    def save_policy_snapshot(rollouts_done: int) -> None:
        """The policy after ``rollouts_done`` rollouts, for the checkpoint analysis."""
        every = cfg["snapshot_every"]
        if not every or not (rollouts_done % every == 0 or rollouts_done == cfg["rollouts"]):
            return
        model = full_weights()  # every process: a collective under FSDP
        if procs.is_main and not (snapshot_store / f"rollout-{rollouts_done:04d}" / "config.json").is_file():
            save_model_atomically(model, tokenizer, snapshot_store / f"rollout-{rollouts_done:04d}")
        procs.barrier()

    def preempted_exit() -> int:
        log.warning(
            "preempted: checkpoint %s holds rollout %d, update %d; exiting with code %d so that the job is retried",
            last_saved_name, last_saved[0], last_saved[1], PREEMPTED_EXIT_CODE,
        )
        return PREEMPTED_EXIT_CODE

    norm_length = cfg["max_new_tokens"] + 1  # Dr.GRPO's constant: the longest possible response (+EOS)
    chunk = cfg["entropy_chunk_size"]
    micro = cfg["micro_batch_size"] or n_prompts * G
    local_prompts, local_mb = n_prompts // W, mb_prompts // W
    # The lr schedule runs over policy updates (a PPO critic warm-up does not advance it).
    updates_per_rollout = epochs * (n_prompts // mb_prompts)
    policy_updates_total = max(cfg["rollouts"] - critic_warmup, 1) * updates_per_rollout

    def to_global_rows(rows: torch.Tensor) -> torch.Tensor:
        """Local response rows -> rows of the whole rollout (process k holds prompts k, k+W, ...)."""
        return (rows // G * W + rank) * G + rows % G

    def forward(model, rows, rollout, want_grad: bool):
        """Log-probs and entropies of ``rows``, cut to their own longest sequence (``T`` labels)."""
        input_ids, attention, T = _trim(rollout, rows)
        with (contextlib.nullcontext() if want_grad else torch.no_grad()), procs.autocast():
            logp, entropy = policy_logp_entropy(
                model, input_ids.to(procs.device), attention.to(procs.device), chunk, cfg["temperature"]
            )
        logp, entropy = logp.float(), entropy.float()
        return (logp, entropy, T) if want_grad else (logp.cpu(), entropy.cpu(), T)

    token_selection = registry.TOKEN_SELECTIONS.get(pol["name"])
    key_stride = 1 << 24  # canonical token order: global response row, then position

    def choose_tokens(select, micros, rollout, old_logp, advantages, generator) -> list[torch.Tensor]:
        """The tokens a covariance-based loss acts on, chosen over the whole mini-batch (every
        micro-batch of every process), per micro-batch as [rows, T] bools. A no-grad pass
        gives the current policy's log-probs and entropies: the parameters are the ones the
        micro-batches' gradients will be taken at."""
        parts = []
        for mrows in micros:
            logp, entropy, T = forward(policy, mrows, rollout, want_grad=False)
            valid = rollout.mask[mrows, :T].bool()
            shaped = shaping(advantages[mrows, :T], entropy, **shaping_params)
            keys = to_global_rows(mrows)[:, None] * key_stride + torch.arange(T)[None, :]
            parts.append((valid, logp[valid], old_logp[mrows, :T][valid], shaped[valid], keys[valid]))
        flat = [torch.cat([p[i] for p in parts]) for i in range(1, 5)]
        picked = select(*flat, generator=generator, world=procs, **loss_params)
        out, offset = [], 0
        for valid, *_ in parts:
            n = int(valid.sum())
            mask = torch.zeros_like(valid)
            mask[valid] = picked[offset : offset + n]
            out.append(mask)
            offset += n
        return out

    # What the run trains in, as measured (logged with the timings): master weights and the
    # dtype forward passes compute in (bf16 under training.precision bf16's autocast).
    with torch.no_grad(), procs.autocast():
        probe = policy(input_ids=torch.tensor([prompt_ids_all[0][:4]], device=procs.device)).logits
    dtypes = {"param_dtype": str(next(policy.parameters()).dtype).removeprefix("torch."),
              "compute_dtype": str(probe.dtype).removeprefix("torch."), "device": str(probe.device)}
    del probe

    t_start = time.time()
    r = start_rollout
    if start_rollout == 0 and update == 0:
        save_policy_snapshot(0)
    bar = tqdm(range(start_rollout, cfg["rollouts"]), desc=f"train {spec['name']} seed {seed}", disable=not (args.progress and procs.is_main))
    # plain progress lines in the job's log (tail -f), and the metrics in TensorBoard if asked
    progress = ProgressLog(f"train {spec['name']} seed {seed}: rollouts", cfg["rollouts"], args.progress_every_s, start=start_rollout)
    tensorboard = open_sinks(args, f"{spec['name']}/seed{seed}", spec) if procs.is_main else None
    try:
        with _SigtermGuard(interruptible_sampling=not procs.distributed) as term, contextlib.ExitStack() as stack:
            try:
                graders = stack.enter_context(GraderPool(args.grader, args.grading_timeout_s, args.grading_workers))
            except ValueError as err:
                raise PipelineError(str(err)) from None
            metrics_fh = stack.enter_context(open(live_metrics, "a")) if procs.is_main else None
            timings_fh = stack.enter_context(open(timings_path, "a")) if procs.is_main else None
            for r in bar:
                t_step = time.perf_counter()
                update_seconds: list[float] = []
                resumed = partial if partial is not None and partial["rollout"] == r else None
                partial = None
                if resumed is not None:
                    # ---- a rollout interrupted by SIGTERM: its data, generators and position
                    t = resumed["tensors"]
                    rollout = Rollout(**{k: t[k] for k in Rollout.__dataclass_fields__})
                    old_logp, values, advantages, returns = t["old_logp"], t["values"], t["advantages"], t["returns"]
                    ref_logp = t.get("ref_logp")
                    rollout_entropy, rollout_stats = resumed["rollout_entropy"], resumed.get("rollout_stats", {})
                    global_accuracy = resumed.get("global_accuracy", rollout.group_accuracy)
                    reg_stats = regularizer.begin_rollout(global_accuracy, G)  # no observation: the checkpoint holds it
                    shuffle, selection = torch.Generator(), torch.Generator()
                    shuffle.set_state(resumed["shuffle"])
                    selection.set_state(resumed["selection"])
                    first_epoch, first_start, first_order = resumed["epoch"], resumed["next_start"], resumed["prompt_order"]
                    sample_seconds = 0.0
                else:
                    if engine_stale and cfg["rollout_backend"] == "vllm":
                        engine.load_weights(
                            procs.full_state_dict(policy, everywhere=True),
                            tie_word_embeddings=bool(getattr(bare_policy.config, "tie_word_embeddings", False)),
                        )
                    elif cfg["rollout_backend"] == "hf":
                        full_weights()  # FSDP: the HF sampler's full copy gets the current weights
                    engine_stale = False
                    with term.interruptible():  # nothing below changes the run's state
                        # ---- 1-2. rollout: prompts in a seeded order, epoch by epoch, then grading;
                        # process k samples prompts k, k+W, ... of the rollout
                        epoch, offset = divmod(r * n_prompts, n_problems)
                        order = torch.randperm(n_problems, generator=torch.Generator().manual_seed(io.stable_seed(seed, "epoch", epoch)))
                        idx = [int(order[(offset + j) % n_problems]) for j in range(n_prompts)][rank::W]
                        sample_seed = io.stable_seed(seed, "rollout", r) if W == 1 else io.stable_seed(seed, "rollout", r, "rank", rank)
                        params = SamplingParams(
                            n=G, temperature=cfg["temperature"], top_p=cfg["top_p"],
                            max_new_tokens=cfg["max_new_tokens"], seed=sample_seed,
                        )
                        outs = engine.generate_ids([prompt_ids_all[i] for i in idx], params)
                        sample_seconds = time.perf_counter() - t_step
                        correct, grading_failures = grade_rollout(outs, [answers_all[i] for i in idx], graders)
                        rollout = build_rollout(outs, correct, G, tokenizer.pad_token_id)
                        # each finished response's actions end with exactly one EOS (logged: a
                        # doubled EOS, as vLLM's outputs once gave, shows as eos_per_response > finished)
                        stop_ids = set(engine.stop_ids)
                        eos_actions = sum(t in stop_ids for pc in outs for c in pc.completions for t in c.sampled_ids)
                        finished = sum(c.finish_reason == "stop" for pc in outs for c in pc.completions)

                        # ---- 3. rollout policy's log-probs (and critic values), no grad, in
                        # length-sorted micro-batches
                        N, width = rollout.mask.shape
                        old_logp, old_entropy = torch.zeros(N, width), torch.zeros(N, width)
                        values = torch.zeros(N, width) if critic is not None else None
                        for rows in micro_batches(torch.arange(N), rollout.lengths, micro):
                            lp, h, T = forward(policy, rows, rollout, want_grad=False)
                            old_logp[rows, :T], old_entropy[rows, :T] = lp, h
                            if critic is not None:
                                input_ids, attention, _ = _trim(rollout, rows)
                                with torch.no_grad(), procs.autocast():
                                    values[rows, :T] = critic(input_ids.to(procs.device), attention.to(procs.device)).float().cpu()
                        if values is not None:
                            values = values * rollout.mask
                        ref_logp = None
                        if reference is not None:  # the reference's log-probs, once per rollout
                            ref_logp = torch.zeros(N, width)
                            for rows in micro_batches(torch.arange(N), rollout.lengths, micro):
                                lp, _, T = forward(reference, rows, rollout, want_grad=False)
                                ref_logp[rows, :T] = lp
                        ent_sum, n_tok, reward_sum, n_correct, n_resp, length_sum, timeouts, errors, n_eos, n_finished = procs.sum([
                            float((old_entropy * rollout.mask).sum()), float(rollout.mask.sum()),
                            float(rollout.scores.sum()), float((rollout.scores > 0).sum()),
                            float(len(rollout.scores)), float(rollout.response_lengths.sum()),
                            grading_failures["grader_timeouts"], grading_failures["grader_errors"], eos_actions, finished,
                        ])
                        rollout_entropy = ent_sum / max(n_tok, 1.0)
                        rollout_stats = {
                            "reward": reward_sum / n_resp, "accuracy": n_correct / n_resp, "response_length": length_sum / n_resp,
                            "grader_timeouts": int(timeouts), "grader_errors": int(errors),
                            "finished": n_finished / n_resp, "eos_per_response": n_eos / n_resp,
                        }
                        global_accuracy = procs.gather_interleaved(rollout.group_accuracy)

                    # ---- 4. advantages (stored; never modified in place)
                    reg_stats = regularizer.begin_rollout(global_accuracy, G, rollout_entropy)
                    inp = registry.EstimatorInput(
                        scores=rollout.scores, mask=rollout.mask, group_size=G, values=values,
                        sum_over_processes=procs.sum if procs.distributed else None,
                    )
                    advantages, returns = estimator(inp, **estimator_params)
                    _finite_tensor("advantages", advantages, f"rollout {r} (before update {update})")
                    shuffle = torch.Generator().manual_seed(io.stable_seed(seed, "minibatch", r))
                    selection = torch.Generator().manual_seed(io.stable_seed(seed, "token-selection", r))
                    first_epoch, first_start, first_order = 0, 0, None

                # ---- 5. policy updates over mini-batches of whole prompt groups
                policy_on = r >= critic_warmup
                for ep in range(first_epoch, epochs):
                    # Epoch 0 takes the prompts in rollout order (already a seeded random draw
                    # from the training set): mini-batch m is the same set of prompts however
                    # many processes share the rollout, so W processes update exactly as one.
                    # Later epochs reshuffle each process's own prompts.
                    if ep == first_epoch and first_order is not None:
                        prompt_order = first_order
                    elif ep == 0:
                        prompt_order = torch.arange(local_prompts)
                    else:
                        prompt_order = torch.randperm(local_prompts, generator=shuffle)
                    for start in range(first_start if ep == first_epoch else 0, local_prompts, local_mb):
                        t_update = time.perf_counter()
                        groups = prompt_order[start : start + local_mb]
                        rows = (groups[:, None] * G + torch.arange(G)[None, :]).reshape(-1)
                        where = f"rollout {r}, update {update}"
                        policy_update = max(update - critic_warmup * updates_per_rollout, 0)  # the schedule's index
                        set_lr(optimizer, learning_rate(cfg["lr"], cfg.get("lr_schedule") or {}, policy_update, policy_updates_total))
                        # The loss is normalised over the whole mini-batch (every process's share):
                        # micro-batch m's aggregate is weighted by units_m / units, and DDP's
                        # gradient average is undone by the factor W.
                        units = procs.sum([aggregation_units(rollout.mask[rows], aggregation)])[0]
                        acc = _MicroStats()
                        micros = micro_batches(rows, rollout.lengths, micro)
                        # Clip-Cov / KL-Cov choose their tokens over the whole mini-batch first
                        chosen = (
                            choose_tokens(token_selection, micros, rollout, old_logp, advantages, selection)
                            if token_selection is not None else [None] * len(micros)
                        )
                        for m, mrows in enumerate(micros):
                            logp, entropy, T = forward(policy, mrows, rollout, want_grad=True)
                            mask = rollout.mask[mrows, :T].to(logp.device)
                            adv_mb = advantages[mrows, :T].to(logp.device)
                            shaped = shaping(adv_mb, entropy, **shaping_params)
                            pg_loss, stats = loss_fn(
                                logp, old_logp[mrows, :T].to(logp.device), shaped, mask, norm_length=norm_length,
                                selected=None if chosen[m] is None else chosen[m].to(logp.device), **loss_params,
                            )
                            reg_term = regularizer.term(entropy, mask, to_global_rows(mrows), aggregation, norm_length)
                            weight = aggregation_units(mask, aggregation) / max(units, 1.0)
                            loss = (pg_loss - reg_term) * weight * W
                            if reference is not None:
                                kl = kl_penalty(logp, ref_logp[mrows, :T].to(logp.device), mask, kl_estimator, aggregation, norm_length)
                                loss = loss + kl_coef * kl * weight * W
                                stats = {**stats, "kl_ref": kl.item()}
                            if not procs.distributed:  # distributed: the all-reduced grad norm catches it on every process
                                _finite("loss", loss, where, f" (pg_loss {pg_loss.item()}, reg_term {reg_term.item()})")
                            if policy_on:
                                with procs.no_sync(policy, skip=m < len(micros) - 1):
                                    procs.backward(loss)
                            acc.add(
                                weight=weight, tokens=float(mask.sum()), pg_loss=pg_loss.item(), reg_term=reg_term.item(),
                                entropy_sum=float((entropy.detach() * mask).sum()), stats=stats,
                                shaping=_shaping_sum(adv_mb, shaped.detach(), mask) if shp["name"] != "none" else None,
                            )
                        mean = acc.reduce(procs)
                        record = {
                            "update": update, "rollout": r, **rollout_stats,
                            "entropy": mean["entropy"], "rollout_entropy": rollout_entropy,
                            "shaping_ratio": mean["shaping_ratio"],
                            "pg_loss": mean["pg_loss"], "reg_term": mean["reg_term"],
                            "loss": mean["pg_loss"] - mean["reg_term"] + (kl_coef * mean["stats"]["kl_ref"] if reference is not None else 0.0),
                            "lr": optimizer.param_groups[0]["lr"],
                            "policy_updated": policy_on,
                            **mean["stats"], **reg_stats, **regularizer.stats(),
                        }
                        if policy_on:
                            grad_norm = procs.clip_grad_norm_(policy.parameters(), cfg["grad_clip"])
                            _finite("grad norm", grad_norm, where, f" (loss {record['loss']})")
                            optimizer.step()
                            optimizer.zero_grad(set_to_none=True)
                            if not procs.sharded:  # shards differ per process: the global grad norm guards them
                                _finite_parameters("policy", policy, where)
                            record["grad_norm"] = float(grad_norm)
                            engine_stale = full_policy_stale = True
                        if critic is not None:
                            v_acc = _MicroStats()
                            ev_sums = [0.0] * 5  # explained variance over the whole mini-batch
                            for m, mrows in enumerate(micros):
                                input_ids, attention, T = _trim(rollout, mrows)
                                mask = rollout.mask[mrows, :T].to(procs.device)
                                with procs.autocast():
                                    v = critic(input_ids.to(procs.device), attention.to(procs.device)).float()
                                v_loss, v_stats = value_loss(
                                    v * mask, values[mrows, :T].to(procs.device), returns[mrows, :T].to(procs.device),
                                    mask, clip=est["value_clip"], agg=aggregation,
                                )
                                weight = aggregation_units(mask, aggregation) / max(units, 1.0)
                                if not procs.distributed:
                                    _finite("value loss", v_loss, where)
                                with procs.no_sync(critic, skip=m < len(micros) - 1):
                                    procs.backward(v_loss * weight * W)
                                ev_sums = [a + b for a, b in zip(ev_sums, explained_variance_sums(v, returns[mrows, :T].to(procs.device), mask))]
                                v_acc.add(weight=weight, tokens=float(mask.sum()), pg_loss=v_loss.item(), reg_term=0.0, entropy_sum=0.0, stats=v_stats, shaping=None)
                            v_grad = procs.clip_grad_norm_(critic.parameters(), cfg["grad_clip"])
                            _finite("critic grad norm", v_grad, where)
                            critic_opt.step()
                            critic_opt.zero_grad(set_to_none=True)
                            if not procs.sharded:
                                _finite_parameters("critic", critic, where)
                            v_mean = v_acc.reduce(procs)
                            record.update(v_mean["stats"])
                            record["value_loss"] = v_mean["pg_loss"]
                            record["explained_variance"] = explained_variance_from_sums(procs.sum(ev_sums))
                        update_seconds.append(round(time.perf_counter() - t_update, 4))
                        line = json.dumps(record) + "\n"
                        metrics_lines.append(line)
                        if metrics_fh is not None:
                            _append(metrics_fh, line, live_metrics)
                        if tensorboard is not None:
                            log_scalars(tensorboard, record, update)
                        update += 1
                        # ---- SIGTERM: the update is done; checkpoint the middle of the rollout
                        # (one process only: several processes finish the rollout first)
                        nxt = start + local_mb
                        if not procs.distributed and term.requested and (nxt < local_prompts or ep + 1 < epochs):
                            position = (ep, nxt, prompt_order) if nxt < local_prompts else (ep + 1, 0, None)
                            checkpoint(r, {
                                "rollout": r, "epoch": position[0], "next_start": position[1], "prompt_order": position[2],
                                "shuffle": shuffle.get_state(), "selection": selection.get_state(),
                                "rollout_entropy": rollout_entropy, "rollout_stats": rollout_stats,
                                "global_accuracy": global_accuracy,
                                "tensors": {
                                    **{k: getattr(rollout, k) for k in Rollout.__dataclass_fields__},
                                    "old_logp": old_logp, "values": values, "advantages": advantages, "returns": returns,
                                    "ref_logp": ref_logp,
                                },
                            })
                            return preempted_exit()

                # Wall times go to their own log: metrics.jsonl stays byte-identical across runs.
                if timings_fh is not None:
                    _append(timings_fh, json.dumps({
                        "rollout": r, "sample_seconds": round(sample_seconds, 4), "update_seconds": update_seconds,
                        "step_seconds": round(time.perf_counter() - t_step, 4), "processes": W, **dtypes,
                    }) + "\n", timings_path)

                # ---- 6. end of step (AER observed this rollout's entropy before its updates)
                regularizer.end_rollout(rollout_entropy)
                bar.set_postfix(acc=f"{record['accuracy']:.2f}", H=f"{rollout_entropy:.3f}")
                if procs.is_main:
                    progress.step(extra=f"accuracy {record['accuracy']:.2f}, entropy {rollout_entropy:.3f}")
                done = r + 1
                save_policy_snapshot(done)
                stop = procs.any(term.requested)
                if done % args.checkpoint_every == 0 or done == cfg["rollouts"] or stop:
                    checkpoint(done)
                if stop and done < cfg["rollouts"]:
                    return preempted_exit()
    except Preempted:  # raised only while sampling rollout r, which changes no state
        if last_saved != (r, update):
            checkpoint(r)
        return preempted_exit()
    except NonFiniteError as err:
        kept = f"the last good checkpoint {ckpt_dir / last_saved_name} is kept" if last_saved_name else "no checkpoint had been written"
        raise PipelineError(f"{err}; stopping ({kept})") from None

    log.info("trained %s seed %d: %d updates in %.1fs", spec["name"], seed, update, time.time() - t_start)
    final = full_weights()
    if procs.is_main:
        save_model_atomically(final, tokenizer, args.out_model)
        io.write_text(args.metrics, "".join(metrics_lines))
        if args.snapshot_dir:
            publish_snapshots(snapshot_store, Path(args.snapshot_dir))
    procs.barrier()
    if tensorboard is not None:
        tensorboard.close()
    if hasattr(engine, "close"):
        engine.close()  # a vLLM engine: shut down while the process group still exists
    procs.end()
    return 0


def publish_snapshots(store: Path, out: Path) -> None:
    """Copy the run's policy snapshots into the job's output directory (atomically)."""
    io.remove_stale_temps(out.parent, out.name)
    with io.atomic_dir(out) as tmp:
        for snap in sorted(store.glob("rollout-*")) if store.is_dir() else []:
            if (snap / "config.json").is_file():
                shutil.copytree(snap, Path(tmp) / snap.name)
