"""Stage ``methods``: every configured method with its effective parameters, defaults filled.

    python -m pipeline methods [--config config.yaml] [--json]

Shows what a config entry like ``grpo_entropy_adv: {}`` trains with (``shaping:
entropy_advantage (alpha: 0.4, kappa: 2)``), from the same resolution the workflow passes to
the trainer (:func:`pipeline.config.method_specs`), and the training keys a method overrides.
"""

from __future__ import annotations

import argparse
import json

COMPONENT_ORDER = ("estimator", "shaping", "loss", "regularizer")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default="config.yaml", help="the config file (default: config.yaml)")
    parser.add_argument("--json", action="store_true", help="print the resolved specs as JSON")


def _value(v) -> str:
    return "null" if v is None else (f"{v:g}" if isinstance(v, float) else str(v))


def describe(name: str, spec: dict, training: dict) -> list[str]:
    lines = [f"{name}" + (f"  (preset {spec['preset']})" if spec["preset"] != name else "")]
    for component in COMPONENT_ORDER:
        params = {k: v for k, v in spec[component].items() if k != "name"}
        inner = ", ".join(f"{k}: {_value(v)}" for k, v in params.items())
        lines.append(f"  {component + ':':<13}{spec[component]['name']}" + (f" ({inner})" if inner else ""))
    overrides = {k: v for k, v in spec["training"].items() if training.get(k) != v}
    if overrides:
        lines.append("  training:    " + ", ".join(f"{k}: {_value(v)}" for k, v in overrides.items()))
    return lines


def run(args: argparse.Namespace) -> int:
    from pipeline.config import load_config, method_specs

    config = load_config(args.config)
    specs = method_specs(config)
    if args.json:
        print(json.dumps(specs, indent=2, sort_keys=True))
        return 0
    if not specs:
        print(f"{args.config}: no methods (eval_models only)")
    for name, spec in specs.items():
        print("\n".join(describe(name, spec, config["training"])))
    return 0
