"""Master weights stay fp32 whatever dtype a checkpoint was saved in, and every tensor the
training step builds follows the model's device.

Hub checkpoints (Qwen2.5) are saved in bf16, and transformers 5 loads with ``dtype="auto"``
by default: without an explicit fp32 load the policy would train with bf16 parameters and
bf16 AdamW moments, and at lr 1e-6 nearly every update rounds to zero.
"""

from __future__ import annotations

import json

import pytest
import torch

from pipeline import machine
from pipeline.cli import main
from pipeline.config import method_specs
from pipeline.models import load_model_and_tokenizer

TRAINING = {
    "rollouts": 1, "prompts_per_rollout": 4, "group_size": 4, "minibatch_prompts": 4, "epochs": 1,
    "lr": 1e-6, "weight_decay": 0.0, "grad_clip": 1.0, "temperature": 1.0, "top_p": 1.0,
    "max_new_tokens": 16, "entropy_chunk_size": None,
}


@pytest.fixture(scope="module")
def bf16_model_dir(tmp_path_factory, tiny_model_dir):
    """The tiny model saved in bf16, the way hub checkpoints are."""
    from transformers import AutoConfig

    model, tok = load_model_and_tokenizer(tiny_model_dir)
    out = tmp_path_factory.mktemp("bf16_model")
    model.to(torch.bfloat16).save_pretrained(out)
    tok.save_pretrained(out)
    assert str(AutoConfig.from_pretrained(out).dtype).endswith("bfloat16")
    return out


def _train(out, model_dir, train_file, method, entry):
    spec = method_specs({"methods": {method: entry}, "training": TRAINING})[method]
    rc = main([
        "train", "--base-model", str(model_dir), "--train-problems", str(train_file),
        "--method-json", json.dumps(spec), "--seed", "3", "--template", "{problem}\n",
        "--out-model", str(out / "model"), "--metrics", str(out / "metrics.jsonl"),
        "--checkpoint-dir", str(out / "ckpt"), "--checkpoint-every", "1",
    ])
    assert rc == 0
    (ckpt,) = sorted((out / "ckpt").glob("step-*"))
    return torch.load(ckpt / "state.pt", weights_only=True)


def test_a_bf16_checkpoint_loads_as_fp32(bf16_model_dir):
    model, _ = load_model_and_tokenizer(bf16_model_dir)
    assert {p.dtype for p in model.parameters()} == {torch.float32}


def test_one_update_at_lr_1e6_moves_every_parameter_that_has_a_gradient(tmp_path, bf16_model_dir, train_file):
    """The trainer's policy and AdamW moments are fp32, so a 1e-6 step is not rounded away.
    (With bf16 master weights about 2% of these parameters changed.)"""
    # an entropy bonus: every response token has a gradient, whatever the rewards
    state = _train(tmp_path / "run", bf16_model_dir, train_file, "grpo_entropy_reg", {"regularizer": {"coef": 0.5}})
    assert {v.dtype for v in state["policy"].values() if v.is_floating_point()} == {torch.float32}
    moments = [s for s in state["optimizer"]["state"].values()]
    assert moments and all(s["exp_avg"].dtype == torch.float32 and s["exp_avg_sq"].dtype == torch.float32 for s in moments)

    base, _ = load_model_and_tokenizer(bf16_model_dir)
    base_state = base.state_dict()
    trained = state["policy"]
    names = [n for n, _ in base.named_parameters()]
    with_grad = changed = 0
    for index, name in enumerate(names):
        had_grad = state["optimizer"]["state"][index]["exp_avg"] != 0
        moved = trained[name] != base_state[name]
        with_grad += int(had_grad.sum())
        changed += int((moved & had_grad).sum())
    assert with_grad > 1000
    assert changed / with_grad > 0.99


def test_the_ppo_critic_is_fp32_too(tmp_path, bf16_model_dir, train_file):
    state = _train(tmp_path / "ppo", bf16_model_dir, train_file, "ppo", {"estimator": {"critic_warmup_rollouts": 0}})
    assert {v.dtype for v in state["critic"].values() if v.is_floating_point()} == {torch.float32}
    assert all(s["exp_avg"].dtype == torch.float32 for s in state["critic_optimizer"]["state"].values())


# ----------------------------------------------------------------------------- devices
#
# The rollout (scores, masks, advantages, AER's per-prompt weights) lives on the CPU and
# the model on its device. The meta device stands in for a GPU here: a CPU tensor that
# meets a meta tensor raises exactly the device-mismatch error a CUDA run would.


def test_aer_weights_follow_the_entropy_to_its_device():
    from pipeline.rl.registry import AdaptiveEntropy

    reg = AdaptiveEntropy(eta=1.0)
    reg.begin_rollout(torch.tensor([0.0, 1.0]), 2)  # lambda on the CPU, like the trainer's
    entropy = torch.rand(4, 3, device="meta")
    mask = torch.ones(4, 3, device="meta")
    for agg in ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm"):
        term = reg.term(entropy, mask, torch.arange(4), agg, 8)
        assert term.device.type == "meta"


def test_entropy_bonus_weights_follow_the_entropy_to_its_device():
    from pipeline.rl.losses import entropy_bonus

    entropy = torch.rand(4, 3, device="meta")
    bonus = entropy_bonus(entropy, torch.ones(4, 3, device="meta"), weights=torch.ones(4, 1))
    assert bonus.device.type == "meta"


# ----------------------------------------------------------------------------- temperature


def test_training_logprobs_and_entropy_are_those_of_the_sampling_temperature(tiny_model_dir):
    from pipeline.rl.trainer import policy_logp_entropy

    model, tok = load_model_and_tokenizer(tiny_model_dir)
    ids = torch.tensor([tok("12+7\n12+7=19\nAnswer: 19").input_ids])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[:, :-1] / 0.6
        logp, entropy = policy_logp_entropy(model, ids, torch.ones_like(ids), None, temperature=0.6)
    ref = torch.log_softmax(logits, dim=-1)
    assert torch.allclose(logp, ref.gather(-1, ids[:, 1:, None]).squeeze(-1), atol=1e-5)
    assert torch.allclose(entropy, -(ref.exp() * ref).sum(-1), atol=1e-5)


def test_the_trainer_scores_with_its_rollout_temperature(tmp_path, tiny_model_dir, train_file, monkeypatch):
    import pipeline.rl.trainer as trainer

    seen = []
    original = trainer.policy_logp_entropy

    def recording(*args, **kwargs):
        seen.append(args[4] if len(args) > 4 else kwargs.get("temperature", 1.0))
        return original(*args, **kwargs)

    monkeypatch.setattr(trainer, "policy_logp_entropy", recording)
    spec = method_specs({"methods": {"grpo": {}}, "training": {**TRAINING, "temperature": 0.7}})["grpo"]
    out = tmp_path / "t"
    assert main([
        "train", "--base-model", str(tiny_model_dir), "--train-problems", str(train_file),
        "--method-json", json.dumps(spec), "--seed", "3", "--template", "{problem}\n",
        "--out-model", str(out / "model"), "--metrics", str(out / "metrics.jsonl"), "--checkpoint-dir", str(out / "ckpt"),
    ]) == 0
    assert seen and set(seen) == {0.7}


def test_the_critic_weight_decay_comes_from_the_config(tmp_path, tiny_model_dir, train_file):
    state = _train(tmp_path / "wd", tiny_model_dir, train_file, "ppo", {"estimator": {"critic_weight_decay": 0.0}})
    assert [g["weight_decay"] for g in state["critic_optimizer"]["param_groups"]] == [0.0]


def test_the_timings_log_says_what_the_run_trained_in(tmp_path, bf16_model_dir, train_file):
    """fp32 master weights; with training.precision bf16 the forward passes compute in bf16."""
    spec = method_specs({"methods": {"grpo": {}}, "training": {**TRAINING, "precision": "bf16"}})["grpo"]
    out = tmp_path / "bf16"
    assert main([
        "train", "--base-model", str(bf16_model_dir), "--train-problems", str(train_file),
        "--method-json", json.dumps(spec), "--seed", "3", "--template", "{problem}\n",
        "--out-model", str(out / "model"), "--metrics", str(out / "metrics.jsonl"), "--checkpoint-dir", str(out / "ckpt"),
    ]) == 0
    (timing,) = [json.loads(x) for x in (out / "ckpt" / "timings.jsonl").read_text().splitlines()]
    assert (timing["param_dtype"], timing["compute_dtype"]) == ("float32", "bfloat16")
    assert timing["cpu_kernels"] == torch.backends.cpu.get_cpu_capability()  # where it ran (pipeline/machine.py)
    assert timing["cpu_fingerprint"] == machine.cpu_fingerprint()
