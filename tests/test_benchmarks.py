"""Smoke tests of the benchmark scripts (benchmarks/): the light pieces at tiny sizes.

The benchmarks themselves are not tests (their numbers are in the README). The TRL part
runs only where the ``bench`` extra is installed; the ``test`` extra does not bring TRL.
"""

import importlib.util
import json
import re
import sys
from pathlib import Path

import pytest


ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"


def load(name: str):
    """A benchmark script as a module (benchmarks/ is a folder of scripts, not a package)."""
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_table_and_json_writing(tmp_path, capsys):
    common = load("_common")
    rows = [{"name": "a", "seconds": 1.23456, "count": 3}, {"name": "bb", "seconds": 12345.6, "count": None}]
    text = common.format_table(rows)
    lines = text.splitlines()
    assert lines[0].split() == ["name", "seconds", "count"] and len(lines) == 4
    assert "1.23" in lines[2] and "12,346" in lines[3] and "—" in lines[3]
    info = common.machine_info(threads=1)
    for key in ("date", "cpu_model", "cores", "torch", "transformers", "loadavg_1_5_15_at_start"):
        assert key in info
    assert info["threads"] == 1
    out = common.write_result("smoke", {"value": 1}, tmp_path / "sub" / "smoke.json")
    data = json.loads(out.read_text())
    assert data["benchmark"] == "smoke" and data["value"] == 1 and data["machine"]["cores"] >= 1
    assert common.median([3, 1, 2]) == 2
    with pytest.raises(SystemExit, match="make reproduce"):
        common.require(tmp_path / "missing", "a thing")


def test_default_run_per_rule_split(tmp_path):
    default_run = load("default_run")
    rules = tmp_path / "rules"
    header = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
    for rel, seconds in [("train/grpo/seed0.tsv", 10.0), ("train/grpo/seed1.tsv", 30.0), ("tables.tsv", 1.0)]:
        (rules / rel).parent.mkdir(parents=True, exist_ok=True)
        (rules / rel).write_text(header + f"{seconds}\t0:00:10\t1\t1\t1\t1\t0\t0\t90\t9\n")
    rows = default_run.per_rule_seconds(rules)
    assert [r["rule"] for r in rows] == ["train", "tables"]
    assert rows[0] == {"rule": "train", "jobs": 2, "total_s": 40.0, "mean_s": 20.0, "max_s": 30.0}
    assert default_run.main(["--summarize", str(rules), "--out", str(tmp_path / "d.json")]) == 0
    data = json.loads((tmp_path / "d.json").read_text())
    assert data["summarized_only"] and data["job_seconds"] == 41.0 and data["wall_seconds"] is None


def test_workflow_overhead_parses_dry_runs():
    wo = load("workflow_overhead")

    class Proc:
        def __init__(self, out):
            self.stdout, self.stderr = out, ""

    assert wo.planned_jobs(Proc("Building DAG of jobs...\nNothing to be done (all requested files are present).")) == 0
    assert wo.planned_jobs(Proc("Job stats:\njob      count\n-----  -------\ntrain        4\ntotal      151\n")) == 151
    assert "benchmarks/workflow_overhead.py" in wo.repo_files(ROOT)


def test_sampling_throughput_tiny(tmp_path, tiny_model_dir, train_file):
    st = load("sampling_throughput")
    results = tmp_path / "results"
    (results / "data" / "suites").mkdir(parents=True)
    (results / "data" / "suites" / "toy-amc.parquet").write_bytes(train_file.read_bytes())
    out = tmp_path / "st.json"
    assert st.main(["--results-dir", str(results), "--model", str(tiny_model_dir), "--problems", "2", "--n", "2",
                    "--batch-size", "4", "--repeats", "1", "--passk-suites", "none", "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    ours, bare = data["comparison"]
    assert ours["samples"] == bare["samples"] == 4
    assert ours["tokens_per_s"] > 0 and bare["tokens_per_s"] > 0 and data["ours_over_bare"] > 0


def _rl_args(tmp_path, tiny_model_dir, train_file, only):
    return ["--base-model", str(tiny_model_dir), "--train-problems", str(train_file), "--rounds", "1",
            "--steps", "1", "--prompts", "2", "--group", "2", "--updates", "1", "--max-new-tokens", "8",
            "--only", only, "--out", str(tmp_path / f"rl_{only}.json")]


def test_rl_step_ours_tiny(tmp_path, tiny_model_dir, train_file):
    rl = load("rl_step_vs_trl")
    assert rl.main(_rl_args(tmp_path, tiny_model_dir, train_file, "ours")) == 0
    data = json.loads((tmp_path / "rl_ours.json").read_text())
    (row,) = data["summary"]
    assert row["steps"] == 1 and row["median_step_s"] > 0


def test_rl_step_trl_tiny(tmp_path, tiny_model_dir, train_file):
    pytest.importorskip("trl", reason="TRL comes with the bench extra only")
    rl = load("rl_step_vs_trl")
    assert rl.main(_rl_args(tmp_path, tiny_model_dir, train_file, "trl")) == 0
    data = json.loads((tmp_path / "rl_trl.json").read_text())
    (row,) = data["summary"]
    assert row["steps"] == 1 and row["median_step_s"] > 0
    assert data["rounds"][0]["threads_seen"] == [1] and data["rounds"][0]["activation_checkpointing"] is False


def test_pipeline_never_imports_trl():
    offenders = [str(p.relative_to(ROOT)) for p in (ROOT / "pipeline").rglob("*.py")
                 if re.search(r"^\s*(import trl\b|from trl\b)", p.read_text(), flags=re.M)]
    assert offenders == []


def test_training_profile_splits_each_step(tmp_path):
    """training_profile: per step, sampling + updates + the rest (grading, no-grad passes,
    advantages) add up to the step, medians over the run's steps."""
    profile = load("training_profile")
    rows = [{"rollout": 0, "sample_seconds": 0.4, "update_seconds": [0.4, 0.5], "step_seconds": 1.6},
            {"rollout": 1, "sample_seconds": 0.5, "update_seconds": [0.4, 0.4], "step_seconds": 1.4},
            {"rollout": 2, "sample_seconds": 0.6, "update_seconds": [0.5, 0.5], "step_seconds": 1.8}]
    path = tmp_path / "timings.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    split = profile.step_split(path)
    assert split["step s"] == pytest.approx(1.6) and split["sampling s"] == pytest.approx(0.5)
    assert split["updates s"] == pytest.approx(0.9)
    assert split["grading + passes + advantages s"] == pytest.approx(0.2)  # median of 0.3, 0.1, 0.2
