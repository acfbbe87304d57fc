"""GRPO / GAE advantages, masked statistics and entropy-based shaping (pipeline.rl.advantages)."""

import math

import pytest
import torch

from pipeline.rl.advantages import (
    entropy_shaped,
    gae,
    grpo_advantages,
    masked_mean,
    masked_var,
    masked_whiten,
    shaping_ratio,
)

# ----------------------------------------------------------------------------- GRPO


def test_grpo_hand_example():
    scores = torch.tensor([1.0, -1.0, -1.0, 1.0, 1.0, 1.0, 1.0, 1.0])
    adv = grpo_advantages(scores, group_size=4)
    # group 1: mean 0, unbiased var = (4 * 1^2) / 3, std = 2 / sqrt(3)
    a = 1.0 / (2.0 / math.sqrt(3.0) + 1e-6)
    torch.testing.assert_close(adv[:4], torch.tensor([a, -a, -a, a]))
    # group 2: all equal -> exactly zero
    assert torch.equal(adv[4:], torch.zeros(4))


def test_grpo_uneven_group_and_dr_grpo():
    # mean -0.5, deviations [1.5, -0.5, -0.5, -0.5], unbiased var = (2.25 + 3 * 0.25) / 3 = 1
    scores = torch.tensor([1.0, -1.0, -1.0, -1.0])
    adv = grpo_advantages(scores, 4)
    torch.testing.assert_close(adv, torch.tensor([1.5, -0.5, -0.5, -0.5]) / (1.0 + 1e-6))
    torch.testing.assert_close(grpo_advantages(scores, 4, scale=False), torch.tensor([1.5, -0.5, -0.5, -0.5]))
    # eps is honoured
    torch.testing.assert_close(grpo_advantages(scores, 4, eps=1.0), torch.tensor([1.5, -0.5, -0.5, -0.5]) / 2.0)
    torch.testing.assert_close(
        grpo_advantages(torch.tensor([1.0, -1.0, -1.0, 1.0, 1.0, 1.0, 1.0, 1.0]), 4, scale=False),
        torch.tensor([1.0, -1.0, -1.0, 1.0, 0.0, 0.0, 0.0, 0.0]),
    )


def test_grpo_all_equal_group_is_exactly_zero_even_with_rounding():
    # 0.1 + 0.1 + 0.1 != 0.3 in floating point: s - mean(s) would not be exactly 0.
    scores = torch.tensor([0.1, 0.1, 0.1, 0.7, 0.7, 0.7], dtype=torch.float64)
    adv = grpo_advantages(scores, 3)
    assert torch.equal(adv, torch.zeros(6, dtype=torch.float64))
    assert torch.equal(grpo_advantages(scores, 3, scale=False), torch.zeros(6, dtype=torch.float64))


def test_grpo_integer_scores_and_errors():
    adv = grpo_advantages(torch.tensor([1, 0]), 2)
    # mean 0.5, unbiased std = sqrt(0.5)
    s = math.sqrt(0.5)
    torch.testing.assert_close(adv, torch.tensor([0.5 / (s + 1e-6), -0.5 / (s + 1e-6)]))
    with pytest.raises(ValueError, match="multiple of group_size"):
        grpo_advantages(torch.zeros(6), 4)
    with pytest.raises(ValueError, match="unbiased"):
        grpo_advantages(torch.zeros(4), 1)
    with pytest.raises(ValueError, match="1-D"):
        grpo_advantages(torch.zeros(2, 4), 4)


# ----------------------------------------------------------------------------- GAE


def test_gae_gamma_lambda_one_is_return_to_go_minus_value():
    rewards = torch.tensor([[0.0, 0.0, 1.0, 7.0], [0.0, 1.0, 5.0, 5.0]])
    values = torch.tensor([[0.5, 0.2, 0.7, 9.0], [0.3, 0.4, 9.0, 9.0]])
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    adv, ret = gae(rewards, values, mask, gamma=1.0, lam=1.0)
    # row 0: return-to-go [1, 1, 1]; row 1: [1, 1]; padding ignored (rewards 7, 5 there)
    torch.testing.assert_close(adv, torch.tensor([[0.5, 0.8, 0.3, 0.0], [0.7, 0.6, 0.0, 0.0]]))
    torch.testing.assert_close(ret, torch.tensor([[1.0, 1.0, 1.0, 0.0], [1.0, 1.0, 0.0, 0.0]]))


def test_gae_three_tokens_by_hand():
    # gamma 0.9, lambda 0.8, r = [0, 0, 1], V = [0.5, 0.2, 0.7]:
    # d2 = 1 - 0.7 = 0.3                 A2 = 0.3
    # d1 = 0.9 * 0.7 - 0.2 = 0.43        A1 = 0.43 + 0.72 * 0.3 = 0.646
    # d0 = 0.9 * 0.2 - 0.5 = -0.32       A0 = -0.32 + 0.72 * 0.646 = 0.14512
    rewards = torch.tensor([[0.0, 0.0, 1.0]], dtype=torch.float64)
    values = torch.tensor([[0.5, 0.2, 0.7]], dtype=torch.float64)
    mask = torch.ones(1, 3)
    adv, ret = gae(rewards, values, mask, gamma=0.9, lam=0.8)
    expected = torch.tensor([[0.14512, 0.646, 0.3]], dtype=torch.float64)
    torch.testing.assert_close(adv, expected)
    torch.testing.assert_close(ret, expected + values)


def test_gae_left_offset_mask_and_no_gradient():
    # Same three tokens placed at columns 2..4 of a width-6 row, garbage elsewhere.
    rewards = torch.tensor([[100.0, -3.0, 0.0, 0.0, 1.0, 50.0]], dtype=torch.float64)
    values = torch.tensor([[8.0, float("nan"), 0.5, 0.2, 0.7, float("nan")]], dtype=torch.float64)
    values.requires_grad_(True)
    mask = torch.tensor([[0, 0, 1, 1, 1, 0]])
    adv, ret = gae(rewards, values, mask, gamma=0.9, lam=0.8)
    torch.testing.assert_close(adv, torch.tensor([[0.0, 0.0, 0.14512, 0.646, 0.3, 0.0]], dtype=torch.float64))
    torch.testing.assert_close(ret, torch.tensor([[0.0, 0.0, 0.64512, 0.846, 1.0, 0.0]], dtype=torch.float64))
    assert not adv.requires_grad and not ret.requires_grad


def test_gae_shape_error():
    with pytest.raises(ValueError, match="shape"):
        gae(torch.zeros(2, 3), torch.zeros(2, 4), torch.ones(2, 3), 1.0, 1.0)


# ----------------------------------------------------------------------------- masked stats


def test_masked_mean_and_var_by_hand():
    x = torch.tensor([[1.0, 2.0, 3.0, 100.0], [4.0, float("nan"), 0.0, 0.0]])
    mask = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0]])
    assert masked_mean(x, mask).item() == pytest.approx(2.5)  # (1+2+3+4)/4
    torch.testing.assert_close(masked_mean(x, mask, dim=1), torch.tensor([2.0, 4.0]))
    # values 1,2,3,4: mean 2.5, squared deviations sum 5 -> unbiased 5/3, biased 5/4
    assert masked_var(x, mask).item() == pytest.approx(5.0 / 3.0)
    assert masked_var(x, mask, unbiased=False).item() == pytest.approx(1.25)
    assert math.isnan(masked_mean(x, torch.zeros_like(mask)).item())
    with pytest.raises(ValueError, match="at least 2"):
        masked_var(x, torch.tensor([[1, 0, 0, 0], [0, 0, 0, 0]]))
    with pytest.raises(ValueError, match="at least 1"):
        masked_var(x, torch.zeros_like(mask), unbiased=False)


def test_masked_whiten_by_hand_and_random():
    x = torch.tensor([[1.0, 2.0, 3.0, 100.0]])
    mask = torch.tensor([[1, 1, 1, 0]])
    # mean 2, unbiased var 1 -> [-1, 0, 1], padding 0
    torch.testing.assert_close(masked_whiten(x, mask), torch.tensor([[-1.0, 0.0, 1.0, 0.0]]))
    torch.testing.assert_close(masked_whiten(x, mask, shift_mean=False), torch.tensor([[1.0, 2.0, 3.0, 0.0]]))

    torch.manual_seed(0)
    x = 5.0 + 3.0 * torch.randn(6, 20)
    mask = torch.rand(6, 20) < 0.7
    w = masked_whiten(x, mask)
    assert masked_mean(w, mask).item() == pytest.approx(0.0, abs=1e-5)
    assert masked_var(w, mask).item() == pytest.approx(1.0, abs=1e-5)
    assert torch.all(w[~mask] == 0)
    w2 = masked_whiten(x, mask, shift_mean=False)
    assert masked_mean(w2, mask).item() == pytest.approx(masked_mean(x, mask).item(), abs=1e-4)


# ----------------------------------------------------------------------------- shaping

A = [1.0, -1.0, 0.0, 0.5, -0.5]
H = [10.0, 10.0, 10.0, 0.1, 0.1]


def test_entropy_shaped_by_hand():
    adv, ent = torch.tensor(A), torch.tensor(H)
    shaped = entropy_shaped(adv, ent, alpha=0.4, kappa=2.0)
    # psi = min(0.4 H, |A|/2): cap binds for H = 10 (psi = 0.5), alpha*H binds for H = 0.1 (psi = 0.04)
    torch.testing.assert_close(shaped, torch.tensor([1.5, -0.5, 0.0, 0.54, -0.46]))
    assert shaped[2].item() == 0.0  # A = 0 stays exactly 0


def test_entropy_shaped_is_pure_and_detached():
    adv = torch.tensor(A, requires_grad=True)
    ent = torch.tensor(H, requires_grad=True)
    adv_before, ent_before = adv.detach().clone(), ent.detach().clone()
    shaped = entropy_shaped(adv, ent, alpha=0.4, kappa=2.0)
    assert shaped is not adv and shaped.data_ptr() != adv.data_ptr()
    assert torch.equal(adv.detach(), adv_before) and torch.equal(ent.detach(), ent_before)
    shaped.sum().backward()
    assert ent.grad is None or torch.all(ent.grad == 0)
    # shaping twice from the same advantages gives the same result (no compounding)
    torch.testing.assert_close(entropy_shaped(adv, ent, 0.4, 2.0), shaped)


def test_entropy_shaped_invariants_random():
    torch.manual_seed(0)
    adv = torch.randn(1000)
    adv[::7] = 0.0
    ent = 5.0 * torch.rand(1000)
    for alpha, kappa in [(0.4, 2.0), (0.1, 2.0), (10.0, 1.0), (0.0, 3.0)]:
        shaped = entropy_shaped(adv, ent, alpha, kappa)
        psi = shaped - adv
        assert torch.all(psi >= 0)
        assert torch.all(psi <= adv.abs() / kappa + 1e-7)
        assert torch.all(shaped[adv == 0] == 0)
        assert torch.all(shaped[adv > 0] > 0)
        assert torch.all(shaped[adv < 0] <= 0)  # kappa = 1 can reach 0, never flips
    # tiny negative entropy from rounding never yields a negative psi
    assert entropy_shaped(torch.tensor([0.0, -1.0]), torch.tensor([-1e-7, -1e-7]), 0.4, 2.0).tolist() == [0.0, -1.0]


def test_entropy_shaped_errors():
    adv, ent = torch.tensor(A), torch.tensor(H)
    with pytest.raises(ValueError, match="alpha"):
        entropy_shaped(adv, ent, alpha=-0.1, kappa=2.0)
    for bad in (0.0, -1.0, 0.5):
        with pytest.raises(ValueError, match="kappa"):
            entropy_shaped(adv, ent, alpha=0.4, kappa=bad)
    with pytest.raises(ValueError, match="shape"):
        entropy_shaped(adv, ent[:3], 0.4, 2.0)


def test_shaping_ratio_by_hand():
    adv, ent = torch.tensor(A), torch.tensor(H)
    shaped = entropy_shaped(adv, ent, 0.4, 2.0)
    # psi/|A| = [0.5, 0.5, (A=0 skipped), 0.08, 0.08]
    assert shaping_ratio(adv, shaped, torch.ones(5)) == pytest.approx((0.5 + 0.5 + 0.08 + 0.08) / 4)
    assert shaping_ratio(adv, shaped, torch.tensor([0, 1, 1, 1, 1])) == pytest.approx((0.5 + 0.08 + 0.08) / 3)
    assert math.isnan(shaping_ratio(torch.zeros(3), torch.zeros(3), torch.ones(3)))
