"""The execution profiles, through Snakemake's own profile parsing (dry runs, no cluster):
profiles/slurm takes account, partitions and GPU model from the environment and leaves
them out when unset; profiles/local caps the GPUs a job may claim at once.
The SLURM profile on a real cluster: tests/test_slurm.py.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
MICRO = ROOT / "tests" / "data" / "micro_config.yaml"
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")
PROFILE_VARS = ("SLURM_ACCOUNT", "SLURM_PARTITION", "SLURM_GPU_PARTITION", "SLURM_GPU_MODEL", "LOCAL_GPUS")


@pytest.fixture
def gpu_config(tmp_path):
    """The micro config with paper-like GPU requests: training 8 GPUs, sampling 1."""
    cfg = yaml.safe_load(MICRO.read_text())
    cfg["resources"] = {"train": {"gpu": 8, "mem_mb": 2000, "runtime": 30}, "sample": {"gpu": 1, "mem_mb": 1500, "runtime": 20}}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def dry_run_resources(workdir: Path, config: Path, profile: str, **env_vars) -> dict[str, dict[str, str]]:
    """Resources of one job per rule, as the dry run of a fresh workdir lists them."""
    env = {k: v for k, v in os.environ.items() if k not in PROFILE_VARS}
    env.update(env_vars)
    proc = subprocess.run(
        [SNAKEMAKE, "--snakefile", str(ROOT / "Snakefile"), "--directory", str(workdir), "--configfile", str(config),
         "--profile", str(ROOT / "profiles" / profile), "-n"],
        env=env, capture_output=True, text=True, timeout=300,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert f"Using profiles {ROOT / 'profiles' / profile}" in out, out[:2000]
    resources, rule = {}, None
    for line in out.splitlines():
        if line.startswith(("rule ", "localrule ")) and line.endswith(":"):
            rule = line.split()[1].rstrip(":")
        elif rule and line.strip().startswith("resources:"):
            items = line.strip().removeprefix("resources:").split(", ")
            resources[rule] = dict(item.strip().split("=", 1) for item in items)
            rule = None
    return resources


def test_slurm_profile_takes_account_partitions_and_gpu_model_from_environment(tmp_path, gpu_config):
    res = dry_run_resources(
        tmp_path / "wd", gpu_config, "slurm",
        SLURM_ACCOUNT="proj-42", SLURM_PARTITION="cpu", SLURM_GPU_PARTITION="gpu-h100", SLURM_GPU_MODEL="h100",
    )
    assert {"prepare_data", "build_base_model", "train", "sample", "score", "tables"} <= set(res)
    for rule, r in res.items():
        assert r["slurm_account"] == "proj-42", rule
    # GPU rules: their own partition and GPU model; count, memory and time from the config
    gpu_rule = {"slurm_partition": "gpu-h100", "gpu_model": "h100"}
    assert res["train"].items() >= (gpu_rule | {"gpu": "8", "mem_mb": "2000", "runtime": "30"}).items()
    assert res["sample"].items() >= (gpu_rule | {"gpu": "1", "mem_mb": "1500", "runtime": "20"}).items()
    # CPU rules: the default partition, small; the heavier two sized by the profile (runtime in minutes)
    assert res["prepare_data"].items() >= {"slurm_partition": "cpu", "mem_mb": "4000", "runtime": "60"}.items()
    assert res["build_base_model"].items() >= {"slurm_partition": "cpu", "mem_mb": "32000", "runtime": "240"}.items()
    assert res["score"].items() >= {"slurm_partition": "cpu", "mem_mb": "16000", "runtime": "240"}.items()
    for rule in ("prepare_data", "build_base_model", "score", "tables"):
        assert "gpu" not in res[rule] and "gpu_model" not in res[rule], rule


def test_slurm_profile_leaves_unset_variables_to_the_plugin(tmp_path, gpu_config):
    res = dry_run_resources(tmp_path / "wd", gpu_config, "slurm")
    for rule, r in res.items():
        # no literal "$SLURM_ACCOUNT": the plugin guesses the account and takes the default partition
        assert not {"slurm_account", "slurm_partition", "gpu_model"} & set(r), (rule, r)
    assert res["train"]["gpu"] == "8"


def test_local_profile_caps_gpus_per_job(tmp_path, gpu_config):
    res = dry_run_resources(tmp_path / "wd1", gpu_config, "local")
    assert res["train"]["gpu"] == "1" and res["sample"]["gpu"] == "1"  # an 8-GPU job scaled to the machine's 1
    res = dry_run_resources(tmp_path / "wd2", gpu_config, "local", LOCAL_GPUS="4")
    assert res["train"]["gpu"] == "4" and res["sample"]["gpu"] == "1"
    assert "gpu" not in res["prepare_data"]
