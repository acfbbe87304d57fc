"""Adaptive Entropy Regularization (AER) controller - a reconstruction (docs/methods.md §6).

Zhang et al. 2025 (arXiv 2510.10959) regularise entropy with a coefficient that is

1. allocated per prompt by difficulty: ``lambda(q)`` from the group accuracy ``acc(q)``;
2. driven toward a target entropy anchored to the initial one: ``H* = rho * H_0``;
3. scaled by a global coefficient adjusted after every step:
   ``alpha <- clip(alpha + eta * (H* - H_t), 0, alpha_max)``.

The trainer's loss is ``policy_loss - alpha_t * agg(lambda(q) * H)`` (see
``losses.entropy_bonus``). The paper's exact equations are not public in our sources,
so every knob is a constructor argument; the ablations are settings of the same
controller: ``allocation="none"`` (lambda = 1), an absolute ``target``, and
``adapt=False`` (fixed alpha). ``mode="bang_bang"`` is the Skywork-OR1-style
``alpha <- clip(alpha + delta * sign(H* - H_t), 0, alpha_max)``.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import torch
from torch import Tensor

from pipeline.rl.methods import check_params, component

__all__ = ["AERController"]

ALLOCATIONS = ("threshold", "linear", "normalized", "none")
MODES = ("additive", "bang_bang")

_CONFIG_KEYS = (
    "allocation", "tau", "rho", "eta", "alpha_init", "alpha_max",
    "anchor_steps", "target", "mode", "delta", "adapt",
)


def _is_real(x: Any) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool) and math.isfinite(x)


class AERController:
    """Per-prompt allocation ``lambda(q)`` and the global coefficient ``alpha_t`` of AER.

    Args:
        allocation: ``"threshold"`` (``1[acc < tau]``), ``"linear"`` (``1 - acc``),
            ``"normalized"`` (``(1 - acc) / mean(1 - acc)``) or ``"none"`` (lambda = 1).
        tau: accuracy threshold of the ``threshold`` allocation, in [0, 1].
        rho: target-to-initial entropy ratio, ``H* = rho * H_0``; > 0.
        eta: additive step size per nat of entropy error; >= 0.
        alpha_init: coefficient before and during anchoring; 0 <= alpha_init <= alpha_max.
        alpha_max: upper clip of alpha.
        anchor_steps: number of first observations averaged into ``H_0``; >= 1.
        target: absolute target entropy (nats, >= 0) instead of ``rho * H_0`` (ablation).
        mode: ``"additive"`` or ``"bang_bang"``.
        delta: bang-bang step (> 0); required by ``mode="bang_bang"``, unused otherwise.
        adapt: ``False`` keeps alpha at ``alpha_init`` forever (fixed-coefficient ablation).

    Attributes:
        alpha: coefficient to use for the next training step.
        h0: anchored initial entropy (None until ``anchor_steps`` observations).
        target: target entropy (None until known; known at once if given absolutely).
        step: number of observations so far.
    """

    def __init__(self, **params: Any) -> None:
        # Every parameter's default and range come from AER's one registration (pipeline.rl.methods).
        registered = component("regularizer", "aer")
        unknown = sorted(set(params) - set(registered.params))
        if unknown:
            raise TypeError(f"AERController: unknown parameter(s) {', '.join(unknown)} (known: {', '.join(registered.params)})")
        config = {**registered.defaults, **params}
        alpha_init, target = config["alpha_init"], config["target"]
        self._set_config(config)
        self.alpha: float = float(alpha_init)
        self.h0: float | None = None
        self.target: float | None = None if target is None else float(target)
        self.step: int = 0
        # Partial anchor window, kept so a resume inside the window is exact.
        self._anchor_sum: float = 0.0
        self._anchor_count: int = 0

    # ------------------------------------------------------------------ config
    @staticmethod
    def _validate(c: dict[str, Any]) -> None:
        # The ranges config validation applies too (their one registration in pipeline.rl.methods).
        check_params("regularizer", "aer", c)

    def _set_config(self, c: dict[str, Any]) -> None:
        self._validate(c)
        self.allocation: str = c["allocation"]
        self.tau: float = float(c["tau"])
        self.rho: float = float(c["rho"])
        self.eta: float = float(c["eta"])
        self.alpha_init: float = float(c["alpha_init"])
        self.alpha_max: float = float(c["alpha_max"])
        self.anchor_steps: int = int(c["anchor_steps"])
        self.abs_target: float | None = None if c["target"] is None else float(c["target"])
        self.mode: str = c["mode"]
        self.delta: float | None = None if c["delta"] is None else float(c["delta"])
        self.adapt: bool = bool(c["adapt"])

    def _config(self) -> dict[str, Any]:
        return {
            "allocation": self.allocation, "tau": self.tau, "rho": self.rho, "eta": self.eta,
            "alpha_init": self.alpha_init, "alpha_max": self.alpha_max,
            "anchor_steps": self.anchor_steps, "target": self.abs_target, "mode": self.mode,
            "delta": self.delta, "adapt": self.adapt,
        }

    # -------------------------------------------------------------- allocation
    def allocate(self, group_accuracy: Tensor) -> Tensor:
        """Per-prompt weight ``lambda(q)`` from the group accuracies ``acc(q)`` in [0, 1].

        ``threshold``: ``1[acc < tau]`` (only prompts the policy mostly fails get the
        bonus); ``linear``: ``1 - acc``; ``normalized``: ``(1 - acc) / mean(1 - acc)``
        (mean weight 1 over the batch; all zeros, not nan, when every prompt is solved);
        ``none``: ones (the lambda = 1 ablation). Returns a float tensor of the same shape.
        """
        acc = group_accuracy.detach()
        acc = acc.to(torch.promote_types(acc.dtype, torch.float32))
        if acc.numel() and not bool(((acc >= 0) & (acc <= 1)).all()):
            raise ValueError(
                f"group accuracies must lie in [0, 1], got min {acc.min().item()} max {acc.max().item()}"
            )
        if self.allocation == "threshold":
            return (acc < self.tau).to(acc.dtype)
        if self.allocation == "linear":
            return 1.0 - acc
        if self.allocation == "normalized":
            w = 1.0 - acc
            if acc.numel() == 0:
                return w
            mean = w.mean()
            if float(mean) == 0.0:
                return torch.zeros_like(w)
            return w / mean
        if self.allocation == "none":
            return torch.ones_like(acc)
        raise ValueError(f"unknown allocation {self.allocation!r}; expected one of {ALLOCATIONS}")

    # -------------------------------------------------------------- controller
    def observe(self, mean_entropy: float) -> float:
        """Record one training step's mean token entropy and return the next alpha.

        The first ``anchor_steps`` observations only build ``H_0`` (their mean); alpha
        stays ``alpha_init`` through that window. The observation that completes the
        anchor sets ``h0`` (and ``target = rho * h0`` unless an absolute target was
        given) but does NOT update alpha: the first update uses the NEXT observation,
        so no step's entropy counts both as anchor and as control error. After the
        window, additive mode does ``alpha <- clip(alpha + eta * (target - H), 0,
        alpha_max)`` and bang-bang mode ``alpha <- clip(alpha + delta * sign(target - H),
        0, alpha_max)``; with ``adapt=False`` alpha never changes. Entropy below the
        target raises alpha (more regularisation), above it lowers alpha.
        """
        if not _is_real(mean_entropy):
            raise ValueError(f"mean_entropy must be a finite number, got {mean_entropy!r}")
        h = float(mean_entropy)
        self.step += 1
        if self.h0 is None:
            self._anchor_sum += h
            self._anchor_count += 1
            if self._anchor_count == self.anchor_steps:
                self.h0 = self._anchor_sum / self._anchor_count
                if self.abs_target is None:
                    self.target = self.rho * self.h0
            return self.alpha
        if self.adapt:
            error = self.target - h
            if self.mode == "additive":
                step = self.eta * error
            else:
                step = self.delta * (1.0 if error > 0 else -1.0 if error < 0 else 0.0)
            self.alpha = min(max(self.alpha + step, 0.0), self.alpha_max)
        return self.alpha

    def stats(self) -> dict[str, float | None]:
        """Logging values: ``aer_alpha``, ``aer_h0`` and ``aer_target`` (None while unknown)."""
        return {"aer_alpha": self.alpha, "aer_h0": self.h0, "aer_target": self.target}

    # ------------------------------------------------------------- checkpoint
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume exactly, as plain python values (JSON-safe).

        Includes the configuration, like a torch optimizer's ``param_groups``: loading
        restores the controller that produced the state, whatever the receiving
        object was constructed with.
        """
        return {
            "config": self._config(),
            "alpha": self.alpha,
            "h0": self.h0,
            "target": self.target,
            "step": self.step,
            "anchor_sum": self._anchor_sum,
            "anchor_count": self._anchor_count,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict` (configuration and progress), validating it."""
        missing = {"config", "alpha", "h0", "target", "step", "anchor_sum", "anchor_count"} - set(state)
        if missing:
            raise ValueError(f"AER state_dict is missing keys {sorted(missing)}")
        config = dict(state["config"])
        unknown = set(config) - set(_CONFIG_KEYS)
        if unknown or len(config) != len(_CONFIG_KEYS):
            raise ValueError(f"AER state_dict config has keys {sorted(config)}, expected {sorted(_CONFIG_KEYS)}")
        self._set_config(config)
        self.alpha = float(state["alpha"])
        self.h0 = None if state["h0"] is None else float(state["h0"])
        self.target = None if state["target"] is None else float(state["target"])
        self.step = int(state["step"])
        self._anchor_sum = float(state["anchor_sum"])
        self._anchor_count = int(state["anchor_count"])
