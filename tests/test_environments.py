"""Per-rule software: each rule's interpreter, and the environment files a cluster user builds.

Without conda, `environments:` names a virtual environment per kind of rule (vLLM pins its
own torch, so the vLLM rules get their own, built by `make vllm-env`); with
`--software-deployment-method conda` the rules' conda environments apply and nothing puts
the Snakemake interpreter in front of them. The rehearsal (tests/test_rehearsal.py) runs
the vLLM rules in the real .venv-vllm.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
MICRO = ROOT / "tests" / "data" / "micro_config.yaml"


def shell_commands(tmp_path, cfg: dict, *extra) -> list[str]:
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(cfg))
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "--directory", str(tmp_path / "w"),
         "--configfile", str(config), "-n", "-p", *extra],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    prefix = "Shell command: "
    lines = (proc.stdout + proc.stderr).splitlines()
    return [line[len(prefix):] for line in lines if line.startswith(prefix) and line != prefix + "None"]  # rule all: None


def test_vllm_rules_run_in_the_vllm_environment_and_the_rest_in_the_pipelines(tmp_path):
    venv = tmp_path / "venv-vllm"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to(sys.executable)
    cfg = yaml.safe_load(MICRO.read_text())
    cfg["sampling"]["backend"] = "vllm"
    cfg["environments"] = {"vllm": str(venv)}
    cfg["allow_absolute_paths"] = True
    commands = shell_commands(tmp_path, cfg)
    vllm_python = str(venv / "bin" / "python")
    sample = [c for c in commands if " -m pipeline sample " in c]
    others = [c for c in commands if " -m pipeline sample " not in c]
    assert sample and all(c.startswith(vllm_python + " ") for c in sample)
    assert others and all(c.startswith(sys.executable + " ") for c in others)


def test_without_environments_every_rule_runs_the_snakemake_interpreter(tmp_path):
    commands = shell_commands(tmp_path, yaml.safe_load(MICRO.read_text()))
    assert commands and all(c.startswith(sys.executable + " -m pipeline ") for c in commands)


def _pip_names(env_file: Path) -> dict[str, str]:
    deps = yaml.safe_load(env_file.read_text())["dependencies"]
    pip = next(d["pip"] for d in deps if isinstance(d, dict))
    return {re.split(r"[\[<>=!~ ]", p, maxsplit=1)[0].lower(): p for p in pip}


def test_the_conda_environments_hold_what_the_rules_import():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    wanted = project["dependencies"] + extras["hub"] + extras["math"] + extras["analysis"]
    names = {re.split(r"[\[<>=!~ ]", d, maxsplit=1)[0].lower() for d in wanted}
    pipeline_env = _pip_names(ROOT / "envs" / "pipeline.yaml")
    assert names <= set(pipeline_env), names - set(pipeline_env)
    vllm_env = _pip_names(ROOT / "envs" / "vllm.yaml")
    assert re.fullmatch(r"vllm==\d+\.\d+\.\d+", vllm_env["vllm"])  # pinned: it pins torch and CUDA
    assert (names - {"torch", "snakemake"}) <= set(vllm_env), (names - {"torch", "snakemake"}) - set(vllm_env)
