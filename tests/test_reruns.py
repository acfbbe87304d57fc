"""Precise reruns (issue: rerun only what changed), on a full micro run in a copy of the repo.

The copy lets the test edit package code and the README without touching the checkout.
"""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.e2e


def copy_repo(dest: Path) -> Path:
    ignore = shutil.ignore_patterns(".venv*", ".git", "results", ".snakemake", "__pycache__", "*.egg-info", ".pytest_cache")
    shutil.copytree(ROOT, dest, ignore=ignore)
    return dest


def snakemake(repo: Path, config: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(repo / "Snakefile"), "--directory", str(repo),
           "--configfile", str(config), "--cores", "2", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600)


def planned_jobs(repo: Path, config: Path) -> dict[str, int]:
    proc = snakemake(repo, config, "-n", "--quiet", "rules")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    return {name: int(n) for name, n in re.findall(r"^(\w+)\s+(\d+)$", out, flags=re.M) if name != "total"}


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    repo = copy_repo(tmp_path_factory.mktemp("rerun") / "repo")
    proc = snakemake(repo, repo / "tests" / "data" / "micro_config.yaml")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return repo


def test_editing_the_readme_reruns_nothing(repo):
    with open(repo / "README.md", "a") as fh:
        fh.write("\nAn edit that changes no result.\n")
    assert planned_jobs(repo, repo / "tests" / "data" / "micro_config.yaml") == {}


def test_changing_k_reruns_only_scoring_and_reports(repo, tmp_path):
    cfg = yaml.safe_load((repo / "tests" / "data" / "micro_config.yaml").read_text())
    cfg["suites"]["micro-hard"]["k"] = 4  # n_samples stays 8: the stored samples are reused
    changed = tmp_path / "k.yaml"
    changed.write_text(yaml.safe_dump(cfg))
    jobs = planned_jobs(repo, changed)
    assert jobs.get("score") == 3  # base + 2 trained models, on micro-hard only
    assert not {"sample", "train", "build_base_model", "prepare_data"} & set(jobs)
    assert {"tables", "figures", "report_md"} <= set(jobs)


def test_editing_plotting_code_reruns_only_reports(repo):
    figures = repo / "pipeline" / "report" / "figures.py"
    original = figures.read_text()
    try:
        figures.write_text(original + "\n# a change to the plotting code\n")
        jobs = planned_jobs(repo, repo / "tests" / "data" / "micro_config.yaml")
    finally:
        figures.write_text(original)
    assert "figures" in jobs
    assert set(jobs) <= {"figures", "report_md", "all"}


def _edited(repo, module, config):
    path = repo / "pipeline" / module
    original = path.read_text()
    try:
        path.write_text(original + "\n# a change\n")
        return planned_jobs(repo, config)
    finally:
        path.write_text(original)


def test_editing_a_grader_module_that_is_not_the_configured_grader_reruns_nothing(repo):
    """Rules hash their stage's import closure plus the configured grader's module
    (pipeline/codehash.py; tests/test_codehash.py: with grader math_verify, math_graders.py,
    once in no rule's hash, is in the score and train hashes). The micro run grades with
    answer_line, so an edit of the Math-Verify graders reruns nothing."""
    assert _edited(repo, "eval/math_graders.py", repo / "tests" / "data" / "micro_config.yaml") == {}


def test_editing_the_vllm_backend_reruns_training_and_sampling(repo):
    """The train stage imports the vLLM backend lazily (rollouts); a hand-kept list missed it."""
    jobs = _edited(repo, "sampling/vllm_backend.py", repo / "tests" / "data" / "micro_config.yaml")
    assert {"train", "sample"} <= set(jobs), jobs
    assert jobs["sample"] == 3 and jobs["train"] == 2  # every sampling job (one per model, base too) and training job
    assert not {"prepare_data", "build_base_model"} & set(jobs)
