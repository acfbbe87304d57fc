"""The method components' functions, looked up by the names in a method spec.

Like verl's ``core_algos``: each component is a small function (or, for stateful
regularisers, a small class) over tensors, registered ONCE with its parameters in
:mod:`pipeline.rl.methods` (``register(kind, name, "module:function", **params)``);
:func:`lookup` imports it where a job runs it. The trainer builds a method from its spec
and never branches on the method's name.

Shapes: every per-token tensor is ``[B, T]`` over the label positions of a padded batch;
``mask`` is 1 on response tokens (the policy's actions), 0 elsewhere.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable, Protocol

import torch
from torch import Tensor

from pipeline.rl import advantages as adv
from pipeline.rl import losses
from pipeline.rl.aer import AERController
from pipeline.rl.methods import component

# --------------------------------------------------------------------------- estimators


@dataclass
class EstimatorInput:
    scores: Tensor            # [B] outcome score per response (+1 / -1)
    mask: Tensor              # [B, T] response-token mask
    group_size: int
    values: Tensor | None     # [B, T] critic values at rollout time (GAE only)
    # Several trainer processes: element-wise sum of a list of floats over all of them, for
    # statistics of the whole batch (PPO's whitening). None: this process holds the batch.
    sum_over_processes: Callable[[list[float]], list[float]] | None = None


def grpo_estimator(inp: EstimatorInput, eps: float, scale: bool) -> tuple[Tensor, Tensor | None]:
    """Group-normalised outcome advantage broadcast to every response token (docs/methods.md §2)."""
    per_response = adv.grpo_advantages(inp.scores, inp.group_size, eps=eps, scale=scale)
    return per_response[:, None] * inp.mask, None


def gae_estimator(
    inp: EstimatorInput, gamma: float, lam: float, whiten: bool, **_critic_settings
) -> tuple[Tensor, Tensor | None]:
    """GAE on a reward placed on the last response token, whitened over the batch (docs/methods.md §2)."""
    if inp.values is None:
        raise ValueError("the gae estimator needs critic values")
    mask = inp.mask
    last = mask.shape[1] - 1 - torch.flip(mask, dims=[1]).argmax(dim=1)  # last valid column per row
    rewards = torch.zeros_like(mask, dtype=torch.float32)
    rewards[torch.arange(mask.shape[0]), last] = inp.scores.float()
    advantages, returns = adv.gae(rewards, inp.values, mask, gamma, lam)
    if whiten:
        advantages = adv.masked_whiten(advantages, mask, sum_over_processes=inp.sum_over_processes)
    return advantages, returns



# --------------------------------------------------------------------------- shaping


def no_shaping(advantages: Tensor, entropy: Tensor) -> Tensor:
    return advantages


def entropy_advantage(advantages: Tensor, entropy: Tensor, alpha: float, kappa: float) -> Tensor:
    """Cheng et al.: A + min(alpha * H.detach(), |A| / kappa), on a fresh tensor every mini-batch."""
    return adv.entropy_shaped(advantages, entropy, alpha, kappa)



# --------------------------------------------------------------------------- policy losses


def clip_loss(logp, old_logp, advantages, mask, *, clip_low, clip_high, dual_clip, aggregation, norm_length, selected=None):
    return losses.clipped_surrogate(
        logp, old_logp, advantages, mask, clip_low=clip_low, clip_high=clip_high,
        dual_clip=dual_clip, agg=aggregation, norm_length=norm_length,
    )


def clip_cov_loss(
    logp, old_logp, advantages, mask, *, clip_low, clip_high, aggregation, select_ratio, cov_low, cov_high,
    norm_length, selected,
):
    return losses.clip_cov_loss(
        logp, old_logp, advantages, mask, clip_low=clip_low, clip_high=clip_high, select_ratio=select_ratio,
        cov_low=cov_low, cov_high=cov_high, agg=aggregation, norm_length=norm_length, selected=selected,
    )


def kl_cov_loss(logp, old_logp, advantages, mask, *, aggregation, select_ratio, kl_coef, norm_length, selected):
    return losses.kl_cov_loss(
        logp, old_logp, advantages, mask, select_ratio=select_ratio, kl_coef=kl_coef,
        agg=aggregation, norm_length=norm_length, selected=selected,
    )




# Losses that act on a few tokens chosen over the WHOLE mini-batch (Cui et al.'s token
# covariance): before its micro-batches the trainer makes the choice with these, over 1-D
# valid tokens of the mini-batch (and of every process, through ``world``), and passes it
# to the loss as ``selected``.
def clip_cov_select(logp, old_logp, advantages, keys, *, clip_low, clip_high, select_ratio, cov_low, cov_high,
                    generator, world, **_):
    return losses.clip_cov_selection(
        logp, old_logp, advantages, keys, clip_low=clip_low, clip_high=clip_high, select_ratio=select_ratio,
        cov_low=cov_low, cov_high=cov_high, generator=generator, world=world,
    )


def kl_cov_select(logp, old_logp, advantages, keys, *, select_ratio, generator, world, **_):
    return losses.kl_cov_selection(logp, advantages, keys, select_ratio=select_ratio, world=world)



# --------------------------------------------------------------------------- regularizers


class Regularizer(Protocol):
    def begin_rollout(self, group_accuracy: Tensor, group_size: int, rollout_entropy: float | None = None) -> dict[str, float]: ...
    def term(self, entropy: Tensor, mask: Tensor, rows: Tensor, aggregation: str, norm_length: int | None) -> Tensor: ...
    def end_rollout(self, mean_entropy: float) -> dict[str, float]: ...
    def stats(self) -> dict[str, float | None]: ...
    def state_dict(self) -> dict: ...
    def load_state_dict(self, state: dict) -> None: ...


class NoRegularizer:
    def begin_rollout(self, group_accuracy, group_size, rollout_entropy=None):
        return {}

    def term(self, entropy, mask, rows, aggregation, norm_length):
        return entropy.new_zeros(())

    def end_rollout(self, mean_entropy):
        return {}

    def stats(self):
        return {}

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


class EntropyBonus(NoRegularizer):
    """Fixed-coefficient entropy regularisation (docs/methods.md §5): loss = pg - coef * agg(H)."""

    def __init__(self, coef: float):
        self.coef = coef

    def term(self, entropy, mask, rows, aggregation, norm_length):
        return self.coef * losses.entropy_bonus(entropy, mask, aggregation, norm_length=norm_length)


class AdaptiveEntropy(NoRegularizer):
    """AER (docs/methods.md §6): loss = pg - alpha_t * agg(lambda(q) * H); alpha_t from the controller."""

    def __init__(self, **controller_kwargs):
        self.controller = AERController(**controller_kwargs)
        self.response_weights: Tensor | None = None  # lambda(q) of each response of the rollout

    def begin_rollout(self, group_accuracy, group_size, rollout_entropy=None):
        """Before a rollout's updates: the controller observes the rollout's own mean entropy
        (measured under the rollout policy) and sets the alpha these updates use, so alpha
        responds to the entropy it acts on. (Observing after the updates, for the next
        rollout, lags one rollout: a pure integral loop then oscillates with growing
        amplitude, as the toy showed: alpha 0.40, entropy 0.25, accuracy collapsed.)
        ``rollout_entropy=None`` (a rollout resumed mid-way) only recomputes lambda(q)."""
        if rollout_entropy is not None:
            self.controller.observe(rollout_entropy)
        lam = self.controller.allocate(group_accuracy)
        self.response_weights = lam.repeat_interleave(group_size)
        return {"aer_lambda_mean": float(lam.mean()), "aer_lambda_frac": float((lam > 0).float().mean())}

    def term(self, entropy, mask, rows, aggregation, norm_length):
        # lambda(q) lives with the rollout on the CPU; the entropy on the model's device
        weights = self.response_weights[rows.cpu()].to(device=entropy.device, dtype=entropy.dtype)[:, None]
        bonus = losses.entropy_bonus(entropy, mask, aggregation, weights=weights.expand_as(entropy), norm_length=norm_length)
        return self.controller.alpha * bonus

    def end_rollout(self, mean_entropy):
        return self.controller.stats()

    def stats(self):
        """The coefficient in force for the current step, H_0 and the target H*."""
        return self.controller.stats()

    def state_dict(self):
        return self.controller.state_dict()

    def load_state_dict(self, state):
        self.controller.load_state_dict(state)




def params_of(component: dict) -> dict:
    """A component's parameters without its name."""
    return {k: v for k, v in component.items() if k != "name"}


def _resolve(target, where: str):
    if not isinstance(target, str):
        return target
    module, _, name = target.partition(":")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"{where}: cannot import {target!r} ({err})") from None


def lookup(kind: str, name: str):
    """The function (or regularizer class) registered as ``kind`` ``name``; KeyError listing
    the known names of that kind."""
    return _resolve(component(kind, name).function, f"{kind} {name!r}")


def token_selection(loss_name: str):
    """The whole-mini-batch token choice of a Clip-Cov / KL-Cov loss, or None."""
    select = component("loss", loss_name).select
    return None if select is None else _resolve(select, f"loss {loss_name!r} selection")
