"""Full-vocabulary token entropy and log-probabilities, computed in chunks.

Both papers need the per-token entropy of the *current* policy on every training
forward pass (Cheng et al. shape the advantage with it, AER and the fixed-coefficient
baseline regularise it). At real scale the logits tensor is the largest object in
memory (4,096 positions x 151,936 vocabulary entries in float32 = 2.49 GB), so the
naive ``softmax(z) * z`` would materialise one or two more copies of it. Here every
V-sized temporary lives only for one chunk of positions:

* the logits are walked as views (never copied) of at most ``chunk_size`` positions;
* each chunk is upcast to float32 on its own, so bf16 logits never get a float32 twin;
* when autograd records the computation, each chunk runs under non-reentrant
  activation checkpointing, so the backward pass keeps only the chunk *views* (which
  share the logits' storage) and recomputes the chunk's softmax when it needs it,
  instead of holding a float32 softmax for every position at once.

Formulas (nats), with ``lse = logsumexp(z)`` and ``p = softmax(z) = exp(z - lse)``::

    H(z)        = lse - sum_v p_v * z_v
    log pi(y|z) = z_y - lse

The logits must be finite: a ``-inf`` logit gives ``0 * -inf = nan`` in ``sum p*z``,
exactly as in verl's ``entropy_from_logits``. Model heads produce finite logits.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "logprobs_and_entropy",
    "logprobs_from_logits",
    "token_entropy",
]

# Positions per chunk recommended for large vocabularies: 256 x 151,936 float32
# entries is 156 MB per V-sized temporary, ~6% of a 4,096-position logits tensor
# (see benchmarks/entropy_memory.py). Small vocabularies can use None (no chunking).
DEFAULT_CHUNK_SIZE = 256


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """float32 for half/bfloat16/float32 logits, float64 stays float64 (gradcheck)."""
    return torch.promote_types(dtype, torch.float32)


def _row_blocks(x: Tensor, chunk_size: int) -> Iterator[Tensor]:
    """Yield ``(n, V)`` views of ``x[..., V]`` in row-major position order, n <= chunk_size.

    Never copies: when the leading dimensions cannot be flattened into a view (e.g.
    ``logits[:, :-1]`` of a ``[B, T, V]`` tensor), recurse over the first dimension
    with ``unbind`` instead of letting ``reshape`` silently copy the whole tensor.
    ``split``/``unbind`` are single multi-output autograd nodes whose backward builds
    the input gradient with one ``cat``/``stack``; slicing chunk by chunk would instead
    allocate a full-size zero gradient per chunk during backward.
    """
    if x.dim() <= 2:
        flat = x.reshape(-1, x.shape[-1])  # a view for any 1-D/2-D strides
        yield from flat.split(chunk_size, dim=0)
        return
    try:
        flat = x.view(-1, x.shape[-1])
    except RuntimeError:
        for sub in x.unbind(0):
            yield from _row_blocks(sub, chunk_size)
        return
    yield from flat.split(chunk_size, dim=0)


def _check_chunk_size(chunk_size: int | None) -> None:
    if chunk_size is not None and (isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1):
        raise ValueError(f"chunk_size must be a positive int or None, got {chunk_size!r}")


def _lse_and_entropy(z: Tensor) -> tuple[Tensor, Tensor]:
    """Per-row logsumexp and entropy of a ``(n, V)`` block (already in compute dtype).

    Extra memory: logsumexp's internal temporaries, then ``p`` and (only when autograd
    records) ``p * z``. ``p`` is built by an in-place ``exp_`` on ``z - lse`` (exp saves
    its output for backward, so that in-place op is autograd-safe). Without autograd
    the product is taken in place in ``p`` as well, so inference uses one V-sized
    temporary per chunk. (A batched mat-vec ``p @ z`` would avoid the product
    temporary too, but torch's CPU bmm accumulates this shape so inexactly, ~1e-3 at
    V = 19k, that it is not used; ``sum`` uses cascade summation.)
    """
    lse = torch.logsumexp(z, dim=-1)
    p = (z - lse.unsqueeze(-1)).exp_()
    if torch.is_grad_enabled() and z.requires_grad:
        expected_z = (p * z).sum(dim=-1)
    else:
        expected_z = p.mul_(z).sum(dim=-1)
    return lse, lse - expected_z


def _entropy_block(block: Tensor) -> Tensor:
    z = block.to(_compute_dtype(block.dtype))
    return _lse_and_entropy(z)[1]


def _logprob_block(block: Tensor, labels: Tensor) -> Tensor:
    z = block.to(_compute_dtype(block.dtype))
    lse = torch.logsumexp(z, dim=-1)
    return z.gather(-1, labels.unsqueeze(-1)).squeeze(-1) - lse


def _logprob_entropy_block(block: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    z = block.to(_compute_dtype(block.dtype))
    lse, ent = _lse_and_entropy(z)
    logp = z.gather(-1, labels.unsqueeze(-1)).squeeze(-1) - lse
    return logp, ent


def _map_chunks(
    fn: Callable[..., Tensor | tuple[Tensor, ...]],
    logits: Tensor,
    labels: Tensor | None,
    chunk_size: int | None,
    n_out: int,
) -> list[Tensor]:
    """Apply ``fn(block[, labels_block])`` chunk by chunk; return ``n_out`` tensors shaped ``logits.shape[:-1]``.

    ``chunk_size=None`` is the direct path: one block, no recomputation (the fastest
    choice for small vocabularies such as the toy world's).
    """
    _check_chunk_size(chunk_size)
    if logits.dim() < 1:
        raise ValueError("logits must have a vocabulary dimension (shape [..., V])")
    out_shape = logits.shape[:-1]
    if labels is not None:
        if labels.shape != out_shape:
            raise ValueError(f"labels shape {tuple(labels.shape)} != logits.shape[:-1] {tuple(out_shape)}")
        if labels.dtype != torch.long:
            labels = labels.long()
        flat_labels = labels.reshape(-1)  # small: one int per position

    def call(block: Tensor, start: int, use_checkpoint: bool) -> tuple[Tensor, ...]:
        args = (block,) if labels is None else (block, flat_labels[start : start + block.shape[0]])
        res = checkpoint(fn, *args, use_reentrant=False) if use_checkpoint else fn(*args)
        return res if isinstance(res, tuple) else (res,)

    if chunk_size is None:
        res = call(logits.reshape(-1, logits.shape[-1]), 0, use_checkpoint=False)
        return [r.reshape(out_shape) for r in res]

    # Checkpoint only when autograd would otherwise save per-chunk V-sized tensors.
    use_checkpoint = torch.is_grad_enabled() and logits.requires_grad
    pieces: list[list[Tensor]] = [[] for _ in range(n_out)]
    start = 0
    for block in _row_blocks(logits, chunk_size):
        for i, r in enumerate(call(block, start, use_checkpoint)):
            pieces[i].append(r)
        start += block.shape[0]
    if start == 0:  # no positions at all
        dtype = _compute_dtype(logits.dtype)
        return [logits.new_empty(out_shape, dtype=dtype) for _ in range(n_out)]
    return [torch.cat(p).reshape(out_shape) for p in pieces]


def token_entropy(logits: Tensor, chunk_size: int | None = None) -> Tensor:
    """Per-position entropy (nats) of ``softmax(logits)`` over the full vocabulary.

    Args:
        logits: ``[..., V]`` float tensor (bf16/fp16/fp32/fp64), finite.
        chunk_size: positions per chunk (flattened over the leading dims); ``None``
            computes everything at once.

    Returns:
        ``[...]`` tensor in float32 (float64 for float64 logits). Differentiable: when
        chunked and autograd is recording, chunks are recomputed in backward
        (activation checkpointing) instead of keeping their softmax alive.
    """
    return _map_chunks(_entropy_block, logits, None, chunk_size, 1)[0]


def logprobs_from_logits(logits: Tensor, labels: Tensor, chunk_size: int | None = None) -> Tensor:
    """``log pi(label) = z[label] - logsumexp(z)`` per position, chunked like :func:`token_entropy`.

    Args:
        logits: ``[..., V]``; labels: ``[...]`` integer token ids.
    """
    return _map_chunks(_logprob_block, logits, labels, chunk_size, 1)[0]


def logprobs_and_entropy(
    logits: Tensor, labels: Tensor, chunk_size: int | None = None
) -> tuple[Tensor, Tensor]:
    """Log-probabilities of ``labels`` and entropies from ONE pass over the logits.

    The trainer calls this on every forward pass: each chunk's logsumexp is computed
    once and shared by both outputs, so the vocabulary is traversed (and, under
    checkpointing, recomputed) once rather than twice.

    Returns:
        ``(logp, entropy)``, both shaped ``logits.shape[:-1]``.
    """
    logp, ent = _map_chunks(_logprob_entropy_block, logits, labels, chunk_size, 2)
    return logp, ent
