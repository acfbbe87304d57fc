"""Methods are presets of registered components; config overrides any parameter."""

import pytest

from pipeline.errors import PipelineError
from pipeline.rl import registry
from pipeline.rl.methods import PRESETS, REGISTRY, component, resolve_method


def test_every_preset_resolves_to_registered_components():
    for name in PRESETS:
        spec = resolve_method(name, {})
        for kind in REGISTRY:
            assert spec[kind]["name"] in REGISTRY[kind]
    # every registered component's function imports, and takes its declared parameters
    import inspect

    for kind, options in REGISTRY.items():
        for name, entry in options.items():
            fn = registry.lookup(kind, name)
            accepted = inspect.signature(fn.__init__ if inspect.isclass(fn) else fn).parameters
            takes_any = any(p.kind == p.VAR_KEYWORD for p in accepted.values())
            assert takes_any or set(entry.params) <= set(accepted), (kind, name)


def test_unknown_components_are_refused_with_the_known_names():
    with pytest.raises(KeyError, match="known: none, entropy_advantage"):
        component("shaping", "entropy_scaled")
    with pytest.raises(ValueError, match="known: estimator, shaping, loss, regularizer"):
        __import__("pipeline.rl.methods", fromlist=["register"]).register("shapings", "x", "m:f")
    with pytest.raises(TypeError, match="Param"):
        __import__("pipeline.rl.methods", fromlist=["register"]).register("shaping", "x", "m:f", beta=0.5)


def test_paper_hyperparameters():
    assert resolve_method("grpo_entropy_adv", {})["shaping"] == {"name": "entropy_advantage", "alpha": 0.4, "kappa": 2.0}
    assert resolve_method("ppo_entropy_adv", {})["shaping"]["alpha"] == 0.1
    grpo = resolve_method("grpo", {})["loss"]
    assert (grpo["clip_low"], grpo["clip_high"], grpo["aggregation"]) == (0.2, 0.28, "token-mean")
    assert resolve_method("grpo_no_clip_higher", {})["loss"]["clip_high"] == 0.2
    assert resolve_method("ppo", {})["estimator"]["gamma"] == 1.0
    assert resolve_method("grpo_kl_cov", {})["loss"]["select_ratio"] == 2e-3
    assert resolve_method("grpo_clip_cov", {})["loss"]["select_ratio"] == 2e-4


def test_overrides_and_new_names_with_a_preset():
    spec = resolve_method("adv_a02", {"preset": "grpo_entropy_adv", "shaping": {"alpha": 0.2}, "training": {"lr": 1e-5}})
    assert spec["shaping"]["alpha"] == 0.2 and spec["shaping"]["kappa"] == 2.0
    assert spec["training"] == {"lr": 1e-5}
    # switching a component by name starts from that component's defaults
    spec = resolve_method("grpo", {"loss": {"name": "kl_cov", "kl_coef": 2.0}})
    assert spec["loss"] == {"name": "kl_cov", "aggregation": "token-mean", "select_ratio": 2e-3, "kl_coef": 2.0}


@pytest.mark.parametrize(
    "entry, fragment",
    [
        ({"shaping": {"alpah": 0.1}}, "methods.m.shaping.alpah"),
        ({"loss": {"name": "ppo2"}}, "methods.m.loss.name"),
        ({"preset": "dapo"}, "unknown method 'dapo'"),
        ({"regularizer": {"name": "aer", "allocation": "cubic"}}, "methods.m.regularizer.allocation"),
        ({"loss": {"aggregation": "sum"}}, "methods.m.loss.aggregation"),
    ],
)
def test_bad_method_entries(entry, fragment):
    with pytest.raises(PipelineError) as err:
        resolve_method("m", {"preset": "grpo", **entry} if "preset" not in entry else entry)
    assert fragment in str(err.value)


# ----------------------------------------------------------------------------- one range per parameter


def test_kappa_below_one_is_refused_before_any_job():
    """It used to pass validation (> 0) and crash the train job (entropy_shaped wants >= 1)."""
    from pipeline.config import ConfigError, check_config

    config = {"suites": {"s": {"problems": 2, "difficulties": [1], "k": 1, "n_samples": 1}},
              "methods": {"grpo_entropy_adv": {"shaping": {"kappa": 0.5}}}, "seeds": [0]}
    with pytest.raises(ConfigError, match=r"methods\.grpo_entropy_adv\.shaping\.kappa.*>= 1"):
        check_config(config)


def _outside(p):
    """A value just outside a declared numeric bound (None when the parameter has none)."""
    if p.ge is not None:
        return p.ge - (1 if p.integer else 1e-3)
    if p.gt is not None:
        return p.gt
    if p.le is not None:
        return p.le + 1e-3
    if p.lt is not None:
        return p.lt
    return None


def _function_check(kind, name, values):
    """Run the component's own implementation on ``values`` (ValueError if it refuses them)."""
    import torch

    from pipeline.rl.advantages import entropy_shaped
    from pipeline.rl.aer import AERController

    if (kind, name) == ("shaping", "entropy_advantage"):
        entropy_shaped(torch.ones(2, 3), torch.ones(2, 3), **values)
    elif (kind, name) == ("regularizer", "aer"):
        AERController(**values)


@pytest.mark.parametrize(
    "kind, name, key",
    [(k, n, key) for k, opts in REGISTRY.items()
     for n, entry in opts.items() for key, p in entry.params.items() if _outside(p) is not None],
)
def test_config_and_implementation_agree_on_every_bound(kind, name, key):
    p = component(kind, name).params[key]
    preset = {"estimator": "grpo", "shaping": "grpo", "loss": "grpo", "regularizer": "grpo"}[kind]
    bad = _outside(p)
    with pytest.raises(PipelineError, match=rf"\.{kind}\.{key}: must be"):
        resolve_method("m", {"preset": preset, kind: {"name": name, key: bad}})
    values = {**component(kind, name).defaults, key: bad}
    if (kind, name) in (("shaping", "entropy_advantage"), ("regularizer", "aer")):
        with pytest.raises(ValueError, match=key):
            _function_check(kind, name, values)
    # the default itself is admissible to both
    resolve_method("m", {"preset": preset, kind: {"name": name}})
    _function_check(kind, name, component(kind, name).defaults)


def test_methods_listing_shows_effective_parameters(capsys):
    """`python -m pipeline methods`: what `grpo_entropy_adv: {}` in config.yaml trains with."""
    from pathlib import Path

    from pipeline.cli import main

    root = Path(__file__).resolve().parents[1]
    assert main(["methods", "--config", str(root / "config.yaml")]) == 0
    out = capsys.readouterr().out
    assert "grpo_entropy_adv\n" in out and "shaping:     entropy_advantage (alpha: 0.4, kappa: 2)" in out
    assert "regularizer: aer (" in out and "eta: 1," in out  # config.yaml's override, with the other defaults
    assert main(["methods", "--config", str(root / "configs" / "toy_study.yaml")]) == 0
    out = capsys.readouterr().out
    assert "grpo_entropy_reg_large  (preset grpo_entropy_reg)" in out and "entropy_bonus (coef: 0.01)" in out


def test_worked_example_new_shaping_trains(tmp_path, tiny_model_dir, train_file, monkeypatch):
    """docs/methods.md "Adding a shaping function": the steps shown there, executed."""
    import json

    from pipeline.cli import main
    from pipeline.config import method_specs
    from pipeline.rl import methods
    from pipeline.rl.methods import Param

    def entropy_scaled(advantages, entropy, beta):
        return advantages * (1.0 + beta * entropy.detach())

    monkeypatch.setitem(methods.REGISTRY, "shaping", dict(methods.REGISTRY["shaping"]))  # undone after the test
    methods.register("shaping", "entropy_scaled", entropy_scaled, beta=Param(0.5, ge=0))  # the one registration
    training = {"rollouts": 1, "prompts_per_rollout": 4, "group_size": 4, "minibatch_prompts": 2, "epochs": 1,
                "lr": 1e-3, "weight_decay": 0.0, "grad_clip": 1.0, "temperature": 1.0, "top_p": 1.0,
                "max_new_tokens": 16, "entropy_chunk_size": None}
    cfg = {"methods": {"grpo_entropy_scaled": {"preset": "grpo", "shaping": {"name": "entropy_scaled", "beta": 0.3}}},
           "training": training}
    spec = method_specs(cfg)["grpo_entropy_scaled"]
    assert spec["shaping"] == {"name": "entropy_scaled", "beta": 0.3}
    with pytest.raises(Exception, match="beta"):
        method_specs({**cfg, "methods": {"x": {"preset": "grpo", "shaping": {"name": "entropy_scaled", "beta": -1}}}})
    out = tmp_path / "run"
    assert main(["train", "--base-model", str(tiny_model_dir), "--train-problems", str(train_file),
                 "--method-json", json.dumps(spec), "--seed", "0", "--template", "{problem}\n",
                 "--out-model", str(out / "model"), "--metrics", str(out / "metrics.jsonl"),
                 "--checkpoint-dir", str(out / "ckpt")]) == 0
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2


def test_the_math_functions_defaults_are_the_registered_ones():
    """The tensor functions under the registry keep keyword defaults for direct use (tests,
    notebooks); each equals the registered default, so the registration stays the one source."""
    import inspect

    from pipeline.rl import advantages, losses

    cases = [
        (advantages.grpo_advantages, ("estimator", "grpo"), {}),
        (losses.clipped_surrogate, ("loss", "clip"), {"agg": "aggregation"}),
        (losses.clipped_surrogate_per_token, ("loss", "clip"), {}),
        (losses.clip_cov_loss, ("loss", "clip_cov"), {"agg": "aggregation"}),
        (losses.value_loss, ("estimator", "gae"), {"clip": "value_clip", "agg": None}),
    ]
    for fn, (kind, name), renamed in cases:
        registered = component(kind, name).defaults
        for arg, p in inspect.signature(fn).parameters.items():
            key = renamed.get(arg, arg)
            if p.default is inspect.Parameter.empty or key is None or key not in registered:
                continue
            assert p.default == registered[key], (fn.__name__, arg, p.default, registered[key])
    from pipeline.rl.aer import AERController

    assert AERController().alpha == component("regularizer", "aer").defaults["alpha_init"]
    with pytest.raises(TypeError, match="unknown parameter"):
        AERController(rhoo=0.5)
