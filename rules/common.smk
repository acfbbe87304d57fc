# Shared helpers: config validation, output paths, config slices and code hashes.

import json
import os
import shlex
import sys
from pathlib import Path

from snakemake.settings.types import DeploymentMethod
from snakemake.utils import validate

sys.path.insert(0, workflow.basedir)  # the pipeline package, also when not pip-installed
from pipeline.codehash import stage_code_hash
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
METHODS = method_specs(config)

# ---- software: which Python each rule runs
# vLLM pins its own torch: the rules that use it (sampling with sampling.backend vllm,
# training when a method has training.rollout_backend vllm) run in a second environment.
#  * --software-deployment-method conda: each rule's conda environment (envs/*.yaml),
#    `python` from it;
#  * otherwise `environments:` in config names a virtual environment per kind (`make
#    vllm-env` builds .venv-vllm), null = the interpreter running Snakemake (e.g. .venv).
# The interpreter's path is interpolated, not a param: results stay valid on a machine
# whose environments live elsewhere.
USES_VLLM_SAMPLING = config["sampling"]["backend"] == "vllm"
USES_VLLM_ROLLOUTS = any(m["training"]["rollout_backend"] == "vllm" for m in METHODS.values())
CONDA = DeploymentMethod.CONDA in workflow.deployment_settings.deployment_method
ENV = "../envs/pipeline.yaml"
SAMPLE_ENV = "../envs/vllm.yaml" if USES_VLLM_SAMPLING else ENV
TRAIN_ENV = "../envs/vllm.yaml" if USES_VLLM_ROLLOUTS else ENV


def env_python(kind):
    """The interpreter of the `environments.<kind>` virtual environment (see above)."""
    if CONDA:
        return "python"
    env = config["environments"][kind] or (config["environments"]["pipeline"] if kind != "pipeline" else None)
    if env is None:
        return sys.executable
    exe = os.path.abspath(os.path.join(env, "bin", "python"))
    needed = kind == "pipeline" or (USES_VLLM_SAMPLING or USES_VLLM_ROLLOUTS)
    if needed and not os.path.exists(exe):
        print(f"warning: environments.{kind}: {exe} does not exist (make {'vllm-env' if kind == 'vllm' else 'install'})", file=sys.stderr)
    return shlex.quote(exe)


PY = env_python("pipeline")
PY_VLLM = env_python("vllm")
SAMPLE_PY = PY_VLLM if USES_VLLM_SAMPLING else PY
TRAIN_PY = PY_VLLM if USES_VLLM_ROLLOUTS else PY
TOY = config["world"] == "toy"  # the generated world (the hub world: the papers' data and models)
SEEDS = config["seeds"]
SUITES = list(config["suites"])
TRAINED = [f"{m}/seed{s}" for m in METHODS for s in SEEDS]
# base_model.replicates (toy world): a base model per seed, SFT'd with its own seed, so that a
# replicate is a whole world (base model and RL run); otherwise one base model for every seed.
BASE_REPLICATES = bool(config["base_model"]["replicates"])
BASE_MODELS = ([f"base/seed{s}" for s in SEEDS] if BASE_REPLICATES else ["base"]) if METHODS else []
# eval_models: evaluated as they are. The one named "base" is the model id "base" (the
# reference of crossing points and comparisons); the others are "eval/<name>".
EVAL_MODELS = {("base" if name == "base" else f"eval/{name}"): {**entry, "name": name} for name, entry in config["eval_models"].items()}
MODELS = BASE_MODELS + TRAINED + list(EVAL_MODELS)
# the rows of the tables: the trained methods, then the evaluated models (besides "base")
ROWS = list(METHODS) + [name for name in config["eval_models"] if name != "base"]


wildcard_constraints:
    method="[A-Za-z0-9][A-Za-z0-9_.-]*",
    seed=r"\d+",
    suite="[A-Za-z0-9][A-Za-z0-9_.-]*",
    model=r"base|[A-Za-z0-9][A-Za-z0-9_.-]*/seed\d+|eval/[A-Za-z0-9][A-Za-z0-9_.-]*",


def as_json(obj):
    """A config slice as a canonical JSON string: a plain param Snakemake can compare."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def code_hash(stage, grader=None, data_files=()):
    """Hash of every package source that `python -m pipeline <stage>` may run (the static
    import closure of the stage's module, pipeline/codehash.py), of the module behind a
    `module:function` grader, and of package data files (pipeline/-relative): Snakemake
    cannot see imported modules, so a code change reruns exactly the jobs it affects."""
    package = Path(workflow.basedir) / "pipeline"
    return stage_code_hash(stage, grader, [package / f for f in data_files])


# What defines a suite's problems (not how it is evaluated): changing K or n must not
# regenerate the data and rerun everything downstream.
SUITE_EVAL_KEYS = ("k", "n_samples")


def suites_data_slice():
    return {name: {k: v for k, v in suite.items() if k not in SUITE_EVAL_KEYS} for name, suite in config["suites"].items()}


def custom_data_files():
    """The local files of every `benchmark: custom` suite or training set."""
    entries = list(config["suites"].values()) + ([config["train_data"]] if METHODS and not TOY else [])
    files = []
    for entry in entries:
        if entry.get("benchmark") == "custom" and entry.get("data_files"):
            data_files = entry["data_files"]
            files += [data_files] if isinstance(data_files, str) else list(data_files)
    return files


def data_options(output):
    """The data stage's options: the toy world generates its suites and training split from its
    seeds; the hub world loads them (pinned revisions) and checks them for overlap."""
    q = shlex.quote
    suites = f"--suites-json {q(as_json(suites_data_slice()))} --suites-dir {q(os.path.dirname(output.suites[0]))}"
    if TOY:
        return f"--world toy --world-json {q(as_json(config['toy']))} {suites} --train-out {q(output.train)}"
    train = f" --train-out {q(output.train)}" if METHODS else ""
    fail = " --fail-on-overlap" if config["decontamination"]["fail"] else ""
    return (f"{suites} --train-json {q(as_json(config['train_data'] if METHODS else None))}{fail}{train}"
            f" --report {q(output.decontamination)}")


def base_model_options(wildcards, input, output, threads):
    """The base model's options: the toy world SFTs its own (with the replicate's SFT seed under
    base_model.replicates), the hub world fetches the pinned checkpoint."""
    q = shlex.quote
    base = config["base_model"]
    if not TOY:
        return f"--hub-json {q(as_json(base.get('hub')))} --out {q(output.model)}"
    if BASE_REPLICATES:
        base = {**base, "sft": {**base["sft"], "seed": base["sft"]["seed"] + int(wildcards.seed)}}
    return (f"--config-json {q(as_json(base))} --world-json {q(as_json(config['toy']))}"
            f" --template {q(config['prompt']['template'])} --exclude {' '.join(map(q, input.suites))}"
            f" --out {q(output.model)} --metrics {q(output.metrics)} --threads {threads}")


def trainer_launcher():
    """The trainer's launcher (one process, or resources.train.gpu processes through
    `accelerate launch` with the configured accelerate config file)."""
    launch_config = config["distributed"]["accelerate_config"]
    processes = config["resources"]["train"]["gpu"]
    if not launch_config or processes <= 1:
        return "-m pipeline"
    return f"-m accelerate.commands.launch --config_file {launch_config} --num_processes {processes} -m pipeline"


def model_dir(wildcards):
    """base, base/seed<s>, <method>/seed<s>, or an evaluated model: its own directory, or the
    copy fetched from the hub (rule fetch_eval_model)."""
    entry = EVAL_MODELS.get(wildcards.model)
    if entry is not None:
        return entry["path"] if "path" in entry else f"{RESULTS}/models/eval/{entry['name']}"
    return f"{RESULTS}/models/{wildcards.model}"


def comparison_tables():
    """The side-by-side tables of report.comparisons (name -> methods, checked by check_config)."""
    return {name: list(methods) for name, methods in config["report"]["comparisons"].items()}
