"""Paper scale on this machine: the hub-world data stage on local mirrors (real `datasets`),
and dry runs of every paper config listing methods x seeds x suites with GPU resources."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from pipeline.cli import main
from tests.test_hub_loaders import AIME24_ROWS, dapo_row, write_jsonl

ROOT = Path(__file__).resolve().parents[1]
PAPER_CONFIGS = sorted((ROOT / "configs" / "paper").glob("*.yaml"))


def test_prepare_hub_data_on_local_mirrors_reports_overlap(tmp_path):
    aime = write_jsonl(tmp_path / "aime24.jsonl", AIME24_ROWS)
    overlap = AIME24_ROWS[0]["problem"]
    dapo = write_jsonl(tmp_path / "dapo.jsonl", [
        dapo_row("What is $1+1$?", "2", "a"), dapo_row("What is $1+1$?", "2", "b"), dapo_row(overlap, "204", "c"),
    ])
    suites = {"aime24": {"benchmark": "aime24", "data_files": str(aime), "expected_rows": len(AIME24_ROWS), "k": 2, "n_samples": 2}}
    train = {"benchmark": "dapo17k", "data_files": str(dapo), "expected_rows": [1, 10]}
    args = [
        "prepare-hub-data", "--suites-json", json.dumps(suites), "--train-json", json.dumps(train),
        "--suites-dir", str(tmp_path / "suites"), "--train-out", str(tmp_path / "train.parquet"),
        "--report", str(tmp_path / "decontamination.json"),
    ]
    assert main(args) == 0  # overlap only warns by default
    report = json.loads((tmp_path / "decontamination.json").read_text())
    assert report["total_overlap"] == 1
    assert len(pd.read_parquet(tmp_path / "train.parquet")) == 2  # deduplicated
    assert list(pd.read_parquet(tmp_path / "suites" / "aime24.parquet")["answer"]) == [r["answer"] for r in AIME24_ROWS]
    # the config switch makes it fail, and the report is still written
    (tmp_path / "decontamination.json").unlink()
    assert main(args + ["--fail-on-overlap"]) == 2
    assert (tmp_path / "decontamination.json").exists()


@pytest.mark.parametrize("config", PAPER_CONFIGS, ids=lambda p: p.stem)
def test_paper_config_dry_run_lists_the_job_graph_with_gpus(config, tmp_path):
    cfg = yaml.safe_load(config.read_text())
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "-p", "--snakefile", str(ROOT / "Snakefile"), "--directory", str(tmp_path),
         "--configfile", str(config), "--cores", "64"],
        capture_output=True, text=True, timeout=300,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    # training runs one process per GPU through accelerate, sharded, bf16, vLLM rollouts
    launch = f"-m accelerate.commands.launch --config_file {cfg['distributed']['accelerate_config']} --num_processes {cfg['resources']['train']['gpu']} -m pipeline train"
    assert out.count(launch) == len(cfg["methods"]) * len(cfg["seeds"])
    assert "--sharding fsdp" in out and '"precision":"bf16"' in out and '"rollout_backend":"vllm"' in out
    n_runs = len(cfg["methods"]) * len(cfg["seeds"])
    n_suites = len(cfg["suites"])
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", out, flags=re.M))
    assert int(counts["train"]) == n_runs
    assert int(counts["sample"]) == n_runs + 1  # one sampling job (one vLLM engine) per model for all its suites
    assert int(counts["score"]) == (n_runs + 1) * n_suites
    train_gpus = cfg["resources"]["train"]["gpu"]
    assert re.search(rf"rule train:.*?resources:[^\n]*gpu={train_gpus}\b", out, flags=re.S)
    assert re.search(rf"rule sample:.*?resources:[^\n]*gpu={cfg['resources']['sample']['gpu']}\b", out, flags=re.S)


# The context window of each base model (max_position_embeddings of its config.json at the
# pinned revision): Qwen2.5-Math-7B's 4096 cannot hold the papers' 8192 new tokens.
MODEL_CONTEXT = {"Qwen/Qwen2.5-7B": 131072, "Qwen/Qwen2.5-Math-7B": 4096}


@pytest.mark.parametrize("config", PAPER_CONFIGS, ids=lambda p: p.stem)
def test_every_paper_config_fits_its_models_context(config):
    cfg = yaml.safe_load(config.read_text())
    context = MODEL_CONTEXT[cfg["base_model"]["hub"]["repo_id"]]
    sampling, training = cfg["sampling"], cfg["training"]
    assert sampling["max_model_len"] <= context
    assert sampling["max_new_tokens"] < sampling["max_model_len"]
    if training.get("max_prompt_tokens"):
        assert training["max_prompt_tokens"] + training["max_new_tokens"] <= context


def test_ppo_warms_its_critic_for_the_papers_ten_steps():
    """Cheng et al.: 10 critic warm-up steps; a verl step is one rollout batch."""
    cfg = yaml.safe_load((ROOT / "configs" / "paper" / "cheng2025_table2_qwen25_7b.yaml").read_text())
    for method in ("ppo", "ppo_entropy_adv"):
        assert cfg["methods"][method]["estimator"]["critic_warmup_rollouts"] == 10


def test_prepare_hub_data_without_a_training_set(tmp_path):
    """eval_models only: the suites are loaded, no training set is needed or written."""
    aime = write_jsonl(tmp_path / "aime24.jsonl", AIME24_ROWS)
    suites = {"aime24": {"benchmark": "aime24", "data_files": str(aime), "expected_rows": len(AIME24_ROWS), "k": 2, "n_samples": 2}}
    assert main(["prepare-hub-data", "--suites-json", json.dumps(suites), "--train-json", "null",
                 "--suites-dir", str(tmp_path / "suites"), "--report", str(tmp_path / "report.json")]) == 0
    assert len(pd.read_parquet(tmp_path / "suites" / "aime24.parquet")) == len(AIME24_ROWS)
    assert json.loads((tmp_path / "report.json").read_text())["train"] is None


def test_eval_models_paper_config_dry_run_fetches_both_models_at_their_revisions(tmp_path):
    """configs/eval/qwen25_7b_vs_math_7b.yaml: no training, both hub models fetched at their pinned
    commits, one sampling job (one vLLM engine, a GPU) per model, every suite scored."""
    config = ROOT / "configs" / "eval" / "qwen25_7b_vs_math_7b.yaml"
    cfg = yaml.safe_load(config.read_text())
    out = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "-p", "--configfile", str(config), "--directory", str(tmp_path),
         "--snakefile", str(ROOT / "Snakefile")],
        capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", out.stdout, flags=re.M))
    assert "train" not in counts and "build_base_model" not in counts
    assert int(counts["fetch_eval_model"]) == 2 and int(counts["sample"]) == 2
    assert int(counts["score"]) == 2 * len(cfg["suites"])
    for entry in cfg["eval_models"].values():
        assert re.search(rf'"repo_id":"{re.escape(entry["repo_id"])}","revision":"{entry["revision"]}"', out.stdout)
    assert re.search(r"rule sample:.*?resources:[^\n]*gpu=1\b", out.stdout, flags=re.S)


def test_custom_suite_and_training_set_from_local_files_with_a_field_mapping(tmp_path):
    """benchmark: custom -- your own data (jsonl, csv, parquet) with its own column names, no code change."""
    suite = write_jsonl(tmp_path / "mine.jsonl", [
        {"q": "What is $2+2$?", "sol": "4", "key": "a", "lvl": "Level 2"},
        {"q": "What is $3 \\cdot 3$?", "sol": "9", "key": "b", "lvl": "Level 4"},
    ])
    pd.DataFrame({"question": ["1+1?", "5-2?", "6/3?"], "final": ["2", "3", "2"]}).to_csv(tmp_path / "train.csv", index=False)
    suites = {"mine": {"benchmark": "custom", "data_files": str(suite), "k": 2, "n_samples": 2,
                       "fields": {"problem": "q", "answer": "sol", "id": "key", "difficulty": "lvl"}}}
    train = {"benchmark": "custom", "data_files": str(tmp_path / "train.csv"), "fields": {"problem": "question", "answer": "final"}}
    assert main(["prepare-hub-data", "--suites-json", json.dumps(suites), "--train-json", json.dumps(train),
                 "--suites-dir", str(tmp_path / "suites"), "--train-out", str(tmp_path / "train.parquet"),
                 "--report", str(tmp_path / "report.json")]) == 0
    mine = pd.read_parquet(tmp_path / "suites" / "mine.parquet")
    assert list(mine["id"]) == ["mine-a", "mine-b"] and list(mine["answer"]) == ["4", "9"]
    assert list(mine["difficulty"]) == [2, 4] and set(mine["source"]) == {"mine"}
    assert list(pd.read_parquet(tmp_path / "train.parquet")["answer"]) == ["2", "3", "2"]
    # a column that is not there: the error names it
    suites["mine"]["fields"]["answer"] = "solution"
    assert main(["prepare-hub-data", "--suites-json", json.dumps(suites), "--train-json", json.dumps(train),
                 "--suites-dir", str(tmp_path / "s2"), "--train-out", str(tmp_path / "t2.parquet"),
                 "--report", str(tmp_path / "r2.json")]) == 2


def test_custom_hub_dataset_is_read_at_its_revision_split_and_config(monkeypatch):
    import datasets

    from pipeline.data import hub

    asked = []

    def fake_hub(hub_id, config, *, split, revision, cache_dir):
        asked.append((hub_id, config, split, revision))
        return datasets.Dataset.from_dict({"prompt": ["1+1?"], "target": ["2"]})

    monkeypatch.setattr(hub, "hub_load_dataset", fake_hub)
    frame = hub.load_benchmark_from_config("custom", {
        "repo_id": "me/my-set", "revision": "a" * 40, "split": "test", "config": "main", "name": "myset",
        "fields": {"problem": "prompt", "answer": "target"},
    })
    assert asked == [("me/my-set", "main", "test", "a" * 40)]
    assert list(frame["id"]) == ["myset-0"] and list(frame["answer"]) == ["2"]


@pytest.mark.parametrize("entry, expected", [
    ({"benchmark": "custom", "data_files": "x.jsonl"}, "suites.mine.fields"),
    ({"benchmark": "custom", "fields": {"problem": "q", "answer": "a"}}, "needs data_files"),
    ({"benchmark": "custom", "repo_id": "me/x", "fields": {"problem": "q", "answer": "a"}}, "suites.mine.revision"),
])
def test_custom_benchmark_config_errors_name_the_key(entry, expected):
    from pipeline.config import ConfigError, check_config

    cfg = yaml.safe_load((ROOT / "configs" / "eval" / "qwen25_7b_vs_math_7b.yaml").read_text())
    cfg["suites"] = {"mine": {**entry, "k": 2, "n_samples": 2}}
    with pytest.raises(ConfigError, match=re.escape(expected)):
        check_config(cfg)
