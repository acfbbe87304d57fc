"""DVC versioning and the restore path on a new machine, for real (dvc.yaml, .dvcignore,
scripts/restore.sh).

In a temporary copy of the git checkout (its tracked files committed in a repository of
its own, so DVC sees what git tracks), whose default config is the micro config:
``dvc repro`` runs the four stages (each one Snakemake call), ``dvc push`` to a local
remote, then the "new machine": results, DVC cache and Snakemake's metadata wiped,
``scripts/restore.sh`` (dvc pull, dvc status, snakemake --touch --forceall). Afterwards
Snakemake has nothing to do, every file DVC tracks is byte-identical to before, a
changed hyperparameter reruns exactly the jobs it affects, and the restore refuses to
pass results off as belonging to a changed config.

DVC lives in its own environment (`make dvc`: .venv-dvc, linked as .venv/bin/dvc): it
cannot share .venv, where math-verify pins antlr4-python3-runtime 4.13 and DVC's hydra
pins 4.9. The test finds it through $DVC, the test environment's bin/, .venv-dvc/bin or
PATH, in that order.
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
MICRO = ROOT / "tests" / "data" / "micro_config.yaml"

pytestmark = pytest.mark.e2e


def git_files(*args: str) -> list[str]:
    proc = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z", *args], capture_output=True, text=True)
    assert proc.returncode == 0, f"the DVC test copies the repository's git checkout: {proc.stderr}"
    return [f for f in proc.stdout.split("\0") if f]


def copy_checkout(repo: Path, env: dict) -> None:
    """The checkout as a fresh clone would be, in its own git repository: the files git
    tracks (committed there too, so that DVC sees the same SCM state: it refuses outputs
    holding files that git tracks) plus new files not yet added, without environments and
    without this checkout's DVC state."""

    def wanted(path: str) -> bool:
        top = path.split("/", 1)[0]
        return not top.startswith(".venv") and top not in (".dvc", "dvc.lock") and (ROOT / path).is_file()

    tracked = [f for f in git_files("--cached") if wanted(f)]
    for rel in dict.fromkeys(tracked + [f for f in git_files("--others", "--exclude-standard") if wanted(f)]):
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, repo / rel)
    run(["git", "init", "-q"], repo, env)
    for start in range(0, len(tracked), 200):
        run(["git", "add", "-f", "--", *tracked[start:start + 200]], repo, env)
    run(["git", "-c", "commit.gpgsign=false", "commit", "-q", "--allow-empty", "-m", "checkout"], repo, env)


def find_dvc() -> str:
    candidates = [
        os.environ.get("DVC"),
        str(Path(sys.executable).parent / "dvc"),  # `make dvc` links it into .venv/bin
        str(ROOT / ".venv-dvc" / "bin" / "dvc"),
        shutil.which("dvc"),
    ]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    pytest.fail("DVC not found ($DVC, the environment's bin/, .venv-dvc/bin, PATH): `make dvc` installs it")


def run(cmd, cwd: Path, env: dict, timeout: int = 300, stdout_only: bool = False) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))} exited with {proc.returncode}:\n{out[-4000:]}"
    return proc.stdout if stdout_only else out


def run_json(cmd, cwd: Path, env: dict):
    return json.loads(run(cmd, cwd, env, stdout_only=True))


def dvc_tracked(repo: Path, dvc: str, env: dict) -> dict[str, str]:
    """Every file under results/ that DVC tracks, with the md5 DVC recorded for it."""
    listing = run_json([dvc, "ls", "--json", "-R", "--dvc-only", ".", "results"], repo, env)
    return {f"results/{entry['path']}": entry["md5"] for entry in listing if not entry.get("isdir")}


def file_hashes(repo: Path, paths) -> dict[str, tuple[str, str]]:
    hashes = {}
    for rel in paths:
        data = (repo / rel).read_bytes()
        hashes[rel] = (hashlib.md5(data).hexdigest(), hashlib.sha256(data).hexdigest())
    return hashes


def test_dvc_push_pull_restore_reruns_nothing(tmp_path):
    dvc = find_dvc()
    repo = tmp_path / "repo"
    env = {
        **os.environ,
        # Snakemake from the environment running the tests (the stages call `snakemake`).
        "PATH": os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")]),
        "DVC": dvc,
        "SNAKEMAKE": str(Path(sys.executable).parent / "snakemake"),
        "DVC_NO_ANALYTICS": "1",
        # DVC's per-repository state (hash and index databases), outside /var/tmp/dvc
        "DVC_SITE_CACHE_DIR": str(tmp_path / "dvc-site-cache"),
        "GIT_AUTHOR_NAME": "test", "GIT_AUTHOR_EMAIL": "test@example.org",
        "GIT_COMMITTER_NAME": "test", "GIT_COMMITTER_EMAIL": "test@example.org",
    }
    copy_checkout(repo, env)
    shutil.copy(MICRO, repo / "config.yaml")  # the micro config is this copy's default
    run([dvc, "init", "-q"], repo, env)

    # The pipeline through DVC: four stages, each a Snakemake call.
    out = run([dvc, "repro"], repo, env, timeout=600)
    for stage in ("data", "models", "evaluate", "report"):
        assert f"Running stage '{stage}'" in out, out[-3000:]
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    assert set(lock["stages"]) == {"data", "models", "evaluate", "report"}
    # Unchanged code and config: DVC calls no stage again.
    out = run([dvc, "repro"], repo, env)
    assert "Running stage" not in out, out

    tracked = dvc_tracked(repo, dvc, env)
    # the stages' outputs, without what .dvcignore leaves out
    for expected in (
        "results/data/train.parquet",
        "results/models/base/config.json",
        "results/train/grpo/seed0/metrics.jsonl",
        "results/samples/grpo_entropy_adv/seed0/micro-hard.parquet",
        "results/scores/base/micro-mixed.passk.json",
        "results/tables/main.md",
        "results/figures/training_dynamics.png",
        "results/analysis/tokens/base.parquet",  # the exploration analysis (report stage)
        "results/tables/exploration_summary.md",
    ):
        assert expected in tracked, sorted(tracked)
    assert not [p for p in tracked if "/checkpoints/" in p or p.endswith(".snakemake_timestamp")]
    before = file_hashes(repo, tracked)
    assert {rel: md5 for rel, (md5, _) in before.items()} == tracked  # DVC's record = the files

    remote = tmp_path / "remote"
    run([dvc, "remote", "add", "-d", "local", str(remote)], repo, env)
    run([dvc, "push"], repo, env)

    # A new machine: none of the outputs, no DVC cache or state, no Snakemake metadata.
    for path in ("results", ".snakemake", ".dvc/cache"):
        shutil.rmtree(repo / path)
    shutil.rmtree(repo / ".dvc" / "tmp", ignore_errors=True)
    shutil.rmtree(env["DVC_SITE_CACHE_DIR"])

    out = run(["bash", "scripts/restore.sh"], repo, env, timeout=300)
    assert "Nothing to be done" in out, out[-3000:]

    out = run([env["SNAKEMAKE"], "-n"], repo, env)
    assert "Nothing to be done" in out, out[-3000:]
    # --touch --forceall recorded every job's metadata: none is missing
    assert "missing provenance/metadata" not in out, out[-3000:]

    assert dvc_tracked(repo, dvc, env) == tracked
    assert file_hashes(repo, tracked) == before
    assert run_json([dvc, "status", "--json"], repo, env) == {}

    # Rerunning only what changed, on the restored results: one method's hyperparameter.
    cfg = yaml.safe_load((repo / "config.yaml").read_text())
    cfg["methods"]["grpo_entropy_adv"] = {"shaping": {"alpha": 0.2}}
    (repo / "config.yaml").write_text(yaml.safe_dump(cfg))
    out = run([env["SNAKEMAKE"], "-n", "--quiet", "rules"], repo, env)
    counts = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            counts[parts[0]] = int(parts[1])
    assert counts.get("train") == 1, out
    assert counts.get("sample") == 1 and counts.get("score") == 2, out  # one sampling job per model
    assert "prepare_data" not in counts and "build_base_model" not in counts, out
    # DVC sees the changed config too: every stage reads config.yaml
    status = run_json([dvc, "status", "--json"], repo, env)
    assert set(status) == {"data", "models", "evaluate", "report"}, status
    # and the restore refuses to mark results made with another config as up to date
    proc = subprocess.run(["bash", "scripts/restore.sh"], cwd=repo, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "disagree with dvc.lock" in proc.stderr and "snakemake --touch" not in proc.stderr, proc.stderr


def test_dvc_stages_for_any_config_push_pull_restore(tmp_path):
    """`python -m pipeline dvc-stages --config X` versions X's own results directory (its final
    models too): repro, push, a new machine, pull, restore -> nothing to rerun, the same bytes."""
    dvc = find_dvc()
    repo = tmp_path / "repo"
    env = {
        **os.environ,
        "PATH": os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")]),
        "DVC": dvc, "SNAKEMAKE": str(Path(sys.executable).parent / "snakemake"), "DVC_NO_ANALYTICS": "1",
        "DVC_SITE_CACHE_DIR": str(tmp_path / "dvc-site-cache"),
        "GIT_AUTHOR_NAME": "test", "GIT_AUTHOR_EMAIL": "test@example.org",
        "GIT_COMMITTER_NAME": "test", "GIT_COMMITTER_EMAIL": "test@example.org",
    }
    copy_checkout(repo, env)
    cfg = yaml.safe_load(MICRO.read_text())
    cfg["results_dir"] = "results/micro"
    cfg["methods"] = {"grpo": {}}
    cfg["analysis"] = {"enabled": False}
    (repo / "configs" / "micro.yaml").write_text(yaml.safe_dump(cfg))
    run([dvc, "init", "-q"], repo, env)
    out = run([sys.executable, "-m", "pipeline", "dvc-stages", "--config", "configs/micro.yaml"], repo, env)
    stages_file = "dvc/micro/dvc.yaml"
    assert stages_file in out
    written = yaml.safe_load((repo / stages_file).read_text())["stages"]
    assert list(written) == ["data", "models", "evaluate", "report"]
    assert {"results/micro/models": {"persist": True}} in written["models"]["outs"]

    out = run([dvc, "repro", stages_file], repo, env, timeout=600)
    for stage in ("data", "models", "evaluate", "report"):
        assert f"Running stage 'dvc/micro/dvc.yaml:{stage}'" in out or f"Running stage '{stage}'" in out, out[-3000:]
    listing = run_json([dvc, "ls", "--json", "-R", "--dvc-only", ".", "results/micro"], repo, env)
    tracked = {f"results/micro/{e['path']}": e["md5"] for e in listing if not e.get("isdir")}
    for expected in ("results/micro/models/grpo/seed0/model.safetensors", "results/micro/models/base/config.json",
                     "results/micro/scores/base/micro-hard.passk.json", "results/micro/tables/main.md"):
        assert expected in tracked, sorted(tracked)
    assert not [p for p in tracked if "/checkpoints/" in p or "/cache/" in p]
    before = file_hashes(repo, tracked)

    run([dvc, "remote", "add", "-d", "local", str(tmp_path / "remote")], repo, env)
    run([dvc, "push", stages_file], repo, env)
    for path in ("results", ".snakemake", ".dvc/cache"):
        shutil.rmtree(repo / path)
    shutil.rmtree(env["DVC_SITE_CACHE_DIR"])
    out = run(["bash", "scripts/restore.sh"], repo, {**env, "DVC_FILE": stages_file, "CONFIGFILE": "configs/micro.yaml"},
              timeout=300)
    assert "Nothing to be done" in out, out[-3000:]
    assert file_hashes(repo, tracked) == before
    out = run([env["SNAKEMAKE"], "-n", "--configfile", "configs/micro.yaml"], repo, env)
    assert "Nothing to be done" in out, out[-3000:]


def test_dvc_stages_refuse_the_default_results_dir(tmp_path):
    from pipeline.cli import main

    assert main(["dvc-stages", "--config", str(MICRO), "--out", str(tmp_path / "dvc.yaml")]) == 2
    assert not (tmp_path / "dvc.yaml").exists()
