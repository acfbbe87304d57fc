"""The schema stops bad configs with one message naming the key."""

import copy
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
