"""A protocol the model's context cannot hold is refused at the start of the job, naming
both numbers (Qwen2.5-Math-7B: max_position_embeddings 4096, so max_model_len 9216 cannot run)."""

from __future__ import annotations

import json
import logging

import pandas as pd

from pipeline.cli import main
from pipeline.config import method_specs
from pipeline.data.schema import read_problems

TRAINING = {
    "rollouts": 1, "prompts_per_rollout": 4, "group_size": 2, "minibatch_prompts": 4, "epochs": 1,
    "lr": 1e-3, "weight_decay": 0.0, "grad_clip": 1.0, "temperature": 1.0, "top_p": 1.0,
    "max_new_tokens": 8, "entropy_chunk_size": None,
}


def sample_args(model, problems, out, **sampling):
    cfg = {"temperature": 0.6, "top_p": 0.95, "top_k": 0, "max_new_tokens": 8, "batch_size": 64, "backend": "hf",
           "dtype": "float32", "max_model_len": None, **sampling}
    return ["sample", "--model", str(model), "--problems", str(problems), "--n", "2", "--sampling-json", json.dumps(cfg),
            "--template", "{problem}\n", "--seed", "0", "--out", str(out)]


def train_args(model, problems, out, **training):
    spec = method_specs({"methods": {"grpo": {}}, "training": {**TRAINING, **training}})["grpo"]
    return ["train", "--base-model", str(model), "--train-problems", str(problems), "--method-json", json.dumps(spec),
            "--seed", "0", "--template", "{problem}\n", "--out-model", str(out / "model"),
            "--metrics", str(out / "metrics.jsonl"), "--checkpoint-dir", str(out / "ckpt")]


def test_sampling_refuses_a_max_model_len_beyond_the_models_context(tmp_path, tiny_model_dir, train_file, capsys):
    # the tiny model's max_position_embeddings is 160
    assert main(sample_args(tiny_model_dir, train_file, tmp_path / "s.parquet", max_model_len=9216)) == 2
    err = capsys.readouterr().err
    assert "max_model_len 9216 exceeds the model's context of 160 tokens" in err
    assert not (tmp_path / "s.parquet").exists()


def test_sampling_refuses_a_response_budget_beyond_the_context(tmp_path, tiny_model_dir, train_file, capsys):
    assert main(sample_args(tiny_model_dir, train_file, tmp_path / "s.parquet", max_new_tokens=200)) == 2
    err = capsys.readouterr().err
    assert "sampling: the longest prompt" in err and "+ max_new_tokens (200)" in err and "context of 160 tokens" in err


def test_training_refuses_a_response_budget_beyond_the_context(tmp_path, tiny_model_dir, train_file, capsys):
    assert main(train_args(tiny_model_dir, train_file, tmp_path / "t", max_new_tokens=200)) == 2
    err = capsys.readouterr().err
    assert "training: the longest prompt" in err and "max_new_tokens (200)" in err and "context of 160 tokens" in err


def test_max_prompt_tokens_drops_longer_training_prompts(tmp_path, tiny_model_dir, train_file, caplog):
    caplog.set_level(logging.INFO)
    problems = read_problems(train_file)
    long = problems.iloc[:1].assign(id="long", problem="1+" * 60 + "1")  # 121 characters = tokens
    mixed = tmp_path / "mixed.parquet"
    pd.concat([problems, long]).to_parquet(mixed)
    # 121 prompt tokens + 48 > 160: refused, unless the long prompt is dropped
    assert main(train_args(tiny_model_dir, mixed, tmp_path / "a", max_new_tokens=48)) == 2
    assert main(train_args(tiny_model_dir, mixed, tmp_path / "b", max_new_tokens=48, max_prompt_tokens=100)) == 0
    assert f"{len(problems)} of {len(problems) + 1} training prompts kept" in caplog.text
