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
6. the regularizer sees the step's mean entropy (AER adapts its coefficient).

The method is data (:mod:`pipeline.rl.methods`); every component comes from
:mod:`pipeline.rl.registry`. Every random draw is seeded from (seed, rollout index), so a
run resumed from a checkpoint continues exactly as an uninterrupted one would.
"""

from __future__ import annotations

import argparse
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

from pipeline import io
from pipeline.data.schema import read_problems
from pipeline.errors import PipelineError
from pipeline.eval.grading import grade
from pipeline.models import load_model_and_tokenizer, save_model_atomically
from pipeline.prompts import render_prompts
from pipeline.rl import registry
from pipeline.rl.advantages import masked_mean, shaping_ratio
from pipeline.rl.entropy import logprobs_and_entropy
from pipeline.rl.losses import explained_variance, value_loss
from pipeline.sampling.base import SamplingParams
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


def build_rollout(prompt_completions, answers, group_size, eos_id, pad_id, grader) -> Rollout:
    sequences, starts, scores, lengths = [], [], [], []
    for pc, answer in zip(prompt_completions, answers):
        for c in pc.completions:
            response = c.token_ids + ([eos_id] if c.finish_reason == "stop" else [])
            sequences.append(pc.prompt_ids + response)
            starts.append(len(pc.prompt_ids))
            correct = c.finish_reason == "stop" and grade(c.text, answer, grader)
            scores.append(1.0 if correct else -1.0)
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


def policy_logp_entropy(model, input_ids, attention, chunk_size):
    """Log-probabilities of the next tokens and full-vocabulary entropies, from one forward pass.

    Sequences are right-padded, so causal attention alone is exact for every real token
    (padding only ever follows them): no padding mask is passed, which lets SDPA use its
    fused causal kernel instead of materialising a [B, 1, L, L] mask.
    """
    logits = model(input_ids=input_ids).logits[:, :-1]
    return logprobs_and_entropy(logits, input_ids[:, 1:], chunk_size)


class ValueModel(nn.Module):
    """PPO critic: the policy's architecture (initialised from the base model) with a scalar head."""

    def __init__(self, base_dir: str):
        super().__init__()
        from transformers import AutoModel

        self.backbone = AutoModel.from_pretrained(base_dir)
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


def _finite(name: str, value: torch.Tensor | float, where: str) -> None:
    v = float(value.detach()) if isinstance(value, torch.Tensor) else float(value)
    if not math.isfinite(v):
        raise PipelineError(f"non-finite {name} ({v}) at {where}; stopping (the last checkpoint is kept)")


# --------------------------------------------------------------------------- checkpoints


def save_checkpoint(ckpt_dir: Path, rollout_idx: int, state: dict, keep: int) -> None:
    """Atomically write checkpoint ``step-<rollout>``: a temp dir, fsync, then rename."""
    final = ckpt_dir / f"step-{rollout_idx:06d}"
    tmp = ckpt_dir / f".tmp-step-{rollout_idx:06d}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    with io.atomic_path(tmp / "state.pt") as path:
        torch.save(state, path)
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)
    for old in sorted(ckpt_dir.glob("step-*"))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def load_latest_checkpoint(ckpt_dir: Path) -> dict | None:
    """The newest readable checkpoint; a corrupt one is skipped in favour of the previous one."""
    for candidate in sorted(ckpt_dir.glob("step-*"), reverse=True):
        try:
            return torch.load(candidate / "state.pt", weights_only=False)
        except Exception as err:  # a truncated or corrupt file: fall back to the previous one
            log.warning("skipping unreadable checkpoint %s (%s)", candidate, err)
    return None


# --------------------------------------------------------------------------- the loop


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--base-model", required=True, help="model directory to start from")
    parser.add_argument("--train-problems", required=True, help="training split Parquet")
    parser.add_argument("--method-json", required=True, help="resolved method spec incl. its training settings")
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--template", required=True)
    parser.add_argument("--chat-template", action="store_true", help="wrap prompts in the tokenizer's chat template")
    parser.add_argument("--grader", default="answer_line")
    parser.add_argument("--out-model", required=True, help="directory for the trained model")
    parser.add_argument("--metrics", required=True, help="metrics JSONL (one record per policy update)")
    parser.add_argument("--checkpoint-dir", required=True, help="where periodic checkpoints live (resume source)")
    parser.add_argument("--checkpoint-every", type=int, default=10, help="rollouts between checkpoints")
    parser.add_argument("--keep-checkpoints", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    torch.set_num_threads(args.threads)
    spec = json.loads(args.method_json)
    cfg = spec["training"]
    seed, G = args.seed, cfg["group_size"]
    torch.manual_seed(seed)

    policy, tokenizer = load_model_and_tokenizer(args.base_model)
    policy.train()
    optimizer = torch.optim.AdamW(policy.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    est, shp, pol, reg = spec["estimator"], spec["shaping"], spec["loss"], spec["regularizer"]
    estimator_params = registry.params_of(est)
    shaping = registry.SHAPINGS[shp["name"]]
    loss_fn = registry.POLICY_LOSSES[pol["name"]]
    loss_params = registry.params_of(pol)
    aggregation = pol["aggregation"]
    regularizer = registry.REGULARIZERS[reg["name"]](**registry.params_of(reg))
    critic = critic_opt = None
    critic_warmup = 0
    if est["name"] == "gae":
        critic = ValueModel(args.base_model)
        critic_opt = torch.optim.AdamW(critic.parameters(), lr=est["critic_lr"])
        critic_warmup = est["critic_warmup_rollouts"]
        # GAE and whitening take gamma/lam/whiten; the rest are critic settings.
        estimator_params = {k: estimator_params[k] for k in ("gamma", "lam", "whiten")}
    estimator = registry.ESTIMATORS[est["name"]]

    problems = read_problems(args.train_problems)
    n_problems = len(problems)
    sampler = HFSampler(policy, tokenizer, batch_size=4096)
    prompt_ids_all = sampler.encode(render_prompts(problems["problem"], args.template, tokenizer, args.chat_template))
    answers_all = list(problems["answer"])

    ckpt_dir = Path(args.checkpoint_dir)
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    live_metrics = ckpt_dir / "metrics.jsonl"  # survives a restart; copied to --metrics at the end
    start_rollout, update = 0, 0
    state = load_latest_checkpoint(ckpt_dir)
    if state is not None:
        policy.load_state_dict(state["policy"])
        optimizer.load_state_dict(state["optimizer"])
        regularizer.load_state_dict(state["regularizer"])
        if critic is not None:
            critic.load_state_dict(state["critic"])
            critic_opt.load_state_dict(state["critic_optimizer"])
        start_rollout, update = state["rollout"], state["update"]
        log.info("resuming from checkpoint at rollout %d (update %d)", start_rollout, update)
    # Keep exactly the records of the updates the checkpoint contains.
    kept = []
    if live_metrics.exists() and start_rollout > 0:
        kept = [line for line in live_metrics.read_text().splitlines() if line and json.loads(line)["update"] < update]
    live_metrics.write_text("".join(line + "\n" for line in kept))

    norm_length = cfg["max_new_tokens"] + 1  # Dr.GRPO's constant: the longest possible response (+EOS)
    chunk = cfg["entropy_chunk_size"]
    t_start = time.time()
    bar = tqdm(range(start_rollout, cfg["rollouts"]), desc=f"train {spec['name']} seed {seed}", disable=not args.progress)
    with open(live_metrics, "a") as metrics_fh:
        for r in bar:
            # ---- 1-2. rollout: prompts in a seeded order, epoch by epoch, then grading
            epoch, offset = divmod(r * cfg["prompts_per_rollout"], n_problems)
            order = torch.randperm(n_problems, generator=torch.Generator().manual_seed(io.stable_seed(seed, "epoch", epoch)))
            idx = [int(order[(offset + j) % n_problems]) for j in range(cfg["prompts_per_rollout"])]
            params = SamplingParams(
                n=G, temperature=cfg["temperature"], top_p=cfg["top_p"],
                max_new_tokens=cfg["max_new_tokens"], seed=io.stable_seed(seed, "rollout", r),
            )
            outs = sampler.generate_ids([prompt_ids_all[i] for i in idx], params)
            rollout = build_rollout(outs, [answers_all[i] for i in idx], G, tokenizer.eos_token_id, tokenizer.pad_token_id, args.grader)

            # ---- 3. rollout policy's log-probs (and critic values), no grad
            with torch.no_grad():
                old_logp, old_entropy = policy_logp_entropy(policy, rollout.input_ids, rollout.attention, chunk)
                values = critic(rollout.input_ids, rollout.attention) * rollout.mask if critic is not None else None
            rollout_entropy = float(masked_mean(old_entropy, rollout.mask))

            # ---- 4. advantages (stored; never modified in place)
            reg_stats = regularizer.begin_rollout(rollout.group_accuracy, G)
            inp = registry.EstimatorInput(scores=rollout.scores, mask=rollout.mask, group_size=G, values=values)
            advantages, returns = estimator(inp, **estimator_params)
            _finite("advantages", advantages.abs().sum(), f"rollout {r}")

            # ---- 5. policy updates over mini-batches of whole prompt groups
            policy_on = r >= critic_warmup
            shuffle = torch.Generator().manual_seed(io.stable_seed(seed, "minibatch", r))
            selection = torch.Generator().manual_seed(io.stable_seed(seed, "token-selection", r))
            n_prompts = cfg["prompts_per_rollout"]
            for _ in range(cfg["epochs"]):
                prompt_order = torch.randperm(n_prompts, generator=shuffle)
                for start in range(0, n_prompts, cfg["minibatch_prompts"]):
                    groups = prompt_order[start : start + cfg["minibatch_prompts"]]
                    rows = (groups[:, None] * G + torch.arange(G)[None, :]).reshape(-1)
                    input_ids, attention, T = _trim(rollout, rows)
                    mask = rollout.mask[rows, :T]
                    logp, entropy = policy_logp_entropy(policy, input_ids, attention, chunk)
                    adv_mb = advantages[rows, :T]
                    shaped = shaping(adv_mb, entropy, **registry.params_of(shp))
                    pg_loss, stats = loss_fn(
                        logp, old_logp[rows, :T], shaped, mask,
                        generator=selection, norm_length=norm_length, **loss_params,
                    )
                    reg_term = regularizer.term(entropy, mask, rows, aggregation, norm_length)
                    loss = pg_loss - reg_term
                    where = f"rollout {r}, update {update}"
                    _finite("loss", loss, where)
                    record = {
                        "update": update, "rollout": r,
                        "reward": float(rollout.scores.mean()),
                        "accuracy": float((rollout.scores > 0).float().mean()),
                        "response_length": float(rollout.response_lengths.mean()),
                        "entropy": float(masked_mean(entropy.detach(), mask)),
                        "rollout_entropy": rollout_entropy,
                        "shaping_ratio": shaping_ratio(adv_mb, shaped.detach(), mask) if shp["name"] != "none" else None,
                        "pg_loss": pg_loss.item(), "reg_term": reg_term.item(), "loss": loss.item(),
                        "lr": optimizer.param_groups[0]["lr"],
                        "policy_updated": policy_on,
                        **stats, **reg_stats, **regularizer.stats(),
                    }
                    if policy_on:
                        optimizer.zero_grad(set_to_none=True)
                        loss.backward()
                        grad_norm = torch.nn.utils.clip_grad_norm_(policy.parameters(), cfg["grad_clip"])
                        _finite("grad norm", grad_norm, where)
                        optimizer.step()
                        record["grad_norm"] = float(grad_norm)
                    if critic is not None:
                        v = critic(input_ids, attention)
                        v_loss, v_stats = value_loss(
                            v * mask, values[rows, :T], returns[rows, :T], mask, clip=est["value_clip"], agg=aggregation
                        )
                        _finite("value loss", v_loss, where)
                        critic_opt.zero_grad(set_to_none=True)
                        v_loss.backward()
                        torch.nn.utils.clip_grad_norm_(critic.parameters(), cfg["grad_clip"])
                        critic_opt.step()
                        record.update(v_stats)
                        record["value_loss"] = v_loss.item()
                        record["explained_variance"] = explained_variance(v.detach(), returns[rows, :T], mask)
                    metrics_fh.write(json.dumps(record) + "\n")
                    update += 1
            metrics_fh.flush()

            # ---- 6. end of step: the regularizer observes the step's entropy (AER adapts alpha)
            regularizer.end_rollout(rollout_entropy)
            bar.set_postfix(acc=f"{record['accuracy']:.2f}", H=f"{rollout_entropy:.3f}")
            done = r + 1
            if done % args.checkpoint_every == 0 or done == cfg["rollouts"]:
                state = {
                    "rollout": done, "update": update,
                    "policy": policy.state_dict(), "optimizer": optimizer.state_dict(),
                    "regularizer": regularizer.state_dict(),
                }
                if critic is not None:
                    state.update(critic=critic.state_dict(), critic_optimizer=critic_opt.state_dict())
                save_checkpoint(ckpt_dir, done, state, args.keep_checkpoints)

    log.info("trained %s seed %d: %d updates in %.1fs", spec["name"], seed, update, time.time() - t_start)
    save_model_atomically(policy, tokenizer, args.out_model)
    io.write_text(args.metrics, live_metrics.read_text())
    return 0
