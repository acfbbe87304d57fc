"""Methods are data: a named combination of four components plus hyperparameters.

A method picks
  * an advantage **estimator**   — ``grpo`` (group-normalised outcome) or ``gae`` (PPO critic),
  * an advantage **shaping**     — ``none`` or ``entropy_advantage`` (Cheng et al.),
  * a policy **loss**            — ``clip`` (clipped surrogate with clip-higher), ``clip_cov`` or ``kl_cov`` (Cui et al.),
  * a **regularizer**            — ``none``, ``entropy_bonus`` (fixed β) or ``aer`` (Zhang et al.),
and may override any training hyperparameter. The trainer looks each component up by
name in :mod:`pipeline.rl.registry`; it has no per-method branches.

This module is import-light (no torch) because the Snakefile resolves methods at DAG time.
"""

from __future__ import annotations

import copy
from typing import Any

from pipeline.errors import PipelineError

# Every component's parameters and their defaults. Unknown keys are errors.
COMPONENTS: dict[str, dict[str, dict[str, Any]]] = {
    "estimator": {
        # SPEC §2: A_i = (s_i - mean(s)) / (std(s) + eps), unbiased std; scale=False is Dr.GRPO.
        "grpo": {"eps": 1e-6, "scale": True},
        # SPEC §3: GAE with gamma = lambda = 1, whitened over the batch; critic settings.
        "gae": {
            "gamma": 1.0,
            "lam": 1.0,
            "whiten": True,
            "critic_lr": 2.0e-4,
            # AdamW weight decay of the critic (the papers are silent; 0.01 is verl's critic default)
            "critic_weight_decay": 0.01,
            "critic_warmup_rollouts": 2,
            "value_clip": 0.2,
        },
    },
    "shaping": {
        "none": {},
        # SPEC §4: A + min(alpha * H.detach(), |A| / kappa).
        "entropy_advantage": {"alpha": 0.4, "kappa": 2.0},
    },
    "loss": {
        # SPEC §2: clip-higher 0.2 / 0.28; optional dual clip c for A < 0.
        "clip": {"clip_low": 0.2, "clip_high": 0.28, "dual_clip": None, "aggregation": "token-mean"},
        # SPEC §7: detach the gradient of a random r-fraction of tokens with 1 < Cov < 5.
        "clip_cov": {
            "clip_low": 0.2, "clip_high": 0.28, "aggregation": "token-mean",
            "select_ratio": 2.0e-4, "cov_low": 1.0, "cov_high": 5.0,
        },
        # SPEC §7: KL penalty |logp - logp_old| on the top-k fraction of tokens by Cov.
        "kl_cov": {"aggregation": "token-mean", "select_ratio": 2.0e-3, "kl_coef": 1.0},
    },
    "regularizer": {
        "none": {},
        # SPEC §5: loss = policy_loss - coef * agg(H); coef is our assumption (not reported).
        "entropy_bonus": {"coef": 1.0e-3},
        # SPEC §6 (reconstruction): per-prompt lambda(q), target rho * H_0, adaptive alpha_t.
        "aer": {
            "allocation": "threshold", "tau": 0.4, "rho": 0.6, "eta": 1.0e-3,
            "alpha_init": 0.0, "alpha_max": 1.0e-2, "anchor_steps": 1, "target": None,
            "mode": "additive", "delta": None, "adapt": True,
        },
    },
}

_GRPO = {"estimator": {"name": "grpo"}, "shaping": {"name": "none"}, "loss": {"name": "clip"}, "regularizer": {"name": "none"}}
_PPO = {**_GRPO, "estimator": {"name": "gae"}}

# The methods the papers compare; config entries with these names need no "preset".
PRESETS: dict[str, dict[str, Any]] = {
    "grpo": _GRPO,
    "grpo_entropy_adv": {**_GRPO, "shaping": {"name": "entropy_advantage", "alpha": 0.4, "kappa": 2.0}},
    "ppo": _PPO,
    "ppo_entropy_adv": {**_PPO, "shaping": {"name": "entropy_advantage", "alpha": 0.1, "kappa": 2.0}},
    "grpo_entropy_reg": {**_GRPO, "regularizer": {"name": "entropy_bonus"}},
    # Cheng et al.'s entropy-collapse ablation: symmetric clipping, epsilon_high = 0.2.
    "grpo_no_clip_higher": {**_GRPO, "loss": {"name": "clip", "clip_high": 0.2}},
    "grpo_aer": {**_GRPO, "regularizer": {"name": "aer"}},
    "grpo_clip_cov": {**_GRPO, "loss": {"name": "clip_cov"}},
    "grpo_kl_cov": {**_GRPO, "loss": {"name": "kl_cov"}},
}

# The method each shaped/regularised method is compared against in tables.
BASELINE_OF = {
    "grpo_entropy_adv": "grpo", "ppo_entropy_adv": "ppo", "grpo_entropy_reg": "grpo",
    "grpo_no_clip_higher": "grpo", "grpo_aer": "grpo", "grpo_clip_cov": "grpo", "grpo_kl_cov": "grpo",
}

METHOD_KEYS = ("preset", "estimator", "shaping", "loss", "regularizer", "training")


def _deep_merge(base: dict, override: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def resolve_method(name: str, entry: dict | None, training_keys: set[str] | None = None) -> dict[str, Any]:
    """The full spec of method ``name`` from its config entry (preset + overrides).

    Returns ``{"name", "preset", "estimator": {...}, "shaping": {...}, "loss": {...},
    "regularizer": {...}, "training": {...overrides}}`` with every component parameter filled.
    Raises PipelineError naming ``methods.<name>.<...>`` for anything unknown.
    """
    entry = dict(entry or {})
    where = f"methods.{name}"
    for key in entry:
        if key not in METHOD_KEYS:
            raise PipelineError(f"{where}.{key}: unknown key (allowed: {', '.join(METHOD_KEYS)})")
    preset_name = entry.pop("preset", name)
    if preset_name not in PRESETS:
        raise PipelineError(
            f"{where}: unknown method '{preset_name}'; known methods: {', '.join(PRESETS)} "
            f"(a new method name needs 'preset: <known method>')"
        )
    training = entry.pop("training", {}) or {}
    if training_keys is not None:
        for key in training:
            if key not in training_keys:
                raise PipelineError(f"{where}.training.{key}: unknown training key")
    spec: dict[str, Any] = {"name": name, "preset": preset_name, "training": dict(training)}
    preset = PRESETS[preset_name]
    for component, options in COMPONENTS.items():
        override = entry.get(component, {}) or {}
        if not isinstance(override, dict):
            raise PipelineError(f"{where}.{component}: expected a mapping, got {override!r}")
        chosen = override.get("name", preset[component]["name"])
        if chosen not in options:
            raise PipelineError(f"{where}.{component}.name: unknown {component} '{chosen}' (known: {', '.join(options)})")
        params = dict(options[chosen])
        if chosen == preset[component]["name"]:
            params.update({k: v for k, v in preset[component].items() if k != "name"})
        for key, value in override.items():
            if key == "name":
                continue
            if key not in params:
                raise PipelineError(
                    f"{where}.{component}.{key}: unknown parameter of {component} '{chosen}' "
                    f"(known: {', '.join(params) or 'none'})"
                )
            params[key] = value
        spec[component] = {"name": chosen, **params}
    _check_values(where, spec)
    return spec


def _check_values(where: str, spec: dict) -> None:
    def need(cond: bool, path: str, msg: str) -> None:
        if not cond:
            raise PipelineError(f"{where}.{path}: {msg}")

    sh, loss, reg, est = spec["shaping"], spec["loss"], spec["regularizer"], spec["estimator"]
    if sh["name"] == "entropy_advantage":
        need(sh["alpha"] >= 0, "shaping.alpha", f"must be >= 0, got {sh['alpha']}")
        need(sh["kappa"] > 0, "shaping.kappa", f"must be > 0, got {sh['kappa']}")
    if "clip_low" in loss:
        need(0 < loss["clip_low"] < 1, "loss.clip_low", f"must be in (0, 1), got {loss['clip_low']}")
        need(loss["clip_high"] > 0, "loss.clip_high", f"must be > 0, got {loss['clip_high']}")
    if loss.get("dual_clip") is not None:
        need(loss["dual_clip"] > 1, "loss.dual_clip", f"must be > 1, got {loss['dual_clip']}")
    if "select_ratio" in loss:
        need(0 < loss["select_ratio"] <= 1, "loss.select_ratio", f"is a fraction in (0, 1], got {loss['select_ratio']}")
    need(loss["aggregation"] in ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm"),
         "loss.aggregation", f"unknown aggregation '{loss['aggregation']}'")
    if reg["name"] == "entropy_bonus":
        need(reg["coef"] >= 0, "regularizer.coef", f"must be >= 0, got {reg['coef']}")
    if reg["name"] == "aer":
        need(reg["allocation"] in ("threshold", "linear", "normalized", "none"), "regularizer.allocation",
             f"unknown allocation '{reg['allocation']}' (threshold, linear, normalized, none)")
        need(reg["mode"] in ("additive", "bang_bang"), "regularizer.mode", f"unknown mode '{reg['mode']}'")
        need(reg["mode"] != "bang_bang" or (reg["delta"] or 0) > 0, "regularizer.delta", "bang_bang mode needs delta > 0")
        need(0 <= reg["alpha_init"] <= reg["alpha_max"], "regularizer.alpha_init", "must be in [0, alpha_max]")
        need(reg["anchor_steps"] >= 1, "regularizer.anchor_steps", "must be >= 1")
    if est["name"] == "gae":
        need(est["critic_lr"] > 0, "estimator.critic_lr", f"must be > 0, got {est['critic_lr']}")
        need(0 <= est["gamma"] <= 1 and 0 <= est["lam"] <= 1, "estimator.gamma", "gamma and lam must be in [0, 1]")
