"""Policy / value / entropy losses, Clip-Cov and KL-Cov (pipeline.rl.losses)."""

import math

import pytest
import torch

from pipeline.rl.losses import (
    AGGREGATIONS,
    aggregate,
    clip_cov_loss,
    clipped_surrogate,
    clipped_surrogate_per_token,
    entropy_bonus,
    explained_variance,
    kl_cov_loss,
    token_covariance,
    value_loss,
)

F64 = torch.float64

# ----------------------------------------------------------------------------- aggregation

LOSS = torch.tensor([[1.0, 2.0, 3.0, 100.0], [5.0, 6.0, 100.0, 100.0], [100.0, 100.0, 100.0, 100.0]])
MASK = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0], [0, 0, 0, 0]])


def test_aggregation_modes_by_hand():
    assert AGGREGATIONS == ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm")
    # all valid tokens weigh the same: (1+2+3+5+6) / 5
    assert aggregate(LOSS, MASK, "token-mean").item() == pytest.approx(17 / 5)
    # per-sequence means 2 and 5.5; the empty third sequence is excluded
    assert aggregate(LOSS, MASK, "seq-mean-token-mean").item() == pytest.approx(3.75)
    # token sums 6, 11, 0 divided by T = 4, averaged over all 3 sequences
    assert aggregate(LOSS, MASK, "seq-mean-token-sum-norm").item() == pytest.approx((1.5 + 2.75 + 0.0) / 3)
    assert aggregate(LOSS, MASK, "seq-mean-token-sum-norm", norm_length=2).item() == pytest.approx(8.5 / 3)


def test_aggregation_errors_and_empty_mask():
    with pytest.raises(ValueError, match="token-median"):
        aggregate(LOSS, MASK, "token-median")
    with pytest.raises(ValueError, match="norm_length"):
        aggregate(LOSS, MASK, "seq-mean-token-sum-norm", norm_length=0)
    with pytest.raises(ValueError, match="shape"):
        aggregate(LOSS, MASK[:, :3], "token-mean")
    x = LOSS.clone().requires_grad_(True)
    for mode in AGGREGATIONS:
        out = aggregate(x, torch.zeros_like(MASK), mode)
        assert out.item() == 0.0
        out.backward()
        assert torch.all(x.grad == 0)
        x.grad = None


# ----------------------------------------------------------------------------- clipped surrogate

# (A, ratio) per token; the last one is padding with extreme values.
ADV = [1.0, 1.0, 1.0, -1.0, -1.0, -1.0, 2.0, 50.0]
RATIO = [1.1, 1.5, 0.5, 0.5, 1.5, 4.0, 1.25, 100.0]
SURR_MASK = torch.tensor([[1, 1, 1, 1, 1, 1, 1, 0]])
# max(-A r, -A clip(r, 0.8, 1.28)):
#   t0 -1.1 (inside)  t1 -1.28 (high clip)  t2 -0.5 (A>0, low ratio: unclipped)
#   t3 0.8 (low clip) t4 1.5 (A<0, high ratio: unclipped)  t5 4.0 (dual clip 3 -> 3.0)
#   t6 -2.5 (1.25 < 1.28: not clipped)
EXPECTED_TOKENS = [-1.1, -1.28, -0.5, 0.8, 1.5, 4.0, -2.5]


def _surrogate_inputs():
    logp = torch.log(torch.tensor([RATIO], dtype=F64)).requires_grad_(True)
    old = torch.zeros(1, 8, dtype=F64)
    adv = torch.tensor([ADV], dtype=F64)
    return logp, old, adv


def test_clipped_surrogate_per_token_by_hand():
    logp, old, adv = _surrogate_inputs()
    loss_mat, clipped, ratio = clipped_surrogate_per_token(logp, old, adv)
    torch.testing.assert_close(loss_mat[0, :7], torch.tensor(EXPECTED_TOKENS, dtype=F64))
    assert clipped[0, :7].tolist() == [False, True, False, True, False, False, False]
    torch.testing.assert_close(ratio[0], torch.tensor(RATIO, dtype=F64))
    loss_mat, clipped, _ = clipped_surrogate_per_token(logp, old, adv, dual_clip=3.0)
    assert loss_mat[0, 5].item() == pytest.approx(3.0)
    assert clipped[0, :7].tolist() == [False, True, False, True, False, True, False]


def test_clipped_surrogate_loss_stats_and_gradient():
    logp, old, adv = _surrogate_inputs()
    loss, stats = clipped_surrogate(logp, old, adv, SURR_MASK)
    assert loss.item() == pytest.approx(sum(EXPECTED_TOKENS) / 7)
    assert stats["clipfrac_low"] == pytest.approx(1 / 7)  # t3
    assert stats["clipfrac_high"] == pytest.approx(1 / 7)  # t1
    assert stats["clipfrac_dual"] == 0.0
    assert stats["ratio_mean"] == pytest.approx(sum(RATIO[:7]) / 7)
    assert stats["approx_kl"] == pytest.approx(sum((r - 1) - math.log(r) for r in RATIO[:7]) / 7)
    assert all(isinstance(v, float) for v in stats.values())
    loss.backward()
    # d(-A r)/d logp = -A r on unclipped tokens, 0 on clipped ones and on padding
    expected_grad = [-a * r / 7 for a, r in zip(ADV[:7], RATIO[:7])] + [0.0]
    expected_grad[1] = expected_grad[3] = 0.0
    torch.testing.assert_close(logp.grad[0], torch.tensor(expected_grad, dtype=F64))


def test_dual_clip_caps_negative_advantage_loss():
    logp, old, adv = _surrogate_inputs()
    loss, stats = clipped_surrogate(logp, old, adv, SURR_MASK, dual_clip=3.0)
    assert loss.item() == pytest.approx((sum(EXPECTED_TOKENS) - 1.0) / 7)  # t5: 4 -> 3
    assert stats["clipfrac_dual"] == pytest.approx(1 / 7)
    loss.backward()
    assert logp.grad[0, 5].item() == 0.0
    with pytest.raises(ValueError, match="dual_clip"):
        clipped_surrogate(logp, old, adv, SURR_MASK, dual_clip=1.0)


def test_clip_higher_asymmetry():
    logp = torch.log(torch.tensor([[1.25]], dtype=F64))
    old, adv, mask = torch.zeros(1, 1, dtype=F64), torch.tensor([[2.0]], dtype=F64), torch.ones(1, 1)
    loss, stats = clipped_surrogate(logp, old, adv, mask, clip_low=0.2, clip_high=0.28)
    assert loss.item() == pytest.approx(-2.5) and stats["clipfrac_high"] == 0.0
    loss, stats = clipped_surrogate(logp, old, adv, mask, clip_low=0.2, clip_high=0.2)
    assert loss.item() == pytest.approx(-2.4) and stats["clipfrac_high"] == 1.0
    # the low side is unaffected by clip_high: ratio 0.75 with A < 0 is clipped at 0.8
    loss, stats = clipped_surrogate(torch.log(torch.tensor([[0.75]], dtype=F64)), old, -adv, mask)
    assert loss.item() == pytest.approx(1.6) and stats["clipfrac_low"] == 1.0


def test_surrogate_aggregation_modes_are_forwarded():
    logp = torch.zeros(2, 3, dtype=F64)
    adv = torch.tensor([[1.0, 1.0, 1.0], [4.0, 0.0, 0.0]], dtype=F64)
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]])
    # ratio 1 -> loss = -A; token-mean -(3+4)/4, seq-mean-token-mean -(1+4)/2, sum-norm -(3/3+4/3)/2
    assert clipped_surrogate(logp, logp, adv, mask)[0].item() == pytest.approx(-7 / 4)
    assert clipped_surrogate(logp, logp, adv, mask, agg="seq-mean-token-mean")[0].item() == pytest.approx(-2.5)
    assert clipped_surrogate(logp, logp, adv, mask, agg="seq-mean-token-sum-norm")[0].item() == pytest.approx(-7 / 6)
    assert clipped_surrogate(logp, logp, adv, mask, agg="seq-mean-token-sum-norm", norm_length=7)[0].item() == (
        pytest.approx(-0.5)
    )


# ----------------------------------------------------------------------------- covariance methods

# 12 valid tokens (2 rows x 6) + a padding column. mean A = 0, mean logp = -5 exactly.
#            t0    t1    t2    t3     t4    t5    t6    t7    t8    t9     t10   t11
COV_ADV = [2.0, 2.0, 2.0, 2.0, -2.0, -2.0, -2.0, -2.0, 0.0, 0.0, 1.0, -1.0]
COV_LOGP = [-4.0, -4.0, -2.0, -4.75, -6.0, -7.0, -4.0, -5.5, -6.5, -6.25, -5.0, -5.0]
# Cov = A * (logp + 5):
COV = [2.0, 2.0, 6.0, 0.5, 2.0, 4.0, -2.0, 1.0, 0.0, 0.0, 0.0, 0.0]
# 1 < Cov < 5: t0, t1, t4, t5; t1 is PPO-clipped (ratio e, A > 0) -> candidates t0, t4, t5.
# t2 (6 >= 5), t3 (0.5), t7 (exactly 1) are outside the open interval.
CANDIDATES = {0, 4, 5}


def _to_rows(values, pad):
    rows = torch.tensor(values, dtype=F64).view(2, 6)
    return torch.cat([rows, torch.full((2, 1), pad, dtype=F64)], dim=1)


def _cov_inputs(old_shift=None):
    logp = _to_rows(COV_LOGP, -50.0).requires_grad_(True)
    shift = torch.zeros(12, dtype=F64)
    shift[1] = 1.0  # old = logp - 1 -> ratio e on t1
    if old_shift is not None:
        shift = torch.tensor(old_shift, dtype=F64)
    old = _to_rows((torch.tensor(COV_LOGP, dtype=F64) - shift).tolist(), 3.0)
    adv = _to_rows(COV_ADV, 9.0)
    mask = torch.ones(2, 7, dtype=torch.long)
    mask[:, 6] = 0
    return logp, old, adv, mask


def _flat_valid(t):
    return t[:, :6].reshape(-1)


def test_token_covariance_by_hand():
    logp, _, adv, mask = _cov_inputs()
    cov = token_covariance(adv, logp, mask)
    torch.testing.assert_close(_flat_valid(cov), torch.tensor(COV, dtype=cov.dtype))
    assert torch.all(cov[:, 6] == 0) and not cov.requires_grad


def _zero_grad_tokens(logp, old, adv, mask, **kw):
    """Tokens whose gradient clip_cov_loss removed relative to the plain surrogate."""
    logp_ref = logp.detach().clone().requires_grad_(True)
    clipped_surrogate(logp_ref, old, adv, mask)[0].backward()
    loss, stats = clip_cov_loss(logp, old, adv, mask, **kw)
    logp.grad = None
    loss.backward()
    changed = _flat_valid(logp.grad != logp_ref.grad)
    # every changed token now has exactly zero gradient
    assert torch.all(_flat_valid(logp.grad)[changed] == 0)
    assert torch.all(logp.grad[:, 6] == 0)
    return set(torch.nonzero(changed).flatten().tolist()), loss, stats


def test_clip_cov_selects_only_unclipped_candidates():
    logp, old, adv, mask = _cov_inputs()
    # ratio 1.0 asks for 12 tokens: all three candidates, never the clipped t1 or out-of-band ones
    selected, loss, stats = _zero_grad_tokens(logp, old, adv, mask, select_ratio=1.0,
                                              generator=torch.Generator().manual_seed(0))
    assert selected == CANDIDATES
    assert stats["cov_frac"] == pytest.approx(3 / 12)
    # loss: -A on the unselected tokens (ratio 1), t1 clipped at -2 * 1.28, selected tokens 0
    kept = [-a for i, a in enumerate(COV_ADV) if i not in CANDIDATES | {1}]
    assert loss.item() == pytest.approx((sum(kept) - 2.56) / 12)
    assert stats["clipfrac_high"] == pytest.approx(1 / 12)
    assert stats["clipfrac_low"] == 0.0


def test_clip_cov_count_and_seeded_determinism():
    logp, old, adv, mask = _cov_inputs()
    # default r = 2e-4: floor(12 * 2e-4) = 0 -> max(0, 1) = 1 token
    sel, _, stats = _zero_grad_tokens(logp, old, adv, mask, generator=torch.Generator().manual_seed(1))
    assert len(sel) == 1 and sel <= CANDIDATES and stats["cov_frac"] == pytest.approx(1 / 12)
    # r = 0.2: floor(2.4) = 2 tokens
    picks = []
    for seed in range(12):
        sel_a, _, _ = _zero_grad_tokens(logp, old, adv, mask, select_ratio=0.2,
                                        generator=torch.Generator().manual_seed(seed))
        sel_b, _, _ = _zero_grad_tokens(logp, old, adv, mask, select_ratio=0.2,
                                        generator=torch.Generator().manual_seed(seed))
        assert sel_a == sel_b and len(sel_a) == 2 and sel_a <= CANDIDATES
        picks.append(frozenset(sel_a))
    assert len(set(picks)) > 1  # the choice is random across seeds, not fixed


def test_clip_cov_no_candidates_selects_nothing():
    logp, old, adv, mask = _cov_inputs()
    loss, stats = clip_cov_loss(logp, old, adv, mask, cov_low=10.0, cov_high=20.0)
    ref, _ = clipped_surrogate(logp, old, adv, mask)
    assert loss.item() == pytest.approx(ref.item()) and stats["cov_frac"] == 0.0


def test_kl_cov_penalises_top_k_by_hand():
    # old = logp - shift: t2 (+0.1), t5 (-0.2), t0 (+0.3, not top-k), t1 (+1.0, large ratio, no clipping)
    shift = [0.3, 1.0, 0.1, 0.0, 0.0, -0.2, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    logp, old, adv, mask = _cov_inputs(old_shift=shift)
    # r = 0.2 -> k = floor(2.4) = 2: the two largest Cov are t2 (6) and t5 (4)
    loss, stats = kl_cov_loss(logp, old, adv, mask, select_ratio=0.2, kl_coef=0.5)
    per_token = [-a * math.exp(s) for a, s in zip(COV_ADV, shift)]
    per_token[2] += 0.5 * 0.1
    per_token[5] += 0.5 * 0.2
    assert loss.item() == pytest.approx(sum(per_token) / 12)
    loss.backward()
    grad = [-a * math.exp(s) for a, s in zip(COV_ADV, shift)]
    grad[2] += 0.5 * 1.0  # d|logp - old|/dlogp = sign(+0.1)
    grad[5] += 0.5 * -1.0  # sign(-0.2)
    torch.testing.assert_close(_flat_valid(logp.grad), torch.tensor(grad, dtype=F64) / 12)
    assert torch.all(logp.grad[:, 6] == 0)
    assert stats["cov_frac"] == pytest.approx(2 / 12)
    assert stats["clipfrac_low"] == 0.0 and stats["clipfrac_high"] == 0.0
    assert stats["approx_kl"] == pytest.approx(sum(math.exp(s) - 1 - s for s in shift) / 12)


def test_kl_cov_default_selects_one_token():
    logp, old, adv, mask = _cov_inputs(old_shift=[0.0] * 2 + [0.4] + [0.0] * 9)
    # floor(12 * 2e-3) = 0 -> 1 token: t2 (Cov 6); penalty 1.0 * 0.4
    loss, stats = kl_cov_loss(logp, old, adv, mask)
    per_token = [-a for a in COV_ADV]
    per_token[2] = -2.0 * math.exp(0.4) + 0.4
    assert loss.item() == pytest.approx(sum(per_token) / 12)
    assert stats["cov_frac"] == pytest.approx(1 / 12)


# ----------------------------------------------------------------------------- value loss


def test_value_loss_by_hand():
    values = torch.tensor([[1.0, 2.0, 2.0, 7.0]], dtype=F64, requires_grad=True)
    old = torch.tensor([[0.9, 1.0, 1.0, 0.0]], dtype=F64)
    returns = torch.tensor([[1.5, 1.5, 2.5, -7.0]], dtype=F64)
    mask = torch.tensor([[1, 1, 1, 0]])
    # t0: both branches 0.25; t1: max(0.25, (1.2-1.5)^2=0.09); t2: max(0.25, (1.2-2.5)^2=1.69)
    loss, stats = value_loss(values, old, returns, mask, clip=0.2)
    assert loss.item() == pytest.approx((0.125 + 0.125 + 0.845) / 3)
    assert stats["value_clipfrac"] == pytest.approx(1 / 3)
    loss.backward()
    # t2's active branch is the clipped one, whose value is constant in V -> zero gradient
    torch.testing.assert_close(values.grad, torch.tensor([[-0.5 / 3, 0.5 / 3, 0.0, 0.0]], dtype=F64))
    values.grad = None
    loss, stats = value_loss(values, old, returns, mask, clip=None)
    assert loss.item() == pytest.approx(0.125) and stats["value_clipfrac"] == 0.0
    loss.backward()
    torch.testing.assert_close(values.grad, torch.tensor([[-0.5 / 3, 0.5 / 3, -0.5 / 3, 0.0]], dtype=F64))


def test_explained_variance_by_hand():
    mask = torch.tensor([1, 1, 1, 0])
    returns = torch.tensor([1.0, 2.0, 3.0, 100.0])
    assert explained_variance(returns, returns, mask) == pytest.approx(1.0)
    assert explained_variance(torch.full((4,), 2.0), returns, mask) == pytest.approx(0.0)
    # R - V = [0, 0, -1]: Var = 2/9; Var(R) = 2/3 -> 1 - 1/3
    assert explained_variance(torch.tensor([1.0, 2.0, 4.0, 0.0]), returns, mask) == pytest.approx(2 / 3)
    assert math.isnan(explained_variance(returns, torch.ones(4), mask))


# ----------------------------------------------------------------------------- entropy bonus


def test_entropy_bonus_keeps_gradient_and_applies_weights():
    ent = torch.tensor([[1.0, 2.0, 99.0], [3.0, 4.0, 5.0]], requires_grad=True)
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    weights = torch.tensor([[1.0], [0.5]])  # per-prompt lambda broadcast over tokens
    bonus = entropy_bonus(ent, mask, weights=weights)
    assert bonus.item() == pytest.approx((1 + 2 + 1.5 + 2 + 2.5) / 5)
    bonus.backward()
    torch.testing.assert_close(ent.grad, torch.tensor([[0.2, 0.2, 0.0], [0.1, 0.1, 0.1]]))
    assert entropy_bonus(ent, mask, agg="seq-mean-token-mean", weights=weights).item() == pytest.approx(1.75)
    assert entropy_bonus(ent, mask).item() == pytest.approx(15 / 5)
    assert entropy_bonus(ent, mask, agg="seq-mean-token-sum-norm", norm_length=2).item() == pytest.approx(
        (3 / 2 + 12 / 2) / 2
    )
    with pytest.raises(ValueError, match="broadcast"):
        entropy_bonus(ent, mask, weights=torch.ones(3, 2, 3))


def test_kl_estimators_by_hand():
    from pipeline.rl.losses import KL_ESTIMATORS, kl_penalty

    logp = torch.tensor([[math.log(0.5), math.log(0.25)]])
    ref = torch.tensor([[math.log(0.25), math.log(0.25)]])
    mask = torch.tensor([[1.0, 1.0]])
    d = math.log(2.0)  # log pi - log pi_ref on the first token, 0 on the second
    assert KL_ESTIMATORS["k1"](logp, ref)[0].tolist() == pytest.approx([d, 0.0])
    assert KL_ESTIMATORS["k2"](logp, ref)[0].tolist() == pytest.approx([0.5 * d * d, 0.0])
    assert KL_ESTIMATORS["k3"](logp, ref)[0].tolist() == pytest.approx([0.5 - math.log(0.5) - 1.0, 0.0])  # e^-d + d - 1
    # aggregated like the policy loss (token-mean over valid tokens); the gradient flows into logp only
    lp = logp.clone().requires_grad_(True)
    loss = kl_penalty(lp, ref, torch.tensor([[1.0, 0.0]]), "k2")
    loss.backward()
    assert float(loss) == pytest.approx(0.5 * d * d) and lp.grad[0].tolist() == pytest.approx([d, 0.0])
    with pytest.raises(ValueError, match="known: \\['k1', 'k2', 'k3'\\]"):
        kl_penalty(logp, ref, mask, "k4")
