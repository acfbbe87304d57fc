"""Training at scale, checked on CPU: micro-batch gradient accumulation, DDP and FSDP under
``accelerate launch`` (gloo, two processes), policy snapshots. vLLM rollouts with weight
sync run against the real engine in tests/test_vllm_engine.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from pipeline.cli import main
from pipeline.config import method_specs
from pipeline.rl.losses import AGGREGATIONS, aggregate, aggregation_units
from pipeline.rl.rollout import micro_batches

REPO = Path(__file__).resolve().parents[1]
TRAINING = {
    "rollouts": 1, "prompts_per_rollout": 8, "group_size": 4, "minibatch_prompts": 8, "epochs": 1,
    "lr": 1e-3, "weight_decay": 0.0, "grad_clip": 1.0, "temperature": 1.0, "top_p": 1.0,
    "max_new_tokens": 16, "entropy_chunk_size": None,
}


def spec_of(method, entry=None, **training):
    cfg = {"methods": {method: entry or {}}, "training": {**TRAINING, **training}}
    return method_specs(cfg)[method]


def train_args(model_dir, train_file, spec, out: Path, *extra):
    return [
        "train", "--base-model", str(model_dir), "--train-problems", str(train_file),
        "--method-json", json.dumps(spec), "--seed", "3", "--template", "{problem}\n",
        "--out-model", str(out / "model"), "--metrics", str(out / "metrics.jsonl"),
        "--checkpoint-dir", str(out / "ckpt"), *extra,
    ]


def weights(out: Path) -> dict[str, torch.Tensor]:
    return load_file(out / "model" / "model.safetensors")


def max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max()) for k in a)


# ----------------------------------------------------------------------------- pure pieces


def test_micro_batches_sort_by_length_and_cover_the_rows():
    lengths = torch.tensor([9, 3, 7, 3, 12, 5, 8, 1])
    rows = torch.tensor([0, 2, 4, 5, 6, 7])
    parts = micro_batches(rows, lengths, 4)
    assert [p.tolist() for p in parts] == [[7, 5, 2, 6], [0, 4]]
    assert sorted(torch.cat(parts).tolist()) == rows.tolist()


@pytest.mark.parametrize("mode", AGGREGATIONS)
def test_weighted_micro_batch_losses_add_up_to_the_mini_batch_loss(mode):
    g = torch.Generator().manual_seed(0)
    loss = torch.randn(10, 7, generator=g)
    mask = (torch.rand(10, 7, generator=g) > 0.4).float()
    mask[3] = 0  # a sequence without valid tokens
    full = aggregate(loss, mask, mode, norm_length=8)
    units = aggregation_units(mask, mode)
    parts = [slice(0, 4), slice(4, 5), slice(5, 10)]
    recombined = sum(aggregate(loss[p], mask[p], mode, norm_length=8) * aggregation_units(mask[p], mode) / units for p in parts)
    assert torch.allclose(recombined, full, atol=1e-6)


# ----------------------------------------------------------------------------- the trainer


@pytest.mark.parametrize(
    "method, entry",
    [
        ("grpo_entropy_reg", {"regularizer": {"coef": 0.5}}),
        ("grpo_entropy_reg", {"regularizer": {"coef": 0.5}, "loss": {"aggregation": "seq-mean-token-mean"}}),
        ("grpo_entropy_reg", {"regularizer": {"coef": 0.5}, "loss": {"aggregation": "seq-mean-token-sum-norm"}}),
        ("ppo", {"estimator": {"critic_warmup_rollouts": 0}}),
    ],
)
def test_micro_batching_gives_the_update_of_one_pass(tmp_path, tiny_model_dir, train_file, method, entry):
    """Length-sorted micro-batches of 5 sequences with accumulated gradients = one forward
    pass over the 32-sequence mini-batch (the same samples: sampling does not depend on
    it), in every aggregation mode. The untrained model gets every answer wrong, so the
    GRPO advantages are 0: the entropy bonus (and PPO's critic) provide the gradient."""
    one = tmp_path / "one"
    micro = tmp_path / "micro"
    assert main(train_args(tiny_model_dir, train_file, spec_of(method, entry, micro_batch_size=None), one)) == 0
    assert main(train_args(tiny_model_dir, train_file, spec_of(method, entry, micro_batch_size=5), micro)) == 0
    a = [json.loads(x) for x in (one / "metrics.jsonl").read_text().splitlines()]
    b = [json.loads(x) for x in (micro / "metrics.jsonl").read_text().splitlines()]
    keys = ("loss", "entropy", "grad_norm", "reg_term", "approx_kl")
    if method == "ppo":
        keys += ("value_loss", "value_clipfrac")
        assert a[0]["value_loss"] > 0.1  # the critic has something to learn
    else:
        base = load_file(Path(tiny_model_dir) / "model.safetensors")
        moved = max_diff(weights(one), base)
        assert moved > 1e-4  # the update did something
        assert max_diff(weights(one), weights(micro)) < 1e-3 * moved
    for key in keys:
        assert b[0][key] == pytest.approx(a[0][key], rel=1e-4, abs=1e-7), key


def test_snapshots_and_timings(tmp_path, tiny_model_dir, train_file):
    out = tmp_path / "run"
    spec = spec_of("grpo", rollouts=3, snapshot_every=2, prompts_per_rollout=4, minibatch_prompts=2)
    assert main(train_args(tiny_model_dir, train_file, spec, out, "--snapshot-dir", str(out / "snapshots"))) == 0
    snaps = sorted(p.name for p in (out / "snapshots").iterdir())
    assert snaps == ["rollout-0000", "rollout-0002", "rollout-0003"]
    assert max_diff(weights(out), load_file(out / "snapshots" / "rollout-0003" / "model.safetensors")) == 0
    assert max_diff(load_file(out / "snapshots" / "rollout-0000" / "model.safetensors"),
                    load_file(Path(tiny_model_dir) / "model.safetensors")) == 0
    timings = [json.loads(x) for x in (out / "ckpt" / "timings.jsonl").read_text().splitlines()]
    assert [t["rollout"] for t in timings] == [0, 1, 2]
    for t in timings:
        assert len(t["update_seconds"]) == 2 and t["step_seconds"] >= t["sample_seconds"] + sum(t["update_seconds"]) * 0.99
    # wall times never enter the metrics: those stay byte-identical across runs
    assert "seconds" not in (out / "metrics.jsonl").read_text()


def launch_two(model_dir, train_file, spec, out: Path, *extra) -> None:
    """The trainer in 2 processes through ``accelerate launch --multi_gpu`` (torch's launcher;
    without CUDA the trainer's Accelerator joins them over gloo on CPU)."""
    launcher = str(Path(sys.executable).parent / "accelerate")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [launcher, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
         "--dynamo_backend", "no", "-m", "pipeline", *train_args(model_dir, train_file, spec, out), "--threads", "1", *extra],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.mark.parametrize("sharding", ["ddp", "fsdp"])
def test_two_processes_under_accelerate_launch_match_one_process(tmp_path, tiny_model_dir, train_file, sharding):
    """Two processes, each with half the prompts and micro-batches of 3, replicated (DDP)
    or sharded (FSDP): the same update as one process over the whole mini-batch.
    Greedy rollouts (top-p 1e-6 keeps only the likeliest token; a near-zero temperature
    would also temper the training distribution) make the samples independent of how
    prompts are split; the
    entropy bonus gives the gradient (identical responses in a group have zero GRPO
    advantage), normalised over the tokens of both processes."""
    spec = spec_of("grpo_entropy_reg", {"regularizer": {"coef": 0.5}}, top_p=1e-6, rollouts=2, snapshot_every=1)
    one, two = tmp_path / "one", tmp_path / "two"
    assert main(train_args(tiny_model_dir, train_file, {**spec, "training": {**spec["training"], "micro_batch_size": None}}, one)) == 0
    launch_two(tiny_model_dir, train_file, {**spec, "training": {**spec["training"], "micro_batch_size": 3}}, two,
               "--sharding", sharding, "--snapshot-dir", str(two / "snapshots"))
    base = load_file(Path(tiny_model_dir) / "model.safetensors")
    moved = max_diff(weights(one), base)
    assert moved > 1e-5
    assert max_diff(weights(one), weights(two)) < 1e-3 * moved
    # the policy after rollout 1 (gathered from the shards under FSDP) was the one sampled from in rollout 2
    assert max_diff(load_file(one / "ckpt" / "snapshots" / "rollout-0001" / "model.safetensors"),
                    load_file(two / "snapshots" / "rollout-0001" / "model.safetensors")) < 1e-3 * moved
    a = [json.loads(x) for x in (one / "metrics.jsonl").read_text().splitlines()]
    b = [json.loads(x) for x in (two / "metrics.jsonl").read_text().splitlines()]
    assert len(a) == len(b) == 2
    for ra, rb in zip(a, b):
        for key in ("reward", "accuracy", "entropy", "rollout_entropy", "reg_term", "grad_norm"):
            assert rb[key] == pytest.approx(ra[key], rel=1e-4), key
    state = torch.load(sorted((two / "ckpt").glob("step-*"))[-1] / "state.pt", weights_only=True)
    assert state["sharding"] == sharding and set(base) <= set(state["policy"])  # full, unsharded weights
    assert json.loads((two / "ckpt" / "timings.jsonl").read_text().splitlines()[0])["processes"] == 2


_NO_WARMUP = {"critic_warmup_rollouts": 0}


@pytest.fixture(scope="module")
def eos_model_dir(tmp_path_factory, tiny_model_dir, train_file):
    """The untrained tiny model with its EOS output row pushed toward the mean final hidden
    state of the training prompts, so that greedy responses end at varied lengths (an
    untrained model otherwise never samples EOS in 16 tokens) and a length-based grader
    gives mixed rewards."""
    from pipeline.data.schema import read_problems
    from pipeline.models import load_model_and_tokenizer

    model, tok = load_model_and_tokenizer(tiny_model_dir)
    prompts = [tok(p + "\n").input_ids for p in read_problems(train_file)["problem"]]
    with torch.no_grad():
        hidden = torch.cat([model.model(input_ids=torch.tensor([p])).last_hidden_state[0] for p in prompts]).mean(0)
        model.lm_head.weight[tok.eos_token_id] += 0.1 * hidden / hidden.norm()
    out = tmp_path_factory.mktemp("eos_model")
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.mark.parametrize(
    "method, entry, keys",
    [
        # PPO: advantages whitened over the whole batch, not per process
        ("ppo", {"estimator": _NO_WARMUP}, ("value_loss", "explained_variance")),
        ("ppo_entropy_adv", {"estimator": _NO_WARMUP}, ("value_loss", "shaping_ratio")),
        # Clip-Cov / KL-Cov: covariance centred, tokens counted and chosen over the whole
        # mini-batch (on PPO's token-level advantages, which greedy rollouts leave nonzero)
        ("ppo_clip_cov", {"preset": "ppo", "estimator": _NO_WARMUP,
                          "loss": {"name": "clip_cov", "select_ratio": 0.05, "cov_low": -1e9, "cov_high": 1e9}}, ("cov_frac",)),
        ("ppo_kl_cov", {"preset": "ppo", "estimator": _NO_WARMUP, "loss": {"name": "kl_cov", "select_ratio": 0.05}}, ("cov_frac",)),
    ],
)
def test_batch_statistics_over_two_processes_match_one_process(tmp_path, eos_model_dir, train_file, method, entry, keys):
    """Statistics of the whole batch (PPO's whitening; Clip-Cov / KL-Cov's covariance,
    token counts and selection) are computed over both processes' tokens, so two
    processes with micro-batches of 3 update as one process over the whole batch does.
    Greedy rollouts (the same responses however prompts are split) and a grader that
    rewards even-length responses (mixed rewards from an untrained model)."""
    spec = spec_of(method, entry, top_p=1e-6, rollouts=2, minibatch_prompts=4)
    spec["training"]["micro_batch_size"] = None
    grader = ("--grader", "tests._hostile_graders:even_length")
    one, two = tmp_path / "one", tmp_path / "two"
    assert main(train_args(eos_model_dir, train_file, spec, one, *grader)) == 0
    launch_two(eos_model_dir, train_file, {**spec, "training": {**spec["training"], "micro_batch_size": 3}}, two, *grader)
    base = load_file(Path(eos_model_dir) / "model.safetensors")
    moved = max_diff(weights(one), base)
    assert moved > 1e-5
    assert max_diff(weights(one), weights(two)) < 1e-3 * moved
    a = [json.loads(x) for x in (one / "metrics.jsonl").read_text().splitlines()]
    b = [json.loads(x) for x in (two / "metrics.jsonl").read_text().splitlines()]
    assert len(a) == len(b) == 4 and 0 < a[0]["accuracy"] < 1
    # The critic starts with a zero head, so its backbone's first gradients are ~0 and AdamW
    # turns their float noise into lr-sized steps: after the first rollout the critic (and
    # the advantages it feeds) agree to 1e-3, the first rollout's statistics to 1e-4.
    for ra, rb in zip(a, b):
        for key in ("reward", "entropy", "pg_loss", "grad_norm", *keys):
            rel = 1e-4 if ra["rollout"] == 0 and key not in ("value_loss", "explained_variance") else 1e-3
            assert rb[key] == pytest.approx(ra[key], rel=rel, abs=1e-6, nan_ok=True), key


@pytest.mark.parametrize("loss", [
    {"name": "clip_cov", "select_ratio": 0.05, "cov_low": -1e9, "cov_high": 1e9},
    {"name": "kl_cov", "select_ratio": 0.05},
])
def test_covariance_losses_micro_batched_match_one_pass(tmp_path, eos_model_dir, train_file, loss):
    """Clip-Cov / KL-Cov centre, count and choose tokens over the whole mini-batch, so
    micro-batches of 5 update exactly as one pass does (per micro-batch, the token count
    alone was ~3x the nominal ratio on the toy)."""
    entry = {"preset": "ppo", "estimator": _NO_WARMUP, "loss": loss}
    grader = ("--grader", "tests._hostile_graders:even_length")
    one, micro = tmp_path / "one", tmp_path / "micro"
    assert main(train_args(eos_model_dir, train_file, spec_of("m", entry, micro_batch_size=None, minibatch_prompts=4), one, *grader)) == 0
    assert main(train_args(eos_model_dir, train_file, spec_of("m", entry, micro_batch_size=5, minibatch_prompts=4), micro, *grader)) == 0
    base = load_file(Path(eos_model_dir) / "model.safetensors")
    moved = max_diff(weights(one), base)
    assert moved > 1e-5 and max_diff(weights(one), weights(micro)) < 1e-3 * moved
    a = [json.loads(x) for x in (one / "metrics.jsonl").read_text().splitlines()]
    b = [json.loads(x) for x in (micro / "metrics.jsonl").read_text().splitlines()]
    for ra, rb in zip(a, b):
        assert rb["cov_frac"] == ra["cov_frac"] and ra["cov_frac"] > 0
        assert rb["pg_loss"] == pytest.approx(ra["pg_loss"], rel=1e-5, abs=1e-7)


def test_fsdp_resume_restores_the_sharded_optimizer_state(tmp_path, tiny_model_dir, train_file):
    """A 2-process FSDP run stopped after rollout 1 and resumed gives the uninterrupted
    run's result: the AdamW moments were gathered into the checkpoint and re-sharded."""
    spec = spec_of("grpo_entropy_reg", {"regularizer": {"coef": 0.5}}, top_p=1e-6)
    full, resumed = tmp_path / "full", tmp_path / "resumed"
    launch_two(tiny_model_dir, train_file, {**spec, "training": {**spec["training"], "rollouts": 3}}, full, "--sharding", "fsdp")
    launch_two(tiny_model_dir, train_file, {**spec, "training": {**spec["training"], "rollouts": 2}}, resumed, "--sharding", "fsdp")
    launch_two(tiny_model_dir, train_file, {**spec, "training": {**spec["training"], "rollouts": 3}}, resumed, "--sharding", "fsdp")
    assert max_diff(weights(full), weights(resumed)) < 1e-6
    assert (full / "metrics.jsonl").read_text() == (resumed / "metrics.jsonl").read_text()
    # resuming that checkpoint without sharding is refused by name
    rc = main(train_args(tiny_model_dir, train_file, {**spec, "training": {**spec["training"], "rollouts": 4}}, resumed))
    assert rc == 2


def test_uneven_split_over_processes_is_refused(tmp_path, tiny_model_dir, train_file, monkeypatch, capsys):
    from pipeline.rl import distributed

    class TwoProcesses(distributed.Processes):
        def __init__(self, precision="fp32", sharding="ddp"):
            super().__init__(precision, sharding)
            self.world, self.distributed = 2, True

    monkeypatch.setattr("pipeline.rl.trainer.Processes", TwoProcesses)
    spec = spec_of("grpo", prompts_per_rollout=6, minibatch_prompts=3)
    assert main(train_args(tiny_model_dir, train_file, spec, tmp_path / "x")) == 2
    assert "multiples of the number of processes (2)" in capsys.readouterr().err
