"""SLURM for real: the SLURM profile on a single-node cluster brought up on this machine.

``scripts/slurm-local.sh up`` installs slurm-wlm and munge when missing (apt, as root)
and starts munged, slurmctld and slurmd with this machine's CPUs and memory, two stand-in
GPUs and the partitions "debug" (default) and "gpu". The micro config, with train and
sample asking for one GPU each, then runs through profiles/slurm/config.yaml overlaid
with tests/data/slurm_test_profile.yaml (status from squeue: no accounting here) in a
temporary directory, and once more locally. Checked: every job went through sbatch with
the account, partition and GPUs the profile asks for, the plugin kept a log per job, and
the Pass@K values, samples and tables equal the local run's. The fixture stops every
daemon the script started.

Marked ``slurm`` (and ``e2e``): ``-m "not slurm"`` deselects it. It needs root (apt,
munged and slurmd run as root): without root it is skipped with that reason; with root (CI
has it) it always runs, and if the cluster does not come up it fails with the reason.
Nothing else in the test suite needs root.
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
MICRO = ROOT / "tests" / "data" / "micro_config.yaml"
SCRIPT = ROOT / "scripts" / "slurm-local.sh"
PROFILE = ROOT / "profiles" / "slurm" / "config.yaml"
TEST_SETTINGS = ROOT / "tests" / "data" / "slurm_test_profile.yaml"
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")
GPU_RULES = {"train", "sample"}

pytestmark = [pytest.mark.slurm, pytest.mark.e2e]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def running(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has stopped


def root_needed() -> str | None:
    """Why the cluster cannot come up as this user, or None (root)."""
    if os.geteuid() == 0:
        return None
    return ("needs root: scripts/slurm-local.sh installs slurm-wlm and munge with apt and starts munged, "
            "slurmctld and slurmd as root; run the tests as root (CI does) or deselect with -m 'not slurm'")


def test_root_needed_says_why_without_root(monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert "needs root" in root_needed() and "-m 'not slurm'" in root_needed()
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert root_needed() is None


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    reason = root_needed()
    if reason:
        pytest.skip(reason)
    state = tmp_path_factory.mktemp("slurm-local")
    env = {
        **os.environ,
        "SLURM_LOCAL_DIR": str(state),
        "SLURM_LOCAL_CTLD_PORT": str(free_port()),
        "SLURM_LOCAL_SLURMD_PORT": str(free_port()),
    }
    up = subprocess.run(["bash", str(SCRIPT), "up"], env=env, capture_output=True, text=True, timeout=900)
    pids_file = state / "pids"
    started = [int(line.split()[1]) for line in pids_file.read_text().splitlines()] if pids_file.exists() else []
    if up.returncode != 0:
        subprocess.run(["bash", str(SCRIPT), "down"], env=env, capture_output=True, text=True, timeout=120)
        pytest.fail(f"the local SLURM cluster did not come up:\n{up.stdout}{up.stderr}", pytrace=False)
    try:
        yield {"SLURM_CONF": str(state / "slurm.conf")}
    finally:
        down = subprocess.run(["bash", str(SCRIPT), "down"], env=env, capture_output=True, text=True, timeout=120)
        left = [pid for pid in started if running(pid)]
        assert down.returncode == 0 and not left, f"daemons left running: {left}\n{down.stdout}{down.stderr}"


def test_profile_run_goes_through_sbatch_and_matches_local(cluster, tmp_path):
    cfg = yaml.safe_load(MICRO.read_text())
    cfg["resources"] = {rule: {"gpu": 1, "mem_mb": 2000, "runtime": 30} for rule in GPU_RULES}
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(cfg))

    # The real profile, with the test cluster's settings laid over it.
    profile = yaml.safe_load(PROFILE.read_text())
    for key, value in yaml.safe_load(TEST_SETTINGS.read_text()).items():
        if key == "default-resources":
            profile[key].update(value)
        elif key == "set-resources":
            for rule, resources in value.items():
                profile[key].setdefault(rule, {}).update(resources)
        else:
            profile[key] = value
    profile_dir = tmp_path / "profile"
    profile_dir.mkdir()
    (profile_dir / "config.yaml").write_text(yaml.safe_dump(profile, sort_keys=False))

    env = {
        **os.environ,
        "SLURM_CONF": cluster["SLURM_CONF"],
        "SLURM_ACCOUNT": "testacct",
        "SLURM_PARTITION": "debug",
        "SLURM_GPU_PARTITION": "gpu",
        "SLURM_GPU_MODEL": "testgpu",
    }
    # The same config locally, meanwhile (the SLURM run leaves the CPUs idle between jobs).
    local = tmp_path / "local"
    local_run = subprocess.Popen(
        [SNAKEMAKE, "--snakefile", str(ROOT / "Snakefile"), "--directory", str(local), "--configfile", str(config),
         "--cores", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    workdir = tmp_path / "slurm"
    workdir.mkdir()
    cmd = [SNAKEMAKE, "--snakefile", str(ROOT / "Snakefile"), "--configfile", str(config), "--profile", str(profile_dir)]
    try:
        proc = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True, timeout=900)
    except subprocess.TimeoutExpired as err:
        local_run.kill()
        pytest.fail(f"snakemake on SLURM timed out:\n{(err.stderr or b'')[-4000:]}", pytrace=False)
    finally:
        local_out, _ = local_run.communicate(timeout=900)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-5000:]
    assert local_run.returncode == 0, local_out[-5000:]
    assert "Using profiles" in out and str(profile_dir) in out, out[:2000]

    # Every job but the local `all` went through sbatch, once, with the profile's resources.
    planned = {}
    stats = out[out.index("Job stats:"):]
    for line in stats.splitlines()[3:]:
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit() or parts[0] == "total":
            break
        planned[parts[0]] = int(parts[1])
    planned.pop("all")
    squeue = subprocess.run(
        ["squeue", "-h", "-t", "all", "-O", "JobID:|,Comment:|,Partition:|,Account:|,tres-per-job:|,State:|"],
        env=env, capture_output=True, text=True, timeout=60,
    )
    assert squeue.returncode == 0, squeue.stderr
    jobs = [line.split("|")[:6] for line in squeue.stdout.splitlines() if line.strip()]
    submitted = {}
    for jobid, comment, partition, account, tres, state in jobs:
        assert comment.startswith("rule_"), comment
        rule = comment[len("rule_"):].split("_wildcards_")[0]
        submitted[rule] = submitted.get(rule, 0) + 1
        assert state == "COMPLETED", (jobid, comment, state)
        assert account == "testacct", (comment, account)
        if rule in GPU_RULES:
            assert (partition, tres) == ("gpu", "gres:gpu:testgpu:1"), (comment, partition, tres)
        else:
            assert (partition, tres) == ("debug", "N/A"), (comment, partition, tres)
        # the plugin's log of this job: .snakemake/slurm_logs/rule_<rule>[/<wildcards>]/<jobid>.log
        assert list((workdir / ".snakemake" / "slurm_logs" / f"rule_{rule}").rglob(f"{jobid}.log")), comment
    assert submitted == planned, (submitted, planned)

    # The outputs equal the local run's.
    slurm_results, local_results = workdir / "results", local / "results"
    passk = sorted(p.relative_to(local_results) for p in local_results.glob("scores/**/*.passk.json"))
    assert len(passk) == 6  # 3 models x 2 suites
    assert passk == sorted(p.relative_to(slurm_results) for p in slurm_results.glob("scores/**/*.passk.json"))
    for rel in passk:
        assert json.loads((slurm_results / rel).read_text()) == json.loads((local_results / rel).read_text()), rel
        samples = Path("samples") / str(rel).removeprefix("scores/").replace(".passk.json", ".parquet")
        pd.testing.assert_frame_equal(pd.read_parquet(slurm_results / samples), pd.read_parquet(local_results / samples))
    tables = sorted(p.name for p in (local_results / "tables").iterdir())
    assert "main.md" in tables and tables == sorted(p.name for p in (slurm_results / "tables").iterdir())
    for name in tables:
        assert (slurm_results / "tables" / name).read_bytes() == (local_results / "tables" / name).read_bytes(), name

    # Snakemake recorded the SLURM jobs like local ones: a local dry run has nothing to do.
    proc = subprocess.run(
        [SNAKEMAKE, "--snakefile", str(ROOT / "Snakefile"), "--configfile", str(config), "-n"],
        cwd=workdir, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0 and "Nothing to be done" in proc.stdout + proc.stderr, proc.stdout[-3000:]
