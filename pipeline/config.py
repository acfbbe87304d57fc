"""Config validation: JSON schema (defaults filled) plus the checks a schema cannot express.

Import-light (no torch): the Snakefile calls :func:`check_config` before building the DAG,
so a typo stops the run with one message naming the key, before any job starts.
"""

from __future__ import annotations

import os
from typing import Any

import yaml

from pipeline.errors import PipelineError
from pipeline.rl.methods import resolve_method
from pipeline.schema import ConfigError, load_schema, validate_schema

# The schema and its error type live in pipeline.schema (public; analysis.settings uses it too).
__all__ = ["ConfigError", "check_config", "load_config", "load_schema", "method_specs", "validate_schema"]


def check_config(config: dict) -> dict:
    """Schema validation, defaults, and cross-field checks. Returns the (filled) config."""
    config = validate_schema(config)
    for name, suite in config["suites"].items():
        if suite["k"] > suite["n_samples"]:
            raise ConfigError(
                f"config key 'suites.{name}.k': Pass@{suite['k']} needs at least k samples per problem, "
                f"but n_samples is {suite['n_samples']}"
            )
        if config["world"] == "toy" and suite.get("benchmark") not in (None, "custom"):
            raise ConfigError(
                f"config key 'suites.{name}.benchmark': a toy-world suite is generated (problems, difficulties) "
                "or read from your own file (benchmark: custom); the paper benchmarks need world: hub"
            )
        toy_generated = config["world"] == "toy" and suite.get("benchmark") != "custom"
        required = ("problems", "difficulties") if toy_generated else ("benchmark",)
        for key in required:
            if key not in suite:
                raise ConfigError(f"config key 'suites.{name}.{key}': required for a {config['world']}-world suite")
    custom = [(f"suites.{n}", e) for n, e in config["suites"].items()] + [("train_data", config.get("train_data") or {})]
    for where, entry in custom:
        if entry.get("benchmark") != "custom":
            continue
        if not entry.get("fields"):
            raise ConfigError(f"config key '{where}.fields': a custom benchmark maps problem and answer to its columns")
        if not (entry.get("repo_id") or entry.get("data_files") or entry.get("path")):
            raise ConfigError(f"config key '{where}': a custom benchmark needs data_files (a local file), path or repo_id")
        if entry.get("repo_id") and not (entry.get("revision") or entry.get("data_files") or entry.get("path")):
            raise ConfigError(f"config key '{where}.revision': a hub dataset is read at a pinned commit (40 hex digits)")
    if not config["methods"] and not config["eval_models"]:
        raise ConfigError("config key 'methods': at least one method to train, or models to evaluate under 'eval_models'")
    for name, entry in config["eval_models"].items():
        if ("path" in entry) == ("repo_id" in entry):
            raise ConfigError(f"config key 'eval_models.{name}': give exactly one of path (a local directory) or repo_id")
        if "repo_id" in entry and "revision" not in entry:
            raise ConfigError(f"config key 'eval_models.{name}.revision': a hub model is evaluated at a pinned commit (40 hex digits)")
        if name in config["methods"]:
            raise ConfigError(f"config key 'eval_models.{name}': also the name of a method")
        if name == "base" and config["methods"]:
            raise ConfigError("config key 'eval_models.base': 'base' is the trained methods' own base model here")
    if config["world"] == "hub" and config["methods"]:
        if "benchmark" not in config.get("train_data", {}):
            raise ConfigError("config key 'train_data.benchmark': required in the hub world")
    if config["world"] == "hub" and config["methods"]:
        hub = config["base_model"].get("hub") or {}
        # The revision itself is enforced when the model is fetched (a dry run needs none).
        if not hub.get("local_path") and not hub.get("repo_id"):
            raise ConfigError("config key 'base_model.hub': needs repo_id (with a pinned revision) or local_path")
    training_keys = set(load_schema()["properties"]["training"]["properties"])
    for name, entry in config["methods"].items():
        try:
            spec = resolve_method(name, entry, training_keys)
        except PipelineError as err:
            key, _, message = str(err).partition(": ")
            raise ConfigError(f"config key '{key}': {message}") from None
        merged = {**config["training"], **spec["training"]}
        _check_training(f"methods.{name}.training", merged)
    _check_training("training", config["training"])
    weights = config["base_model"]["sft"]["difficulty_weights"]
    if sum(weights) <= 0:
        raise ConfigError("config key 'base_model.sft.difficulty_weights': at least one weight must be > 0")
    arch = config["base_model"]["architecture"]
    if arch["hidden_size"] % arch["num_heads"]:
        raise ConfigError("config key 'base_model.architecture.num_heads': must divide hidden_size")
    if arch.get("num_kv_heads") and arch["num_heads"] % arch["num_kv_heads"]:
        raise ConfigError("config key 'base_model.architecture.num_kv_heads': must divide num_heads")
    if config["base_model"]["replicates"] and config["world"] != "toy":
        raise ConfigError("config key 'base_model.replicates': only the toy world builds its base models (hub: one pretrained model)")
    _check_grader(config["grader"])
    _check_paths(config)
    from pipeline.analysis.settings import check_analysis_config  # after the schema filled its defaults

    try:
        check_analysis_config(config)
    except ConfigError:
        raise
    except PipelineError as err:
        raise ConfigError(str(err)) from None
    _check_comparisons(config)
    return config


# Tables the pipeline writes itself: a comparison may not take their names.
RESERVED_TABLES = ("main", "comparisons", "crossing", "claims", "passk_curves")


def _check_comparisons(config: dict) -> None:
    """report.comparisons: every listed method is one this config trains (or evaluates)."""
    known = set(config["methods"]) | {"base"} | set(config["eval_models"])
    for name, methods in config["report"]["comparisons"].items():
        if name in RESERVED_TABLES or name.startswith("exploration"):
            raise ConfigError(f"config key 'report.comparisons.{name}': the pipeline writes a table of that name itself")
        missing = [m for m in methods if m not in known]
        if missing:
            raise ConfigError(
                f"config key 'report.comparisons.{name}': {', '.join(missing)} not configured "
                f"(methods: {', '.join(config['methods']) or 'none'})"
            )


def _check_grader(grader: str) -> None:
    """A ``module:function`` grader must be importable (checked without running it)."""
    if ":" not in grader:
        return
    import importlib.util

    module = grader.partition(":")[0]
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise ConfigError(f"config key 'grader': cannot find module {module!r} of grader {grader!r} (is it importable here?)")


def path_keys(config: dict) -> list[tuple[str, str]]:
    """Every (config key, path) the config holds: outputs, caches, local inputs."""
    found = [("results_dir", config["results_dir"])]
    sections = [(f"suites.{name}", suite) for name, suite in config["suites"].items()]
    sections.append(("train_data", config.get("train_data") or {}))
    for where, section in sections:
        for key in ("path", "cache_dir"):
            if isinstance(section.get(key), str):
                found.append((f"{where}.{key}", section[key]))
        files = section.get("data_files")
        for i, f in enumerate([files] if isinstance(files, str) else files or []):
            found.append((f"{where}.data_files" + ("" if isinstance(files, str) else f"[{i}]"), f))
    launch = (config.get("distributed") or {}).get("accelerate_config")
    if isinstance(launch, str):
        found.append(("distributed.accelerate_config", launch))
    local = (config["base_model"].get("hub") or {}).get("local_path")
    if isinstance(local, str):
        found.append(("base_model.hub.local_path", local))
    return found


def _check_paths(config: dict) -> None:
    """Paths stay inside the working directory unless ``allow_absolute_paths`` says otherwise;
    ``results_dir`` must be a subdirectory (never the project directory itself)."""
    allow = config["allow_absolute_paths"]
    for key, value in path_keys(config):
        if "://" in value:  # a URL (e.g. hf://), not a local path
            continue
        if not allow:
            if os.path.isabs(value) or value.startswith("~"):
                raise ConfigError(
                    f"config key '{key}': absolute path {value!r} is outside the project directory "
                    "(set allow_absolute_paths: true to allow it)"
                )
            normal = os.path.normpath(value)
            if normal == ".." or normal.startswith(".." + os.sep):
                raise ConfigError(
                    f"config key '{key}': path {value!r} leads out of the project directory "
                    "(set allow_absolute_paths: true to allow it)"
                )
        if key == "results_dir" and os.path.normpath(value) in (".", os.sep):
            raise ConfigError(f"config key 'results_dir': {value!r} is the project directory itself; name a subdirectory")


def _check_training(where: str, training: dict) -> None:
    if training["minibatch_prompts"] > training["prompts_per_rollout"]:
        raise ConfigError(f"config key '{where}.minibatch_prompts': larger than prompts_per_rollout")
    if training["prompts_per_rollout"] % training["minibatch_prompts"]:
        raise ConfigError(f"config key '{where}.minibatch_prompts': must divide prompts_per_rollout")
    if training.get("old_log_probs") == "rollout" and (training["rollout_backend"] != "hf" or training["precision"] != "fp32"):
        raise ConfigError(
            f"config key '{where}.old_log_probs': 'rollout' reuses the HF sampler's fp32 log-probs; with "
            f"rollout_backend {training['rollout_backend']!r} / precision {training['precision']!r} they are not "
            "the trainer's own, so use 'recompute'"
        )


def method_specs(config: dict) -> dict[str, dict[str, Any]]:
    """Every configured method fully resolved, with its effective training settings merged in."""
    specs = {}
    for name, entry in config["methods"].items():
        spec = resolve_method(name, entry)
        spec["training"] = {**config["training"], **spec["training"]}
        specs[name] = spec
    return specs


def load_config(path: str) -> dict:
    with open(path) as fh:
        return check_config(yaml.safe_load(fh) or {})
