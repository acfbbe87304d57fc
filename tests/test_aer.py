"""Adaptive Entropy Regularization controller (pipeline.rl.aer)."""

import json
import math

import pytest
import torch

from pipeline.rl.aer import AERController

ACC = torch.tensor([0.0, 0.25, 0.4, 0.5, 1.0])


def test_allocation_modes_by_hand():
    torch.testing.assert_close(AERController(allocation="threshold", tau=0.4).allocate(ACC),
                               torch.tensor([1.0, 1.0, 0.0, 0.0, 0.0]))
    torch.testing.assert_close(AERController(allocation="linear").allocate(ACC),
                               torch.tensor([1.0, 0.75, 0.6, 0.5, 0.0]))
    # 1 - acc = [1, .75, .6, .5, 0], mean 0.57
    torch.testing.assert_close(AERController(allocation="normalized").allocate(ACC),
                               torch.tensor([1.0, 0.75, 0.6, 0.5, 0.0]) / 0.57)
    torch.testing.assert_close(AERController(allocation="none").allocate(ACC), torch.ones(5))
    assert AERController(allocation="threshold", tau=1.0).allocate(torch.tensor([1.0])).item() == 0.0


def test_allocation_edge_cases_and_errors():
    solved = AERController(allocation="normalized").allocate(torch.ones(4))
    assert torch.equal(solved, torch.zeros(4))  # no nan when every prompt is solved
    ctrl = AERController()
    for bad in ([1.2, 0.5], [-0.1], [float("nan")]):
        with pytest.raises(ValueError, match="0, 1"):
            ctrl.allocate(torch.tensor(bad))
    with pytest.raises(ValueError, match="allocation"):
        AERController(allocation="softmax")


def test_alpha_rises_below_target_and_falls_above():
    ctrl = AERController(eta=1e-3, alpha_max=1e-2)
    assert ctrl.observe(2.0) == 0.0  # anchors h0 = 2, target = 1.2; no update yet
    assert ctrl.h0 == 2.0 and ctrl.target == pytest.approx(1.2)
    assert ctrl.observe(0.2) == pytest.approx(1e-3)  # 1e-3 * (1.2 - 0.2)
    assert ctrl.observe(0.2) == pytest.approx(2e-3)
    assert ctrl.observe(2.2) == pytest.approx(1e-3)  # 1e-3 * (1.2 - 2.2)
    assert ctrl.observe(1.2) == pytest.approx(1e-3)  # at target: unchanged
    assert ctrl.step == 5 and ctrl.alpha == pytest.approx(1e-3)


def test_alpha_stays_in_bounds():
    ctrl = AERController(eta=1.0, alpha_max=1e-2)
    ctrl.observe(1.0)
    for h in [0.0] * 5:
        assert ctrl.observe(h) == 1e-2  # huge step clipped at alpha_max
    for h in [50.0] * 5:
        assert ctrl.observe(h) == 0.0  # and at 0
    torch.manual_seed(0)
    for h in (3.0 * torch.rand(200)).tolist():
        assert 0.0 <= ctrl.observe(h) <= 1e-2


def test_anchor_uses_exactly_the_first_anchor_steps_observations():
    ctrl = AERController(anchor_steps=3, alpha_init=0.004)
    for h in (1.0, 2.0):
        assert ctrl.observe(h) == 0.004
        assert ctrl.h0 is None and ctrl.target is None
    assert ctrl.observe(3.0) == 0.004  # completes the anchor, no update
    assert ctrl.h0 == pytest.approx(2.0) and ctrl.target == pytest.approx(1.2)
    assert ctrl.observe(1.0) == pytest.approx(0.004 + 1e-3 * (1.2 - 1.0))
    assert ctrl.observe(10.0) == 0.0  # 0.0042 + 1e-3 * (1.2 - 10) < 0 -> clipped at 0
    assert ctrl.h0 == pytest.approx(2.0)  # later observations never move the anchor


def test_absolute_target():
    ctrl = AERController(target=0.5, rho=0.6)
    assert ctrl.target == 0.5 and ctrl.h0 is None
    ctrl.observe(3.0)
    assert ctrl.h0 == 3.0 and ctrl.target == 0.5  # h0 only recorded
    assert ctrl.observe(0.1) == pytest.approx(1e-3 * 0.4)


def test_fixed_alpha_ablation():
    ctrl = AERController(alpha_init=0.005, adapt=False)
    for h in [2.0, 0.0, 0.0, 9.0, 0.3]:
        assert ctrl.observe(h) == 0.005
    assert ctrl.h0 == 2.0 and ctrl.target == pytest.approx(1.2)


def test_bang_bang_mode():
    ctrl = AERController(mode="bang_bang", delta=2e-3, alpha_max=5e-3)
    ctrl.observe(1.0)  # target 0.6
    assert ctrl.observe(0.5) == pytest.approx(2e-3)
    assert ctrl.observe(0.59) == pytest.approx(4e-3)  # step size independent of the error
    assert ctrl.observe(0.0) == pytest.approx(5e-3)  # clipped
    assert ctrl.observe(0.6) == pytest.approx(5e-3)  # exactly at target: no move
    assert ctrl.observe(2.0) == pytest.approx(3e-3)
    with pytest.raises(ValueError, match="delta"):
        AERController(mode="bang_bang")
    with pytest.raises(ValueError, match="mode"):
        AERController(mode="pid")


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"tau": 1.5}, "tau"),
        ({"tau": -0.1}, "tau"),
        ({"rho": 0.0}, "rho"),
        ({"eta": -1e-3}, "eta"),
        ({"alpha_init": -1e-3}, "alpha_init"),
        ({"alpha_init": 0.1, "alpha_max": 0.01}, "alpha_init"),
        ({"anchor_steps": 0}, "anchor_steps"),
        ({"anchor_steps": 1.5}, "anchor_steps"),
        ({"target": -1.0}, "target"),
        ({"delta": -1.0, "mode": "bang_bang"}, "delta"),
    ],
)
def test_constructor_validation(kwargs, name):
    with pytest.raises(ValueError, match=name):
        AERController(**kwargs)


def test_observe_rejects_non_finite():
    with pytest.raises(ValueError, match="mean_entropy"):
        AERController().observe(float("nan"))


def test_stats():
    ctrl = AERController()
    assert ctrl.stats() == {"aer_alpha": 0.0, "aer_h0": None, "aer_target": None}
    ctrl.observe(1.0)
    ctrl.observe(0.0)
    assert ctrl.stats() == pytest.approx({"aer_alpha": 6e-4, "aer_h0": 1.0, "aer_target": 0.6})


SEQUENCE = [1.3, 0.9, 1.1, 0.4, 0.2, 0.9, 1.7, 0.1, 0.65, 0.3]


@pytest.mark.parametrize("split", [1, 2, 3, 6])  # mid-anchor (1, 2), at completion (3), after (6)
def test_state_dict_round_trip_reproduces_alpha_sequence(split):
    config = dict(allocation="linear", rho=0.4, eta=5e-3, alpha_init=1e-3, alpha_max=2e-2, anchor_steps=3)
    original = AERController(**config)
    for h in SEQUENCE[:split]:
        original.observe(h)
    state = json.loads(json.dumps(original.state_dict()))  # plain python values only
    restored = AERController()  # default construction: the state carries the configuration
    restored.load_state_dict(state)
    assert restored.state_dict() == original.state_dict()
    assert (restored.alpha, restored.h0, restored.target, restored.step) == (
        original.alpha, original.h0, original.target, original.step)
    for h in SEQUENCE[split:]:
        assert restored.observe(h) == original.observe(h)
    assert restored.h0 == pytest.approx((1.3 + 0.9 + 1.1) / 3)
    assert restored.allocation == "linear"


def test_load_state_dict_validates():
    state = AERController().state_dict()
    with pytest.raises(ValueError, match="missing"):
        AERController().load_state_dict({k: v for k, v in state.items() if k != "alpha"})
    bad = json.loads(json.dumps(state))
    bad["config"]["rho"] = -1.0
    with pytest.raises(ValueError, match="rho"):
        AERController().load_state_dict(bad)
    assert not math.isnan(AERController().alpha)
