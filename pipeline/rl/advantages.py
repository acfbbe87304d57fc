"""Advantage estimators and the entropy-based advantage shaping of Cheng et al.

Small pure functions over tensors (in the style of verl's ``core_algos.py``):

* :func:`grpo_advantages` - group-normalised outcome advantage (docs/methods.md §2).
* :func:`gae` - generalised advantage estimation for PPO (docs/methods.md §2), before whitening.
* :func:`masked_mean` / :func:`masked_var` / :func:`masked_whiten` - batch statistics
  over valid (response) tokens only.
* :func:`entropy_shaped` / :func:`shaping_ratio` - the one-line method of Cheng et al.
  (docs/methods.md §3) and its "self-regulation" diagnostic (their Fig. 7).

Masks are 1 (or True) on response tokens and 0 on prompt/padding tokens. Values at
masked positions are never read (``torch.where`` rather than multiplication, so that
garbage such as ``nan`` in padding cannot leak into the result).
"""

from __future__ import annotations

from typing import Callable


import torch
from torch import Tensor

from pipeline.rl.methods import check_params

__all__ = [
    "entropy_shaped",
    "gae",
    "grpo_advantages",
    "masked_mean",
    "masked_var",
    "masked_whiten",
    "shaping_ratio",
]


def _float(x: Tensor) -> Tensor:
    """Integer/bool/half inputs computed in (at least) float32; float64 stays float64."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def grpo_advantages(scores: Tensor, group_size: int, eps: float = 1e-6, scale: bool = True) -> Tensor:
    """GRPO outcome advantage per response: ``(s_i - mean(s)) / (std(s) + eps)`` within each group.

    Args:
        scores: ``[B]`` one scalar score per response; the ``group_size`` responses of a
            prompt are contiguous (``B = n_prompts * group_size``).
        group_size: responses per prompt, G >= 2 (the unbiased std needs two samples).
        eps: added to the std, as in the papers (1e-6).
        scale: ``False`` returns the un-scaled ``s_i - mean(s)`` (Dr.GRPO).

    Returns:
        ``[B]`` float advantages, to be broadcast to every token of response i.

    The std is the UNBIASED one (Bessel's correction, ``torch.std`` default), as both
    papers' GRPO implementations use. A group whose scores are all equal carries no
    learning signal and gets exactly 0: this is enforced explicitly, because
    ``s - mean(s)`` need not be exactly 0 in floating point (e.g. three times 0.1).
    """
    if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 2:
        raise ValueError(
            f"group_size must be an int >= 2 (the unbiased std of a group of one response is undefined), "
            f"got {group_size!r}"
        )
    if scores.dim() != 1:
        raise ValueError(f"scores must be 1-D [B], got shape {tuple(scores.shape)}")
    n = scores.shape[0]
    if n % group_size != 0:
        raise ValueError(f"number of scores B={n} is not a multiple of group_size={group_size}")
    s = _float(scores).reshape(-1, group_size)
    centred = s - s.mean(dim=1, keepdim=True)
    adv = centred / (s.std(dim=1, unbiased=True, keepdim=True) + eps) if scale else centred
    all_equal = (s == s[:, :1]).all(dim=1, keepdim=True)
    adv = torch.where(all_equal, torch.zeros_like(adv), adv)
    return adv.reshape(n)


def gae(
    rewards: Tensor, values: Tensor, mask: Tensor, gamma: float, lam: float
) -> tuple[Tensor, Tensor]:
    """Generalised advantage estimation over the valid tokens of each row (docs/methods.md §2).

    ``delta_t = r_t + gamma * V_{t+1} - V_t``, ``A_t = delta_t + gamma * lam * A_{t+1}``,
    ``returns = A + V``; computed backwards over T, vectorised over B.

    Args:
        rewards, values, mask: ``[B, T]``. ``mask`` is 1 on response tokens. The
            response need not start at column 0 (a left offset is fine).

    Returns:
        ``(advantages, returns)``, both ``[B, T]``, NOT whitened, 0 where ``mask == 0``.

    Masked positions are skipped, not treated as time steps: the recursion carries
    ``V_{t+1}`` and ``A_{t+1}`` from the next *valid* token. Hence the last valid token
    bootstraps from ``V = 0`` (episode end), right padding is ignored, and for the
    contiguous masks the pipeline produces this is exactly the textbook recursion.
    Advantages and returns are training targets: no gradient flows through them.
    """
    if not (rewards.shape == values.shape == mask.shape) or rewards.dim() != 2:
        raise ValueError(
            f"rewards, values and mask must share one [B, T] shape, got "
            f"{tuple(rewards.shape)}, {tuple(values.shape)}, {tuple(mask.shape)}"
        )
    with torch.no_grad():
        dtype = torch.promote_types(_float(rewards).dtype, _float(values).dtype)
        r = rewards.to(dtype)
        v = values.to(dtype)
        valid = mask.bool()
        b, t_len = r.shape
        next_value = r.new_zeros(b)
        next_adv = r.new_zeros(b)
        adv = r.new_zeros(b, t_len)
        for t in range(t_len - 1, -1, -1):
            m = valid[:, t]
            delta = r[:, t] + gamma * next_value - v[:, t]
            a_t = delta + gamma * lam * next_adv
            # Only valid tokens advance the recursion; padding keeps the carry.
            next_adv = torch.where(m, a_t, next_adv)
            next_value = torch.where(m, v[:, t], next_value)
            adv[:, t] = torch.where(m, a_t, torch.zeros_like(a_t))
        returns = torch.where(valid, adv + v, torch.zeros_like(adv))
    return adv, returns


def masked_mean(x: Tensor, mask: Tensor, dim: int | tuple[int, ...] | None = None) -> Tensor:
    """Mean of ``x`` over positions where ``mask`` is set (along ``dim``, or over all).

    A reduction with no valid element is ``0/0 = nan``: a mean of nothing is undefined,
    and a nan makes an upstream bug visible instead of hiding it behind a fake 0.
    """
    valid = mask.bool().expand_as(x) if mask.shape != x.shape else mask.bool()
    xf = _float(x)
    total = torch.where(valid, xf, torch.zeros_like(xf))
    if dim is None:
        return total.sum() / valid.sum()
    return total.sum(dim=dim) / valid.sum(dim=dim)


def masked_var(x: Tensor, mask: Tensor, unbiased: bool = True) -> Tensor:
    """Variance of ``x`` over all valid positions (Bessel-corrected when ``unbiased``).

    Raises ValueError when there are too few valid positions for the estimate
    (0, or 1 with ``unbiased=True``) rather than returning a silent nan/inf.
    """
    count = int(mask.bool().sum().item())
    if count == 0 or (unbiased and count == 1):
        raise ValueError(
            f"masked_var needs at least {2 if unbiased else 1} valid position(s), the mask has {count}"
        )
    mean = masked_mean(x, mask)
    var = masked_mean((_float(x) - mean) ** 2, mask)
    if unbiased:
        var = var * (count / (count - 1))
    return var


def masked_whiten(
    x: Tensor, mask: Tensor, shift_mean: bool = True, eps: float = 1e-8,
    sum_over_processes: Callable[[list[float]], list[float]] | None = None,
) -> Tensor:
    """Standardise ``x`` with the mean and unbiased variance of its valid positions.

    ``(x - mean) / sqrt(var + eps)``; with ``shift_mean=False`` the mean is added back
    (only the scale changes). Masked positions are 0 in the output. Used for PPO's
    batch-whitened GAE advantages (Cheng et al. use verl's PPO, which whitens over the
    whole batch). With several trainer processes, each holding part of the batch,
    ``sum_over_processes`` (element-wise sum of a list of floats over every process) makes
    the mean and variance those of the whole batch, as one process would compute them.
    """
    if sum_over_processes is None:
        mean = masked_mean(x, mask)
        var = masked_var(x, mask, unbiased=True)
    else:
        valid, xf = mask.bool(), _float(x)
        total, count = sum_over_processes([float(torch.where(valid, xf, 0.0).sum()), float(valid.sum())])
        if count < 2:
            raise ValueError(f"masked_whiten needs at least 2 valid positions over all processes, got {int(count)}")
        mean = total / count
        (squares,) = sum_over_processes([float(torch.where(valid, (xf - mean) ** 2, 0.0).sum())])
        var = torch.tensor(squares / (count - 1), dtype=xf.dtype)
    whitened = (_float(x) - mean) * torch.rsqrt(var + eps)
    if not shift_mean:
        whitened = whitened + mean
    return torch.where(mask.bool(), whitened, torch.zeros_like(whitened))


def entropy_shaped(advantages: Tensor, entropy: Tensor, alpha: float, kappa: float) -> Tensor:
    """Cheng et al.'s entropy-based advantage: ``A + min(alpha * H.detach(), |A| / kappa)``.

    Args:
        advantages: per-token advantages (GRPO after group normalisation, PPO after
            whitening). Not modified.
        entropy: per-token entropy of the CURRENT policy (same shape), nats. Detached
            here: the term changes the update's size, it adds no entropy gradient.
        alpha: entropy weight (0.4 for GRPO, 0.1 for PPO), >= 0.
        kappa: clip ratio (2 in the paper), >= 1.

    Returns:
        a NEW tensor (inputs are never modified in place, so re-shaping the same
        advantages in every epoch of a rollout cannot compound).

    Guarantees: ``psi = shaped - A`` lies in ``[0, |A| / kappa]``, so A = 0 stays 0
    and, because ``kappa >= 1``, ``A + psi`` never changes sign (with kappa < 1 a
    negative advantage could be flipped positive, which is why kappa < 1 is rejected).
    A negative entropy can only come from rounding; psi is clamped at 0 for it.
    """
    # the ranges config validation applies too (their one registration in pipeline.rl.methods)
    check_params("shaping", "entropy_advantage", {"alpha": alpha, "kappa": kappa})
    if advantages.shape != entropy.shape:
        raise ValueError(
            f"advantages shape {tuple(advantages.shape)} != entropy shape {tuple(entropy.shape)}"
        )
    bonus = alpha * entropy.detach().to(advantages.dtype)
    psi = torch.minimum(bonus, advantages.abs() / kappa).clamp(min=0.0)
    return advantages + psi


def shaping_ratio(advantages: Tensor, shaped: Tensor, mask: Tensor) -> float:
    """Mean of ``psi / |A| = (shaped - A) / |A|`` over valid tokens with ``A != 0``.

    The paper's Fig. 7 "self-regulation" curve: it is ``1/kappa`` where the cap binds
    and falls as entropy (hence ``alpha * H``) shrinks. ``nan`` when no token qualifies.
    """
    a = _float(advantages.detach())
    s = _float(shaped.detach())
    sel = mask.bool() & (a != 0)
    if not bool(sel.any()):
        return float("nan")
    return float(((s[sel] - a[sel]) / a[sel].abs()).mean().item())
