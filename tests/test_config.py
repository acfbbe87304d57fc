"""The schema stops bad configs with one message naming the key."""

import copy
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline.config import ConfigError, check_config, method_specs

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = yaml.safe_load((ROOT / "config.yaml").read_text())


def mutate(path, value):
    cfg = copy.deepcopy(DEFAULT)
    node = cfg
    for key in path[:-1]:
        node = node.setdefault(key, {})
    if value is KeyError:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return cfg


def test_a_grader_may_be_any_importable_function():
    cfg = check_config(mutate(("grader",), "pipeline.eval.grading:grade_answer_line"))
    assert cfg["grader"] == "pipeline.eval.grading:grade_answer_line"


def test_default_config_is_valid_and_defaults_are_filled():
    cfg = check_config(copy.deepcopy(DEFAULT))
    assert cfg["grading"]["timeout_s"] > 0
    assert cfg["threads"]["train"] == 1
    assert set(method_specs(cfg)) == set(DEFAULT["methods"])


@pytest.mark.parametrize(
    "path, value, expected",
    [
        (("training", "lr"), -1.0, "training.lr"),
        (("training", "lr"), "fast", "training.lr"),
        (("training", "lrr"), 0.1, "training.lrr': unknown key"),
        (("seeds",), [], "'seeds'"),
        (("seeds",), KeyError, "'seeds' is a required property"),
        (("suites", "toy-aime", "k"), 512, "suites.toy-aime.k"),
        (("suites", "toy-aime", "n_samples"), 0, "suites.toy-aime.n_samples"),
        (("methods", "not_a_method"), {}, "methods.not_a_method"),
        (("methods", "grpo"), {"loss": {"clip_hihg": 0.3}}, "methods.grpo.loss.clip_hihg"),
        (("methods", "grpo"), {"shaping": {"name": "entropy_advantage", "kappa": 0}}, "methods.grpo.shaping.kappa"),
        (("methods", "grpo"), {"training": {"lr": 1}, "bogus": 1}, "methods.grpo.bogus"),
        (("sampling", "top_p"), 1.5, "sampling.top_p"),
        (("training", "minibatch_prompts"), 48, "training.minibatch_prompts"),
        (("bogus_top_level",), 1, "bogus_top_level': unknown key"),
        (("grader",), "sympy", "'grader'"),
        (("grader",), "no_such_module:grade", "cannot find module 'no_such_module'"),
        (("report", "comparisons", "table3"), ["grpo", "grpo_entropy_regg"], "report.comparisons.table3': grpo_entropy_regg not configured"),
        (("report", "comparisons", "main"), ["grpo", "ppo"], "report.comparisons.main': the pipeline writes a table"),
        (("report", "comparisons", "solo"), ["grpo"], "report.comparisons.solo"),
        (("report", "comparisons", "Bad-Name"), ["grpo", "ppo"], "report.comparisons"),
    ],
)
def test_bad_configs_name_the_key(path, value, expected):
    with pytest.raises(ConfigError) as err:
        check_config(mutate(path, value))
    assert expected in str(err.value)
    assert "\n" not in str(err.value)  # one clear line


def test_snakemake_stops_before_any_job_with_the_message(tmp_path):
    bad = mutate(("training", "lr"), -1.0)
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(yaml.safe_dump(bad))
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--configfile", str(cfg), "--directory", str(tmp_path),
         "--snakefile", str(ROOT / "Snakefile")],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode != 0
    assert "training.lr" in proc.stdout + proc.stderr


@pytest.mark.parametrize(
    "path, value, expected",
    [
        (("results_dir",), "/tmp/elsewhere", "config key 'results_dir': absolute path '/tmp/elsewhere' is outside"),
        (("results_dir",), "../sibling", "config key 'results_dir': path '../sibling' leads out of the project"),
        (("results_dir",), "results/../../x", "leads out of the project directory"),
        (("results_dir",), "~/results", "config key 'results_dir': absolute path"),
        (("results_dir",), ".", "'.' is the project directory itself"),
        (("results_dir",), "results/..", "is the project directory itself"),
        (("suites", "toy-aime", "cache_dir"), "/var/cache/x", "config key 'suites.toy-aime.cache_dir': absolute path"),
        (("suites", "toy-aime", "data_files"), ["ok.jsonl", "../x.jsonl"], "suites.toy-aime.data_files[1]': path"),
        (("base_model", "hub"), {"local_path": "/models/qwen"}, "config key 'base_model.hub.local_path': absolute"),
    ],
)
def test_paths_cannot_leave_the_project_unless_allowed(path, value, expected):
    with pytest.raises(ConfigError) as err:
        check_config(mutate(path, value))
    message = str(err.value)
    assert expected in message and "\n" not in message
    assert "allow_absolute_paths: true" in message or "itself" in expected
    if "itself" not in expected:  # the explicit opt-in accepts the same path
        allowed = mutate(path, value)
        allowed["allow_absolute_paths"] = True
        check_config(allowed)


def test_relative_paths_inside_the_project_are_accepted_by_default():
    cfg = check_config(mutate(("results_dir",), "results/run-1/./x"))
    assert cfg["allow_absolute_paths"] is False
    check_config(mutate(("suites", "toy-aime", "data_files"), ["mirrors/aime.jsonl", "hf://datasets/x/y.parquet"]))


def test_snakemake_accepts_an_absolute_results_dir_only_when_allowed(tmp_path):
    base = [sys.executable, "-m", "snakemake", "-n", "--snakefile", str(ROOT / "Snakefile"), "--directory", str(tmp_path),
            "--configfile", str(ROOT / "tests" / "data" / "micro_config.yaml"), "--config", f"results_dir={tmp_path / 'r'}"]
    refused = subprocess.run(base, capture_output=True, text=True, timeout=120)
    assert refused.returncode != 0 and "allow_absolute_paths" in refused.stdout + refused.stderr
    # Snakemake's --config parses "True" (not "true") as a boolean
    allowed = subprocess.run(base + ["allow_absolute_paths=True"], capture_output=True, text=True, timeout=120)
    assert allowed.returncode == 0, allowed.stdout[-2000:] + allowed.stderr[-2000:]


@pytest.mark.parametrize(
    "eval_models, methods, expected",
    [
        ({}, {}, "at least one method to train, or models to evaluate"),
        ({"m": {"path": "a", "repo_id": "b"}}, {}, "exactly one of path"),
        ({"m": {}}, {}, "exactly one of path"),
        ({"m": {"repo_id": "Qwen/Qwen2.5-7B"}}, {}, "eval_models.m.revision': a hub model is evaluated at a pinned commit"),
        ({"grpo": {"path": "a"}}, {"grpo": {}}, "also the name of a method"),
        ({"base": {"path": "a"}}, {"grpo": {}}, "'base' is the trained methods' own base model"),
    ],
)
def test_eval_models_errors_name_the_key(eval_models, methods, expected):
    cfg = copy.deepcopy(DEFAULT)
    cfg["methods"], cfg["eval_models"] = methods, eval_models
    with pytest.raises(ConfigError, match=re.escape(expected)):
        check_config(cfg)


def test_eval_models_config_without_methods_is_valid():
    cfg = check_config(yaml.safe_load((ROOT / "configs" / "eval" / "qwen25_7b_vs_math_7b.yaml").read_text()))
    assert cfg["methods"] == {} and set(cfg["eval_models"]) == {"base", "qwen25-math-7b"}
    assert check_config(yaml.safe_load((ROOT / "configs" / "eval" / "toy.yaml").read_text()))["eval_models"]
