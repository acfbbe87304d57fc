"""One rollout: sample ``group_size`` responses per prompt, grade them, and hold the tensors.

:func:`sample_rollout` is the trainer's one entry point for rollout collection, whichever
engine samples (the HF sampler over the policy itself, or a colocated vLLM engine: both
expose ``generate_ids`` and ``stop_ids``). The prompts of rollout ``r`` are a seeded draw
from the training set, epoch by epoch, so a resumed run samples exactly what an
uninterrupted one would; with ``W`` processes, process ``k`` samples prompts ``k, k+W, ...``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from pipeline import io
from pipeline.eval.grading import GraderPool
from pipeline.sampling.base import SamplingParams


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



def trimmed(rollout: Rollout, rows: torch.Tensor):
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



@dataclass
class SampledRollout:
    rollout: Rollout
    grading_failures: dict[str, int]  # grader timeouts and errors (counted as wrong)
    eos_actions: int                  # EOS tokens among the sampled actions (one per finished response)
    finished: int                     # responses that ended with EOS (the rest were truncated)
    sample_seconds: float
    # training.old_log_probs = rollout: the sampler's log-probs and entropies of the sampled
    # tokens, [N, L-1] aligned with ``rollout.mask`` (zero elsewhere); None: recomputed
    sampled_logp: torch.Tensor | None = None
    sampled_entropy: torch.Tensor | None = None


def sampled_logprobs(prompt_completions, rollout: Rollout) -> tuple[torch.Tensor, torch.Tensor]:
    """The sampler's per-token log-probs and entropies as [N, L-1] tensors on the label
    positions of ``rollout.mask`` (label position t predicts token t+1), zero elsewhere."""
    logp, entropy = torch.zeros_like(rollout.mask), torch.zeros_like(rollout.mask)
    i = 0
    for pc in prompt_completions:
        start = len(pc.prompt_ids) - 1
        for c in pc.completions:
            if c.logprobs is None or len(c.logprobs) != len(c.sampled_ids):
                raise ValueError("the sampler returned no log-prob per sampled token (SamplingParams.logprobs)")
            n = len(c.logprobs)
            logp[i, start : start + n] = torch.tensor(c.logprobs)
            entropy[i, start : start + n] = torch.tensor(c.entropies)
            i += 1
    return logp, entropy


def rollout_prompts(seed: int, r: int, n_prompts: int, n_problems: int, rank: int, world: int) -> list[int]:
    """Indices of the training problems this process samples in rollout ``r``: the run walks
    through seeded permutations of the training set, one per epoch."""
    epoch, offset = divmod(r * n_prompts, n_problems)
    order = torch.randperm(n_problems, generator=torch.Generator().manual_seed(io.stable_seed(seed, "epoch", epoch)))
    return [int(order[(offset + j) % n_problems]) for j in range(n_prompts)][rank::world]


def sample_rollout(engine, graders: GraderPool, prompt_ids: list[list[int]], answers: list[str], *, seed: int, r: int,
                   cfg: dict, rank: int, world: int, pad_id: int, clock: float) -> SampledRollout:
    """Sample and grade rollout ``r`` (changes no training state: SIGTERM may interrupt it)."""
    idx = rollout_prompts(seed, r, cfg["prompts_per_rollout"], len(prompt_ids), rank, world)
    sample_seed = io.stable_seed(seed, "rollout", r) if world == 1 else io.stable_seed(seed, "rollout", r, "rank", rank)
    from_sampler = cfg["old_log_probs"] == "rollout"
    params = SamplingParams(n=cfg["group_size"], temperature=cfg["temperature"], top_p=cfg["top_p"],
                            max_new_tokens=cfg["max_new_tokens"], seed=sample_seed, logprobs=from_sampler)
    outs = engine.generate_ids([prompt_ids[i] for i in idx], params)
    sample_seconds = time.perf_counter() - clock
    correct, failures = grade_rollout(outs, [answers[i] for i in idx], graders)
    # each finished response's actions end with exactly one EOS (logged: a doubled EOS, as
    # vLLM's outputs once gave, shows as eos_per_response > finished)
    stop_ids = set(engine.stop_ids)
    rollout = build_rollout(outs, correct, cfg["group_size"], pad_id)
    logp, entropy = sampled_logprobs(outs, rollout) if from_sampler else (None, None)
    return SampledRollout(
        rollout=rollout, grading_failures=failures, sampled_logp=logp, sampled_entropy=entropy,
        eos_actions=sum(t in stop_ids for pc in outs for c in pc.completions for t in c.sampled_ids),
        finished=sum(c.finish_reason == "stop" for pc in outs for c in pc.completions), sample_seconds=sample_seconds,
    )
