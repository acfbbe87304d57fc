# Shared helpers: config validation, output paths, config slices and code hashes.

import hashlib
import json
import os
import sys
from pathlib import Path

from snakemake.utils import validate

sys.path.insert(0, workflow.basedir)  # the pipeline package, also when not pip-installed
from pipeline.config import ConfigError, check_config, method_specs
from pipeline.io import stable_seed
from pipeline.rl.methods import BASELINE_OF

# One message naming the key, before any job starts (see pipeline/config.py), then
# Snakemake's own schema validation (fills the same defaults).
try:
    check_config(config)
except ConfigError as err:
    raise WorkflowError(f"invalid config: {err}") from None
validate(config, "../pipeline/schemas/config.schema.yaml")

RESULTS = config["results_dir"]
LOGS = f"{RESULTS}/logs"
BENCH = f"{RESULTS}/benchmarks/rules"
# Jobs run `python` from the environment Snakemake itself runs in (e.g. .venv), even when
# that environment is not activated; with --software-deployment-method conda, the rule's
# conda environment comes first instead.
shell.prefix(f'export PATH="{os.path.dirname(sys.executable)}:$PATH"; ')
ENV = "../envs/pipeline.yaml"
# vLLM pins its own torch and needs CUDA: the sampling rule gets its own environment then.
SAMPLE_ENV = "../envs/vllm.yaml" if config["sampling"]["backend"] == "vllm" else ENV
METHODS = method_specs(config)
# Training with vLLM rollouts runs in the vLLM environment (vLLM's own torch and CUDA).
TRAIN_ENV = "../envs/vllm.yaml" if any(m["training"]["rollout_backend"] == "vllm" for m in METHODS.values()) else ENV
SEEDS = config["seeds"]
SUITES = list(config["suites"])
TRAINED = [f"{m}/seed{s}" for m in METHODS for s in SEEDS]
MODELS = ["base"] + TRAINED


wildcard_constraints:
    method="[A-Za-z0-9][A-Za-z0-9_.-]*",
    seed=r"\d+",
    suite="[A-Za-z0-9][A-Za-z0-9_.-]*",
    model=r"base|[A-Za-z0-9][A-Za-z0-9_.-]*/seed\d+",


def as_json(obj):
    """A config slice as a canonical JSON string: a plain param Snakemake can compare."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def code_hash(*paths):
    """Hash of the package sources behind a job (Snakemake cannot see imported modules).

    Paths are relative to pipeline/; a directory means every .py file below it.
    """
    digest = hashlib.sha256()
    root = Path(workflow.basedir) / "pipeline"
    for rel in paths:
        target = root / rel
        files = sorted(target.rglob("*.py")) if target.is_dir() else [target]
        for f in files:
            digest.update(str(f.relative_to(root)).encode())
            digest.update(f.read_bytes())
    return digest.hexdigest()[:16]


# Modules every stage depends on, and the sampler (used by base model, training, sampling).
CORE_CODE = ("__init__.py", "cli.py", "errors.py", "io.py")
SAMPLER_CODE = ("sampling/base.py", "sampling/hf.py")


# What defines a suite's problems (not how it is evaluated): changing K or n must not
# regenerate the data and rerun everything downstream.
SUITE_EVAL_KEYS = ("k", "n_samples")


def suites_data_slice():
    return {name: {k: v for k, v in suite.items() if k not in SUITE_EVAL_KEYS} for name, suite in config["suites"].items()}


def trainer_launcher():
    """The trainer's launcher (one process, or resources.train.gpu processes through
    `accelerate launch` with the configured accelerate config file)."""
    launch_config = config["distributed"]["accelerate_config"]
    processes = config["resources"]["train"]["gpu"]
    if not launch_config or processes <= 1:
        return "python -m pipeline"
    return f"accelerate launch --config_file {launch_config} --num_processes {processes} -m pipeline"


def model_dir(wildcards):
    if wildcards.model == "base":
        return rules.build_base_model.output.model
    return f"{RESULTS}/models/{wildcards.model}"  # <method>/seed<s>


def comparison_tables():
    """Table-3-style side-by-side comparisons that the configured methods allow."""
    tables = {}
    if {"grpo_entropy_reg", "grpo_entropy_adv"} <= set(METHODS):
        tables["table3"] = ["grpo", "grpo_entropy_reg", "grpo_entropy_adv"] if "grpo" in METHODS else [
            "grpo_entropy_reg", "grpo_entropy_adv"]
    control = [m for m in ("grpo", "grpo_entropy_reg", "grpo_aer", "grpo_clip_cov", "grpo_kl_cov") if m in METHODS]
    if len(control) > 1 and any(m in METHODS for m in ("grpo_aer", "grpo_clip_cov", "grpo_kl_cov")):
        tables["entropy_control"] = control
    return tables
