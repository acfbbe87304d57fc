"""Chunked full-vocabulary entropy and log-probabilities (pipeline.rl.entropy)."""

import math

import pytest
import torch

from pipeline.rl.entropy import logprobs_and_entropy, logprobs_from_logits, token_entropy


def direct_entropy(logits: torch.Tensor) -> torch.Tensor:
    z = logits.to(torch.promote_types(logits.dtype, torch.float32))
    return -(torch.softmax(z, -1) * torch.log_softmax(z, -1)).sum(-1)


def direct_logprobs(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    z = logits.to(torch.promote_types(logits.dtype, torch.float32))
    return torch.log_softmax(z, -1).gather(-1, labels.unsqueeze(-1)).squeeze(-1)


# 3 x 37 = 111 positions: 7 and 16 leave a ragged last chunk, 111 is exactly one chunk.
CHUNKS = [None, 1, 7, 16, 111, 10_000]


def test_hand_value_two_tokens():
    # p = softmax([0, ln 3]) = [1/4, 3/4]  ->  H = ln 4 - (3/4) ln 3
    logits = torch.tensor([[0.0, math.log(3.0)]])
    expected = math.log(4.0) - 0.75 * math.log(3.0)
    for cs in (None, 1):
        assert token_entropy(logits, cs).item() == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("chunk_size", CHUNKS)
def test_chunked_equals_direct(chunk_size):
    torch.manual_seed(0)
    logits = 3.0 * torch.randn(3, 37, 50)
    out = token_entropy(logits, chunk_size)
    assert out.shape == (3, 37) and out.dtype == torch.float32
    torch.testing.assert_close(out, direct_entropy(logits), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("chunk_size", [None, 5, 64])
def test_bf16_input_is_computed_in_float32(chunk_size):
    torch.manual_seed(1)
    logits = (4.0 * torch.randn(2, 30, 300)).to(torch.bfloat16)
    out = token_entropy(logits, chunk_size)
    assert out.dtype == torch.float32
    # Reference on the very same bf16 values, upcast: only fp32 rounding differs.
    torch.testing.assert_close(out, direct_entropy(logits.float()), atol=1e-5, rtol=1e-5)
    logp, ent = logprobs_and_entropy(logits, torch.zeros(2, 30, dtype=torch.long), chunk_size)
    assert logp.dtype == torch.float32 and ent.dtype == torch.float32


def test_uniform_logits_give_log_v_and_peaked_give_zero():
    v = 1000
    uniform = torch.full((4, 3, v), 2.5)
    torch.testing.assert_close(token_entropy(uniform, 5), torch.full((4, 3), math.log(v)))
    peaked = torch.zeros(6, v)
    peaked[torch.arange(6), torch.arange(6)] = 100.0
    assert token_entropy(peaked, 4).abs().max().item() < 1e-6
    assert (token_entropy(peaked, None) >= 0).all()


def test_non_contiguous_and_one_dim_inputs():
    torch.manual_seed(2)
    base = torch.randn(4, 9, 20)
    sliced = base[:, :-1]  # cannot be flattened to [N, V] without a copy
    assert not sliced.is_contiguous()
    torch.testing.assert_close(token_entropy(sliced, 5), direct_entropy(sliced))
    transposed = torch.randn(20, 6).t()  # vocabulary dim not unit-stride
    torch.testing.assert_close(token_entropy(transposed, 4), direct_entropy(transposed))
    vec = torch.randn(20)
    out = token_entropy(vec, 3)
    assert out.shape == () and out.item() == pytest.approx(direct_entropy(vec).item(), abs=1e-6)
    empty = torch.randn(0, 5, 20)
    assert token_entropy(empty, 4).shape == (0, 5)


@pytest.mark.parametrize("chunk_size", [None, 1, 4, 13, 100])
def test_entropy_gradient_matches_direct(chunk_size):
    torch.manual_seed(3)
    base = torch.randn(3, 8, 11, dtype=torch.float64)
    weights = torch.randn(3, 7, dtype=torch.float64)

    x = base.clone().requires_grad_(True)
    (token_entropy(x[:, 1:], chunk_size) * weights).sum().backward()
    y = base.clone().requires_grad_(True)
    (direct_entropy(y[:, 1:]) * weights).sum().backward()
    torch.testing.assert_close(x.grad, y.grad)
    assert torch.all(x.grad[:, 0] == 0)  # untouched positions get no gradient


def test_entropy_gradcheck():
    torch.manual_seed(4)
    x = torch.randn(2, 5, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: token_entropy(t, 3), (x,))


def _saved_bytes(fn, logits):
    """Bytes of tensors autograd saves for backward, excluding views of ``logits`` itself."""
    total = 0
    base_ptr = logits.untyped_storage().data_ptr()

    def pack(t):
        nonlocal total
        if t.untyped_storage().data_ptr() != base_ptr:
            total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn(logits)
    return total, out


def test_chunked_grad_path_saves_no_full_size_tensors():
    torch.manual_seed(5)
    logits = torch.randn(64, 500, requires_grad=True)
    logits_bytes = logits.numel() * logits.element_size()
    saved_direct, _ = _saved_bytes(lambda t: token_entropy(t, None), logits)
    saved_chunked, out = _saved_bytes(lambda t: token_entropy(t, 8), logits)
    assert saved_direct >= logits_bytes  # the softmax of every position is kept
    assert saved_chunked < logits_bytes / 8  # checkpointed chunks keep (almost) nothing
    out.sum().backward()  # and backward still works through the recomputation
    assert logits.grad is not None and torch.isfinite(logits.grad).all()


@pytest.mark.parametrize("chunk_size", CHUNKS)
def test_logprobs_match_log_softmax_gather(chunk_size):
    torch.manual_seed(6)
    logits = 2.0 * torch.randn(3, 37, 50)
    labels = torch.randint(0, 50, (3, 37))
    torch.testing.assert_close(logprobs_from_logits(logits, labels, chunk_size), direct_logprobs(logits, labels))
    logp, ent = logprobs_and_entropy(logits, labels, chunk_size)
    torch.testing.assert_close(logp, direct_logprobs(logits, labels))
    torch.testing.assert_close(ent, direct_entropy(logits), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("chunk_size", [None, 3, 10])
def test_joint_pass_gradients_match_direct(chunk_size):
    torch.manual_seed(7)
    base = torch.randn(2, 6, 9, dtype=torch.float64)
    labels = torch.randint(0, 9, (2, 5))
    wl, we = torch.randn(2, 5, dtype=torch.float64), torch.randn(2, 5, dtype=torch.float64)

    x = base.clone().requires_grad_(True)
    logp, ent = logprobs_and_entropy(x[:, :-1], labels, chunk_size)
    ((logp * wl).sum() + (ent * we).sum()).backward()
    y = base.clone().requires_grad_(True)
    ((direct_logprobs(y[:, :-1], labels) * wl).sum() + (direct_entropy(y[:, :-1]) * we).sum()).backward()
    torch.testing.assert_close(x.grad, y.grad)

    z = base.clone().requires_grad_(True)
    (logprobs_from_logits(z[:, :-1], labels, chunk_size) * wl).sum().backward()
    w = base.clone().requires_grad_(True)
    (direct_logprobs(w[:, :-1], labels) * wl).sum().backward()
    torch.testing.assert_close(z.grad, w.grad)


def test_logprob_hand_value_and_errors():
    # log softmax([0, ln 3])[1] = ln(3/4)
    logits = torch.tensor([[0.0, math.log(3.0)]])
    assert logprobs_from_logits(logits, torch.tensor([1]), 1).item() == pytest.approx(math.log(0.75), abs=1e-6)
    with pytest.raises(ValueError, match="labels shape"):
        logprobs_from_logits(torch.randn(2, 3, 5), torch.zeros(2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="chunk_size"):
        token_entropy(torch.randn(2, 5), chunk_size=0)


def test_float32_accuracy_at_large_vocabulary():
    # Guards the reduction used for sum(p * z): at V ~ 19k some CPU kernels (batched
    # mat-vec) lose ~1e-3, far more than float32 summation should.
    torch.manual_seed(8)
    logits = 3.0 * torch.randn(16, 19_000)
    reference = direct_entropy(logits.double())
    for cs in (None, 5):
        assert (token_entropy(logits, cs).double() - reference).abs().max().item() < 5e-5
