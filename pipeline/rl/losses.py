"""Policy, value and entropy losses (docs/methods.md §2, §4, §5).

Small pure functions in the style of verl's ``core_algos.py``. Every loss is first
computed per token as a ``[B, T]`` matrix, then reduced by :func:`aggregate` with the
same aggregation mode as the policy loss, so that switching modes changes one
argument and nothing else. Statistics are returned as python floats for logging.

Conventions: ``mask`` is 1 (or True) on response tokens; ``logp``/``old_logp`` are
log-probabilities of the sampled tokens under the current and the rollout policy;
``advantages`` are per token (a GRPO response advantage broadcast over its tokens).
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor

from pipeline.rl.methods import check_params

__all__ = [
    "AGGREGATIONS",
    "aggregate",
    "aggregation_units",
    "clip_cov_loss",
    "clipped_surrogate",
    "clipped_surrogate_per_token",
    "entropy_bonus",
    "explained_variance",
    "kl_cov_loss",
    "token_covariance",
    "value_loss",
]

AGGREGATIONS = ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm")

# log-ratios are clamped before exp so that one wildly off-policy token gives a
# large finite ratio instead of inf (inf * 0 = nan would poison the whole batch).
_LOG_RATIO_CLAMP = 20.0


def _check_same_shape(**tensors: Tensor) -> None:
    shapes = {name: tuple(t.shape) for name, t in tensors.items()}
    if len(set(shapes.values())) != 1:
        raise ValueError(f"shape mismatch: {shapes}")


def _masked_mean_float(x: Tensor, valid: Tensor) -> float:
    """Python-float mean over valid positions (nan when there are none), for stats."""
    n = int(valid.sum().item())
    if n == 0:
        return float("nan")
    return float(torch.where(valid, x.detach().double(), 0.0).sum().item() / n)


def _select_count(select_ratio: float, n_valid: int) -> int:
    """``max(floor(r * N_valid), 1)``.

    A 1e-9 tolerance keeps products that are integers in exact arithmetic from being
    floored one too low by binary rounding (0.29 * 100 = 28.999999999999996).
    """
    return max(math.floor(select_ratio * n_valid + 1e-9), 1)


def aggregation_units(mask: Tensor, mode: str) -> float:
    """What :func:`aggregate` divides by: valid tokens (``token-mean``), sequences with a
    valid token (``seq-mean-token-mean``) or all sequences (``seq-mean-token-sum-norm``).

    Micro-batching uses it: with ``U_m`` the units of a micro-batch and ``U`` those of its
    whole mini-batch, ``sum_m aggregate(micro_m) * U_m / U == aggregate(mini-batch)``.
    """
    if mode not in AGGREGATIONS:
        raise ValueError(f"unknown aggregation mode {mode!r}; expected one of {AGGREGATIONS}")
    valid = mask.bool()
    if mode == "token-mean":
        return float(valid.sum())
    if mode == "seq-mean-token-mean":
        return float(valid.any(dim=-1).sum())
    return float(mask.shape[0])


def aggregate(loss_mat: Tensor, mask: Tensor, mode: str, norm_length: int | None = None) -> Tensor:
    """Reduce a ``[B, T]`` per-token loss to a scalar over valid tokens.

    Modes:
        ``"token-mean"``: sum over all valid tokens / number of valid tokens of the
            whole (mini-)batch; every token weighs the same (the papers' choice).
        ``"seq-mean-token-mean"``: each sequence's mean over its valid tokens, then the
            mean over sequences that have at least one valid token.
        ``"seq-mean-token-sum-norm"``: Dr.GRPO; each sequence's token SUM divided by the
            constant ``norm_length`` (default ``T = mask.shape[-1]``), then the mean over
            all B sequences (a constant denominator is the point of Dr.GRPO, so empty
            sequences count as 0 rather than being dropped).

    A batch with no valid token gives a 0 loss that is still attached to the graph
    (no gradient), so a degenerate micro-batch contributes nothing instead of nan.
    """
    if mode not in AGGREGATIONS:
        raise ValueError(f"unknown aggregation mode {mode!r}; expected one of {AGGREGATIONS}")
    if loss_mat.dim() != 2:
        raise ValueError(f"loss_mat must be [B, T], got shape {tuple(loss_mat.shape)}")
    _check_same_shape(loss_mat=loss_mat, mask=mask)
    valid = mask.bool()
    masked = torch.where(valid, loss_mat, torch.zeros_like(loss_mat))
    if mode == "token-mean":
        return masked.sum() / valid.sum().clamp(min=1)
    if mode == "seq-mean-token-mean":
        counts = valid.sum(dim=-1)
        has_tokens = counts > 0
        seq_means = masked.sum(dim=-1) / counts.clamp(min=1)
        return torch.where(has_tokens, seq_means, torch.zeros_like(seq_means)).sum() / has_tokens.sum().clamp(min=1)
    # seq-mean-token-sum-norm
    if norm_length is None:
        norm_length = mask.shape[-1]
    if not norm_length > 0:
        raise ValueError(f"norm_length must be > 0, got {norm_length!r}")
    return (masked.sum(dim=-1) / norm_length).mean()


def clipped_surrogate_per_token(
    logp: Tensor,
    old_logp: Tensor,
    advantages: Tensor,
    clip_low: float = 0.2,
    clip_high: float = 0.28,
    dual_clip: float | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Per-token PPO clipped surrogate with asymmetric (Clip-Higher) and optional dual clip.

    ``ratio = exp(logp - old_logp)``;
    ``loss = max(-A * ratio, -A * clip(ratio, 1 - clip_low, 1 + clip_high))``; with
    ``dual_clip = c`` the loss of tokens with ``A < 0`` is further capped at ``-A * c``
    (so a huge ratio on a bad token cannot produce an unbounded update).

    Returns:
        ``(loss_mat, is_clipped, ratio)``: ``is_clipped`` is True where a clipped branch
        is the active one (the token carries no gradient): the clipped term strictly
        exceeds the unclipped one, or the dual cap binds. Clip-Cov must never pick
        these tokens. The mask is applied by the caller.
    """
    _check_same_shape(logp=logp, old_logp=old_logp, advantages=advantages)
    if clip_low < 0 or clip_high < 0:
        raise ValueError(f"clip_low and clip_high must be >= 0, got {clip_low!r}, {clip_high!r}")
    if dual_clip is not None and not dual_clip > 1.0:
        raise ValueError(f"dual_clip must be > 1 (or None), got {dual_clip!r}")
    log_ratio = (logp - old_logp).clamp(-_LOG_RATIO_CLAMP, _LOG_RATIO_CLAMP)
    ratio = torch.exp(log_ratio)
    adv = advantages.detach()
    loss_unclipped = -adv * ratio
    loss_clipped = -adv * torch.clamp(ratio, 1.0 - clip_low, 1.0 + clip_high)
    loss = torch.maximum(loss_unclipped, loss_clipped)
    is_clipped = loss_clipped > loss_unclipped
    if dual_clip is not None:
        cap = -adv * dual_clip
        dual_active = (adv < 0) & (loss > cap)
        loss = torch.where(dual_active, torch.minimum(loss, cap), loss)
        is_clipped = is_clipped | dual_active
    return loss, is_clipped, ratio


def _ratio_stats(
    logp: Tensor, old_logp: Tensor, advantages: Tensor, ratio: Tensor, valid: Tensor,
    clip_low: float | None, clip_high: float | None,
) -> dict[str, float]:
    """Clip fractions, k3 KL(pi_old || pi) and mean ratio over valid tokens."""
    with torch.no_grad():
        log_ratio = (logp - old_logp).clamp(-_LOG_RATIO_CLAMP, _LOG_RATIO_CLAMP)
        # k3 estimator (Schulman): E_old[(r - 1) - log r] with r = pi/pi_old, unbiased, >= 0.
        k3 = (ratio - 1.0) - log_ratio
        adv = advantages.detach()
        if clip_low is None:
            low = high = torch.zeros_like(valid)
        else:
            low = (adv < 0) & (ratio < 1.0 - clip_low)
            high = (adv > 0) & (ratio > 1.0 + clip_high)
        return {
            "clipfrac_low": _masked_mean_float(low.double(), valid),
            "clipfrac_high": _masked_mean_float(high.double(), valid),
            "approx_kl": _masked_mean_float(k3, valid),
            "ratio_mean": _masked_mean_float(ratio, valid),
        }


def clipped_surrogate(
    logp: Tensor,
    old_logp: Tensor,
    advantages: Tensor,
    mask: Tensor,
    clip_low: float = 0.2,
    clip_high: float = 0.28,
    dual_clip: float | None = None,
    agg: str = "token-mean",
    norm_length: int | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """GRPO/PPO policy loss (docs/methods.md §2): clipped surrogate aggregated over valid tokens.

    Returns:
        ``(loss, stats)``; stats (python floats over valid tokens): ``clipfrac_low``
        (A < 0 and ratio < 1 - clip_low), ``clipfrac_high`` (A > 0 and ratio >
        1 + clip_high), ``clipfrac_dual`` (dual cap binds), ``approx_kl`` (k3 estimate
        of KL(pi_old || pi)) and ``ratio_mean``.
    """
    loss_mat, is_clipped, ratio = clipped_surrogate_per_token(
        logp, old_logp, advantages, clip_low, clip_high, dual_clip
    )
    valid = mask.bool()
    loss = aggregate(loss_mat, mask, agg, norm_length)
    stats = _ratio_stats(logp, old_logp, advantages, ratio, valid, clip_low, clip_high)
    if dual_clip is not None:
        dual = (advantages.detach() < 0) & (ratio.detach() > dual_clip)
        stats["clipfrac_dual"] = _masked_mean_float(dual.double(), valid)
    else:
        stats["clipfrac_dual"] = 0.0
    return loss, stats


def token_covariance(advantages: Tensor, logp: Tensor, mask: Tensor) -> Tensor:
    """Per-token ``(A - mean A) * (logp - mean logp)``, means over valid tokens (Cui et al.).

    Detached (it only selects tokens); 0 at masked positions.
    """
    _check_same_shape(advantages=advantages, logp=logp, mask=mask)
    valid = mask.bool()
    dtype = torch.promote_types(torch.promote_types(advantages.dtype, logp.dtype), torch.float32)
    cov = torch.zeros(valid.shape, dtype=dtype, device=valid.device)
    cov[valid] = _centred_covariance(logp[valid], advantages[valid], SingleProcess)[0].to(dtype)
    return cov


class SingleProcess:
    """The collectives a token selection needs, for one process holding the whole batch.

    The trainer passes its :class:`pipeline.rl.distributed.Processes` instead, whose
    ``sum`` adds floats over every process and ``gather_cat`` concatenates a 1-D tensor
    over them in rank order, so a selection over several processes is the one a single
    process would make over the whole mini-batch.
    """

    @staticmethod
    def sum(values: list[float]) -> list[float]:
        return [float(v) for v in values]

    @staticmethod
    def gather_cat(t: Tensor) -> Tensor:
        return t


def _centred_covariance(logp: Tensor, advantages: Tensor, world) -> tuple[Tensor, int]:
    """Per-token ``(A - mean A)(logp - mean logp)`` over 1-D valid tokens, the means (and
    the count returned) over the whole mini-batch of every process."""
    a, lp = advantages.detach().double(), logp.detach().double()
    a_sum, lp_sum, n = world.sum([float(a.sum()), float(lp.sum()), float(a.numel())])
    n = int(n)
    if n == 0:
        return torch.zeros_like(a), 0
    return (a - a_sum / n) * (lp - lp_sum / n), n


def _canonical_order(keys: Tensor, first: Tensor | None = None) -> Tensor:
    """Indices sorting ``keys`` ascending (or by ``first`` descending, ties by key): an order
    that does not depend on micro-batching or on how prompts are split over processes."""
    order = torch.argsort(keys, stable=True)
    if first is not None:
        order = order[torch.argsort(first[order], descending=True, stable=True)]
    return order


def clip_cov_selection(
    logp: Tensor, old_logp: Tensor, advantages: Tensor, keys: Tensor, *, clip_low: float, clip_high: float,
    select_ratio: float, cov_low: float, cov_high: float, generator: torch.Generator | None = None, world=SingleProcess,
) -> Tensor:
    """Clip-Cov's choice of tokens over a whole mini-batch (Cui et al.): a bool per token.

    Inputs are 1-D over the valid tokens of this process's share of the mini-batch;
    ``keys`` give each token's place in a canonical order (global response row, then
    position), unique over processes. Candidates are tokens the PPO clip has NOT cut off
    with ``cov_low < Cov < cov_high``, Cov centred on the whole mini-batch's means;
    ``max(floor(select_ratio * N_valid), 1)`` of them (all, if fewer) are drawn uniformly
    without replacement by ``generator`` from the candidates in canonical order, so the
    choice is the same for any micro-batching and any number of processes.
    """
    _, is_clipped, _ = clipped_surrogate_per_token(logp, old_logp, advantages, clip_low, clip_high)
    cov, n_valid = _centred_covariance(logp, advantages, world)
    candidates = ~is_clipped & (cov > cov_low) & (cov < cov_high)
    all_keys = world.gather_cat(keys[candidates])
    n_select = min(_select_count(select_ratio, n_valid), all_keys.numel()) if n_valid else 0
    if n_select == 0:
        return torch.zeros_like(candidates)
    ordered = all_keys[_canonical_order(all_keys)]
    device = generator.device if generator is not None else ordered.device
    chosen = ordered[torch.randperm(ordered.numel(), generator=generator, device=device)[:n_select].to(ordered.device)]
    return candidates & torch.isin(keys, chosen)


def kl_cov_selection(
    logp: Tensor, advantages: Tensor, keys: Tensor, *, select_ratio: float, world=SingleProcess,
) -> Tensor:
    """KL-Cov's choice over a whole mini-batch: the ``max(floor(select_ratio * N_valid), 1)``
    valid tokens of largest covariance (centred on the mini-batch), ties broken by the
    canonical order of ``keys`` (see :func:`clip_cov_selection`)."""
    cov, n_valid = _centred_covariance(logp, advantages, world)
    if n_valid == 0:
        return torch.zeros(keys.shape, dtype=torch.bool, device=keys.device)
    all_cov, all_keys = world.gather_cat(cov), world.gather_cat(keys)
    k = min(_select_count(select_ratio, n_valid), n_valid)
    top = all_keys[_canonical_order(all_keys, first=all_cov)[:k]]
    return torch.isin(keys, top)


def _local_selection(select, mask: Tensor, **kwargs) -> Tensor:
    """A ``[B, T]`` selection over this batch alone (the batch is the whole mini-batch)."""
    valid = mask.bool()
    keys = torch.arange(valid.numel(), device=valid.device).view_as(valid)[valid]
    out = torch.zeros_like(valid)
    out[valid] = select(keys=keys, **kwargs)
    return out


def clip_cov_loss(
    logp: Tensor,
    old_logp: Tensor,
    advantages: Tensor,
    mask: Tensor,
    clip_low: float = 0.2,
    clip_high: float = 0.28,
    select_ratio: float = 2e-4,
    cov_low: float = 1.0,
    cov_high: float = 5.0,
    generator: torch.Generator | None = None,
    agg: str = "token-mean",
    norm_length: int | None = None,
    selected: Tensor | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """Clip-Cov (Cui et al.): the clipped surrogate with a few high-covariance tokens detached.

    ``selected`` ([B, T] bool) names the tokens, chosen over the whole mini-batch by
    :func:`clip_cov_selection` (the trainer does this before its micro-batches); without
    it the choice is made over this batch. Their per-token loss is multiplied by 0
    (verl's ``corr`` mask): they still count in the aggregation's denominator but receive
    no gradient.

    Returns:
        ``(loss, stats)``: the clip stats of :func:`clipped_surrogate` plus
        ``cov_frac`` = selected / N_valid.
    """
    check_params("loss", "clip_cov", {"select_ratio": select_ratio})
    loss_mat, is_clipped, ratio = clipped_surrogate_per_token(logp, old_logp, advantages, clip_low, clip_high)
    valid = mask.bool()
    if selected is None:
        selected = _local_selection(
            lambda keys: clip_cov_selection(
                logp[valid], old_logp[valid], advantages[valid], keys, clip_low=clip_low, clip_high=clip_high,
                select_ratio=select_ratio, cov_low=cov_low, cov_high=cov_high, generator=generator,
            ),
            mask,
        )
    selected = selected & valid
    loss = aggregate(torch.where(selected, torch.zeros_like(loss_mat), loss_mat), mask, agg, norm_length)
    stats = _ratio_stats(logp, old_logp, advantages, ratio, valid, clip_low, clip_high)
    n_valid = int(valid.sum())
    stats["cov_frac"] = int(selected.sum()) / n_valid if n_valid else float("nan")
    return loss, stats


def kl_cov_loss(
    logp: Tensor,
    old_logp: Tensor,
    advantages: Tensor,
    mask: Tensor,
    select_ratio: float = 2e-3,
    kl_coef: float = 1.0,
    agg: str = "token-mean",
    norm_length: int | None = None,
    selected: Tensor | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """KL-Cov (Cui et al.): no PPO clip; penalise the top-covariance tokens.

    Per-token loss ``-A * ratio``; for the ``selected`` tokens ([B, T] bool, chosen over
    the whole mini-batch by :func:`kl_cov_selection`, or over this batch when None)
    ``kl_coef * |logp - old_logp|`` is added. ``select_ratio`` is a fraction (2e-3 at
    7B), not a percentage as in verl's ``k_percent``.

    Returns:
        ``(loss, stats)``: ``cov_frac``, ``approx_kl``, ``ratio_mean`` and
        ``clipfrac_low = clipfrac_high = 0.0`` (nothing is clipped).
    """
    check_params("loss", "kl_cov", {"select_ratio": select_ratio})
    _check_same_shape(logp=logp, old_logp=old_logp, advantages=advantages, mask=mask)
    valid = mask.bool()
    log_ratio = (logp - old_logp).clamp(-_LOG_RATIO_CLAMP, _LOG_RATIO_CLAMP)
    ratio = torch.exp(log_ratio)
    loss_mat = -advantages.detach() * ratio
    if selected is None:
        selected = _local_selection(
            lambda keys: kl_cov_selection(logp[valid], advantages[valid], keys, select_ratio=select_ratio), mask
        )
    selected = selected & valid
    loss_mat = loss_mat + torch.where(selected, kl_coef * (logp - old_logp).abs(), torch.zeros_like(loss_mat))
    loss = aggregate(loss_mat, mask, agg, norm_length)
    stats = _ratio_stats(logp, old_logp, advantages, ratio, valid, None, None)
    n_valid = int(valid.sum())
    stats["cov_frac"] = int(selected.sum()) / n_valid if n_valid else float("nan")
    return loss, stats


def value_loss(
    values: Tensor,
    old_values: Tensor,
    returns: Tensor,
    mask: Tensor,
    clip: float | None = 0.2,
    agg: str = "token-mean",
) -> tuple[Tensor, dict[str, float]]:
    """PPO critic loss: ``0.5 * max((V - R)^2, (V_old + clamp(V - V_old, -c, c) - R)^2)``.

    The clipped branch keeps the critic from moving more than ``c`` away from its
    rollout-time prediction per update (docs/methods.md §2, assumption c = 0.2);
    ``clip=None`` gives the plain ``0.5 * (V - R)^2``.

    Returns:
        ``(loss, stats)`` with ``value_clipfrac``: fraction of valid tokens where the
        clipped branch is strictly larger (and so is the active one).
    """
    _check_same_shape(values=values, old_values=old_values, returns=returns, mask=mask)
    valid = mask.bool()
    returns = returns.detach()
    err_unclipped = (values - returns) ** 2
    if clip is None:
        loss_mat = 0.5 * err_unclipped
        clipfrac = 0.0
    else:
        if not clip > 0:
            raise ValueError(f"value clip must be > 0 or None, got {clip!r}")
        old = old_values.detach()
        v_clipped = old + torch.clamp(values - old, -clip, clip)
        err_clipped = (v_clipped - returns) ** 2
        loss_mat = 0.5 * torch.maximum(err_unclipped, err_clipped)
        clipfrac = _masked_mean_float((err_clipped > err_unclipped).double(), valid)
    return aggregate(loss_mat, mask, agg), {"value_clipfrac": clipfrac}


def explained_variance_sums(values: Tensor, returns: Tensor, mask: Tensor) -> list[float]:
    """``[n, sum R, sum R^2, sum D, sum D^2]`` over valid tokens, ``D = R - V``: sums that add
    up over micro-batches and processes (:func:`explained_variance_from_sums`)."""
    _check_same_shape(values=values, returns=returns, mask=mask)
    valid = mask.bool()
    r = returns.detach().double()[valid]
    d = r - values.detach().double()[valid]
    return [float(valid.sum()), float(r.sum()), float((r * r).sum()), float(d.sum()), float((d * d).sum())]


def explained_variance_from_sums(sums: list[float]) -> float:
    """``1 - Var(R - V) / Var(R)`` from :func:`explained_variance_sums`; ``nan`` when
    ``Var(R)`` is 0 (to float64 rounding) or there is no valid token."""
    n, r1, r2, d1, d2 = sums
    if n == 0:
        return float("nan")
    var_r = r2 / n - (r1 / n) ** 2
    if var_r <= 1e-12 * max(r2 / n, 1e-300):
        return float("nan")
    return 1.0 - (d2 / n - (d1 / n) ** 2) / var_r


def explained_variance(values: Tensor, returns: Tensor, mask: Tensor) -> float:
    """``1 - Var(R - V) / Var(R)`` over valid tokens: 1 is a perfect critic, <= 0 useless.

    ``nan`` when ``Var(R) = 0`` (or there is no valid token): the ratio is undefined.
    Both variances use the same (population) normalisation, so the ratio does not
    depend on Bessel's correction.
    """
    return explained_variance_from_sums(explained_variance_sums(values, returns, mask))


def entropy_bonus(
    entropy: Tensor,
    mask: Tensor,
    agg: str = "token-mean",
    weights: Tensor | None = None,
    norm_length: int | None = None,
) -> Tensor:
    """Aggregated (weighted) entropy, to be SUBTRACTED from the loss as a regulariser.

    ``loss = pg_loss - coef * entropy_bonus(H, mask, agg, weights)`` (docs/methods.md §5
    and §6). Unlike the shaping term of Cheng et al., the entropy keeps its gradient
    here: increasing it is the point. ``weights`` (e.g. AER's per-prompt lambda(q)
    broadcast to tokens, any shape broadcastable to ``entropy``) are constants and are
    detached. Uses the same aggregation as the policy loss.
    """
    h = entropy
    if weights is not None:
        w = weights.detach().to(device=entropy.device, dtype=entropy.dtype)
        h = entropy * w
        if h.shape != entropy.shape:
            raise ValueError(
                f"weights shape {tuple(weights.shape)} does not broadcast to entropy shape {tuple(entropy.shape)}"
            )
    return aggregate(h, mask, agg, norm_length)


# --------------------------------------------------------------------------- KL to a reference


KL_ESTIMATORS: dict[str, Callable[[Tensor, Tensor], Tensor]] = {}


def register_kl_estimator(name: str):
    def wrap(fn):
        KL_ESTIMATORS[name] = fn
        return fn

    return wrap


@register_kl_estimator("k1")
def kl_k1(logp: Tensor, ref_logp: Tensor) -> Tensor:
    """``log pi - log pi_ref`` per token ``[B, T]``: unbiased for KL(pi || pi_ref) under
    samples of pi, high variance, can be negative (Schulman's k1)."""
    return logp - ref_logp


@register_kl_estimator("k2")
def kl_k2(logp: Tensor, ref_logp: Tensor) -> Tensor:
    """``0.5 * (log pi - log pi_ref)^2`` per token ``[B, T]``: biased, low variance, >= 0 (k2)."""
    return 0.5 * (logp - ref_logp) ** 2


@register_kl_estimator("k3")
def kl_k3(logp: Tensor, ref_logp: Tensor) -> Tensor:
    """``exp(r) - r - 1`` with ``r = log pi_ref - log pi`` per token ``[B, T]``: unbiased and
    >= 0 (Schulman's k3; verl's ``low_var_kl``, GRPO's KL term). The log-ratio is clamped to
    +-20 like the importance ratios, so one token cannot overflow the loss."""
    r = (ref_logp - logp).clamp(-_LOG_RATIO_CLAMP, _LOG_RATIO_CLAMP)
    return torch.exp(r) - r - 1.0


def kl_penalty(
    logp: Tensor, ref_logp: Tensor, mask: Tensor, estimator: str = "k3", agg: str = "token-mean",
    norm_length: int | None = None,
) -> Tensor:
    """Aggregated per-token KL estimate of the policy to a frozen reference, to be ADDED to
    the loss as ``coef * kl_penalty(...)`` (verl's ``use_kl_loss``, TRL's ``beta``). ``logp``
    carries the gradient, ``ref_logp`` (computed once per rollout, no grad) does not. Same
    aggregation as the policy loss. Shapes: ``[B, T]`` each."""
    if estimator not in KL_ESTIMATORS:
        raise ValueError(f"unknown KL estimator {estimator!r}; known: {sorted(KL_ESTIMATORS)}")
    _check_same_shape(logp=logp, ref_logp=ref_logp, mask=mask)
    return aggregate(KL_ESTIMATORS[estimator](logp, ref_logp.detach()), mask, agg, norm_length)
