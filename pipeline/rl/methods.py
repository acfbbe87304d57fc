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
import math
from dataclasses import dataclass
from typing import Any, Callable

from pipeline.errors import PipelineError

# --------------------------------------------------------------------------- parameters
#
# Every component's parameters: default and admissible range, declared ONCE. Config
# validation (before any job) and the functions themselves (``entropy_shaped``, the AER
# controller, ...) check values with :func:`param_problems`, so a value can never pass one
# and fail the other.

_NUMBER = (int, float)


@dataclass(frozen=True)
class Param:
    """One component parameter: its default and what values it admits.

    ``ge``/``gt``/``le``/``lt`` bound a number, ``choices`` lists the admissible values,
    ``nullable`` admits None, ``integer`` requires an int; ``why`` says why the range is
    what it is (shown in the error).
    """

    default: Any
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    choices: tuple | None = None
    nullable: bool = False
    integer: bool = False
    boolean: bool = False
    why: str = ""

    def problem(self, value: Any) -> str | None:
        """None if ``value`` is admissible, else what is wrong with it."""
        if value is None:
            return None if self.nullable else f"must not be null{self._why()}"
        if self.boolean:
            return None if isinstance(value, bool) else f"must be true or false, got {value!r}"
        if self.choices is not None:
            return None if value in self.choices else f"must be one of {', '.join(map(str, self.choices))}, got {value!r}"
        if isinstance(value, bool) or not isinstance(value, _NUMBER) or not math.isfinite(value):
            return f"must be a finite number, got {value!r}"
        if self.integer and not isinstance(value, int):
            return f"must be an integer, got {value!r}"
        for bound, ok, text in (
            (self.ge, lambda b: value >= b, ">="), (self.gt, lambda b: value > b, ">"),
            (self.le, lambda b: value <= b, "<="), (self.lt, lambda b: value < b, "<"),
        ):
            if bound is not None and not ok(bound):
                return f"must be {self.range_text()}, got {value!r}{self._why()}"
        return None

    def range_text(self) -> str:
        parts = [f"{op} {b:g}" for op, b in ((">=", self.ge), (">", self.gt), ("<=", self.le), ("<", self.lt)) if b is not None]
        return " and ".join(parts) or "any number"

    def _why(self) -> str:
        return f" ({self.why})" if self.why else ""


def _fraction(default: float) -> Param:
    return Param(default, gt=0, le=1, why="a fraction of the valid tokens, not a percentage")


_AGGREGATION = Param("token-mean", choices=("token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm"))


def _aer_rules(v: dict) -> list[tuple[str, str]]:
    out = []
    if not v["alpha_init"] <= v["alpha_max"]:
        out.append(("alpha_init", f"must be <= alpha_max ({v['alpha_max']!r}), got {v['alpha_init']!r}"))
    if v["mode"] == "bang_bang" and v["delta"] is None:
        out.append(("delta", "bang_bang mode needs delta > 0"))
    return out


def _cov_rules(v: dict) -> list[tuple[str, str]]:
    return [] if v["cov_low"] < v["cov_high"] else [("cov_low", f"must be < cov_high ({v['cov_high']!r}), got {v['cov_low']!r}")]


# --------------------------------------------------------------------------- the registry
#
# ONE entry per component: its kind and name, the function that implements it, and its
# parameters (default and range). The function is named by import path ("module:function")
# and imported only where a job runs it (pipeline.rl.registry.lookup), so the workflow
# resolves and validates methods without importing torch; a callable is accepted too (a
# component registered in the process that uses it, e.g. a notebook or a test).

KINDS = ("estimator", "shaping", "loss", "regularizer")


@dataclass(frozen=True)
class Component:
    function: Any                       # "module:function" (or class), or the callable itself
    params: dict[str, Param]
    rules: Callable[[dict], list[tuple[str, str]]] | None = None  # checks across parameters
    select: Any = None                  # losses: the token selection over the whole mini-batch

    @property
    def defaults(self) -> dict[str, Any]:
        return {key: p.default for key, p in self.params.items()}


REGISTRY: dict[str, dict[str, Component]] = {kind: {} for kind in KINDS}


def register(kind: str, name: str, function, *, rules=None, select=None, **params: Param) -> Component:
    """Register component ``name`` of ``kind``: its function and its parameters, once."""
    if kind not in REGISTRY:
        raise ValueError(f"unknown component kind {kind!r}; known: {', '.join(KINDS)}")
    bad = [key for key, p in params.items() if not isinstance(p, Param)]
    if bad:
        raise TypeError(f"{kind} {name!r}: parameters {bad} must be declared as Param(default, ...)")
    REGISTRY[kind][name] = component = Component(function, dict(params), rules, select)
    return component


def component(kind: str, name: str) -> Component:
    """The registered component; KeyError listing the known names of its kind."""
    try:
        return REGISTRY[kind][name]
    except KeyError:
        known = ", ".join(REGISTRY.get(kind, {})) or "none"
        raise KeyError(f"unknown {kind} {name!r}; known: {known}") from None


_R = "pipeline.rl.registry"
# A_i = (s_i - mean(s)) / (std(s) + eps), unbiased std; scale=False is Dr.GRPO.
register("estimator", "grpo", f"{_R}:grpo_estimator", eps=Param(1e-6, ge=0), scale=Param(True, boolean=True))
# GAE with gamma = lambda = 1, whitened over the batch; critic settings.
register(
    "estimator", "gae", f"{_R}:gae_estimator",
    gamma=Param(1.0, ge=0, le=1), lam=Param(1.0, ge=0, le=1), whiten=Param(True, boolean=True),
    critic_lr=Param(2.0e-4, gt=0),
    # AdamW weight decay of the critic (the papers are silent; 0.01 is verl's critic default)
    critic_weight_decay=Param(0.01, ge=0),
    critic_warmup_rollouts=Param(2, ge=0, integer=True), value_clip=Param(0.2, gt=0, nullable=True),
)
register("shaping", "none", f"{_R}:no_shaping")
# Cheng et al.: A + min(alpha * H.detach(), |A| / kappa).
register(
    "shaping", "entropy_advantage", f"{_R}:entropy_advantage",
    alpha=Param(0.4, ge=0),
    kappa=Param(2.0, ge=1, why="kappa < 1 would let the entropy term flip the sign of a negative advantage"),
)
# clip-higher 0.2 / 0.28; optional dual clip c for A < 0.
register(
    "loss", "clip", f"{_R}:clip_loss",
    clip_low=Param(0.2, gt=0, lt=1), clip_high=Param(0.28, gt=0), dual_clip=Param(None, gt=1, nullable=True),
    aggregation=_AGGREGATION,
)
# Cui et al.: detach the gradient of a random r-fraction of tokens with cov_low < Cov < cov_high.
register(
    "loss", "clip_cov", f"{_R}:clip_cov_loss", rules=_cov_rules, select=f"{_R}:clip_cov_select",
    clip_low=Param(0.2, gt=0, lt=1), clip_high=Param(0.28, gt=0), aggregation=_AGGREGATION,
    select_ratio=_fraction(2.0e-4), cov_low=Param(1.0), cov_high=Param(5.0),
)
# Cui et al.: KL penalty |logp - logp_old| on the top-k fraction of tokens by Cov.
register(
    "loss", "kl_cov", f"{_R}:kl_cov_loss", select=f"{_R}:kl_cov_select",
    aggregation=_AGGREGATION, select_ratio=_fraction(2.0e-3), kl_coef=Param(1.0, ge=0),
)
register("regularizer", "none", f"{_R}:NoRegularizer")
# loss = policy_loss - coef * agg(H); coef is our assumption (not reported).
register("regularizer", "entropy_bonus", f"{_R}:EntropyBonus", coef=Param(1.0e-3, ge=0))
# AER (reconstruction): per-prompt lambda(q), target rho * H_0, adaptive alpha_t.
register(
    "regularizer", "aer", f"{_R}:AdaptiveEntropy", rules=_aer_rules,
    allocation=Param("threshold", choices=("threshold", "linear", "normalized", "none")),
    tau=Param(0.4, ge=0, le=1), rho=Param(0.6, gt=0), eta=Param(1.0e-3, ge=0),
    alpha_init=Param(0.0, ge=0), alpha_max=Param(1.0e-2, ge=0), anchor_steps=Param(1, ge=1, integer=True),
    target=Param(None, ge=0, nullable=True, why="an absolute target entropy in nats"),
    mode=Param("additive", choices=("additive", "bang_bang")), delta=Param(None, gt=0, nullable=True),
    adapt=Param(True, boolean=True),
)


def param_problems(kind: str, name: str, values: dict) -> list[tuple[str, str]]:
    """``(parameter, problem)`` for every inadmissible value of component ``kind``/``name``."""
    entry = component(kind, name)
    found = [(key, problem) for key, p in entry.params.items() if key in values and (problem := p.problem(values[key]))]
    if entry.rules and not found and set(entry.params) <= set(values):
        found += entry.rules(values)
    return found


def check_params(kind: str, name: str, values: dict) -> None:
    """ValueError naming the first inadmissible parameter (for the functions themselves)."""
    problems = param_problems(kind, name, values)
    if problems:
        key, problem = problems[0]
        raise ValueError(f"{kind} '{name}': {key} {problem}")


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
    for kind, options in REGISTRY.items():
        override = entry.get(kind, {}) or {}
        if not isinstance(override, dict):
            raise PipelineError(f"{where}.{kind}: expected a mapping, got {override!r}")
        chosen = override.get("name", preset[kind]["name"])
        if chosen not in options:
            raise PipelineError(f"{where}.{kind}.name: unknown {kind} '{chosen}' (known: {', '.join(options)})")
        params = options[chosen].defaults
        if chosen == preset[kind]["name"]:
            params.update({k: v for k, v in preset[kind].items() if k != "name"})
        for key, value in override.items():
            if key == "name":
                continue
            if key not in params:
                raise PipelineError(
                    f"{where}.{kind}.{key}: unknown parameter of {kind} '{chosen}' "
                    f"(known: {', '.join(params) or 'none'})"
                )
            params[key] = value
        spec[kind] = {"name": chosen, **params}
    _check_values(where, spec)
    return spec


def _check_values(where: str, spec: dict) -> None:
    for kind in REGISTRY:
        chosen = spec[kind]
        values = {k: v for k, v in chosen.items() if k != "name"}
        for key, problem in param_problems(kind, chosen["name"], values):
            raise PipelineError(f"{where}.{kind}.{key}: {problem}")
