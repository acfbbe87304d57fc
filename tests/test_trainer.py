"""The trainer: every method runs through the one loop, logs its dynamics, and resumes exactly."""

import json
import math

import pytest
import torch

from pipeline.cli import main
from pipeline.config import method_specs
from pipeline.models import load_model_and_tokenizer
from pipeline.rl import registry
from pipeline.rl.trainer import policy_logp_entropy

TRAINING = {
    "rollouts": 2, "prompts_per_rollout": 4, "group_size": 4, "minibatch_prompts": 2, "epochs": 1,
    "lr": 1e-3, "weight_decay": 0.0, "grad_clip": 1.0, "temperature": 1.0, "top_p": 1.0,
    "max_new_tokens": 16, "entropy_chunk_size": None,
}


def train(tmp_path, tiny_model_dir, train_file, method, entry=None, rollouts=2, tag="run", every=1, extra=()):
    cfg = {"methods": {method: entry or {}}, "training": {**TRAINING, "rollouts": rollouts}}
    spec = method_specs(cfg)[method]
    out = tmp_path / tag
    rc = main([
        "train", "--base-model", str(tiny_model_dir), "--train-problems", str(train_file),
        "--method-json", json.dumps(spec), "--seed", "3", "--template", "{problem}\n",
        "--out-model", str(out / "model"), "--metrics", str(out / "metrics.jsonl"),
        "--checkpoint-dir", str(out / "ckpt"), "--checkpoint-every", str(every), *extra,
    ])
    assert rc == 0
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()], out


@pytest.mark.parametrize(
    "method, keys",
    [
        ("grpo", ["clipfrac_low", "clipfrac_high", "approx_kl", "grad_norm"]),
        ("grpo_entropy_adv", ["shaping_ratio"]),
        ("ppo_entropy_adv", ["value_loss", "explained_variance", "shaping_ratio"]),
        ("grpo_aer", ["aer_alpha", "aer_lambda_mean", "aer_lambda_frac"]),
        ("grpo_clip_cov", ["cov_frac"]),
        ("grpo_kl_cov", ["cov_frac"]),
        ("grpo_entropy_reg", ["reg_term"]),
    ],
)
def test_each_method_trains_and_logs_per_update(tmp_path, tiny_model_dir, train_file, method, keys):
    records, out = train(tmp_path, tiny_model_dir, train_file, method)
    assert [r["update"] for r in records] == list(range(4))  # 2 rollouts x 2 mini-batches
    for key in ["reward", "response_length", "entropy", "loss", "lr", *keys]:
        assert key in records[-1], key
    model, _ = load_model_and_tokenizer(out / "model")
    assert sum(p.numel() for p in model.parameters()) > 0


def test_resume_gives_the_same_result_as_an_uninterrupted_run(tmp_path, tiny_model_dir, train_file):
    full, _ = train(tmp_path, tiny_model_dir, train_file, "grpo_aer", rollouts=3, tag="full")
    # "interrupted" after 2 rollouts (the checkpoint at rollout 2 exists), then restarted for 3
    train(tmp_path, tiny_model_dir, train_file, "grpo_aer", rollouts=2, tag="resumed")
    resumed, out = train(tmp_path, tiny_model_dir, train_file, "grpo_aer", rollouts=3, tag="resumed")
    assert [r["loss"] for r in resumed] == [r["loss"] for r in full]
    assert resumed[-1]["aer_alpha"] == full[-1]["aer_alpha"]
    state = torch.load(sorted((out / "ckpt").glob("step-*"))[-1] / "state.pt", weights_only=False)
    assert state["rollout"] == 3 and "step" in state["regularizer"]


def test_entropy_shaping_enlarges_the_step_on_high_entropy_tokens(tiny_model_dir):
    """Cheng et al.: with A > 0, tokens of high entropy get a larger update than under
    plain GRPO; with A < 0 the shaped advantage shrinks the push-down. One SGD step from
    the same weights, plain vs shaped advantages."""
    model, tok = load_model_and_tokenizer(tiny_model_dir)
    ids = torch.tensor([tok("12+7\n12+7=19\nAnswer: 19").input_ids])
    attention = torch.ones_like(ids)
    mask = torch.zeros(1, ids.shape[1] - 1)
    mask[0, 5:] = 1.0
    init = {k: v.clone() for k, v in model.state_dict().items()}

    def delta_logp(sign, shaped):
        model.load_state_dict(init)
        opt = torch.optim.SGD(model.parameters(), lr=0.5)
        logp, entropy = policy_logp_entropy(model, ids, attention, None)
        adv = sign * torch.ones_like(logp) * mask
        if shaped:
            adv = registry.entropy_advantage(adv, entropy, alpha=0.4, kappa=2.0)
        loss, _ = registry.clip_loss(
            logp, logp.detach(), adv, mask, clip_low=0.2, clip_high=0.28, dual_clip=None,
            aggregation="token-mean", norm_length=None,
        )
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            new_logp, _ = policy_logp_entropy(model, ids, attention, None)
        return (new_logp - logp.detach())[mask.bool()], entropy.detach()[mask.bool()]

    plain, entropy = delta_logp(+1.0, shaped=False)
    shaped, _ = delta_logp(+1.0, shaped=True)
    high = entropy >= entropy.median()
    assert shaped[high].mean() > plain[high].mean() > 0
    plain_neg, _ = delta_logp(-1.0, shaped=False)
    shaped_neg, _ = delta_logp(-1.0, shaped=True)
    assert plain_neg[high].mean() < shaped_neg[high].mean() < 0


def test_non_finite_loss_stops_with_the_step_and_keeps_the_checkpoint(tmp_path, tiny_model_dir, train_file):
    # lr = inf makes the weights non-finite after the first update: the next loss is NaN.
    cfg_entry = {"training": {"lr": float("inf")}}
    spec = method_specs({"methods": {"grpo": cfg_entry}, "training": TRAINING})["grpo"]
    rc = main([
        "train", "--base-model", str(tiny_model_dir), "--train-problems", str(train_file),
        "--method-json", json.dumps(spec), "--seed", "0", "--template", "{problem}\n",
        "--out-model", str(tmp_path / "m"), "--metrics", str(tmp_path / "m.jsonl"),
        "--checkpoint-dir", str(tmp_path / "ckpt"), "--checkpoint-every", "1",
    ])
    assert rc == 2
    assert not (tmp_path / "m").exists()


def test_rollout_rewards_are_graded_under_a_hard_timeout(tmp_path, tiny_model_dir, train_file, monkeypatch):
    """A response that hangs the grader costs one timeout (counted wrong and logged as
    grader_timeouts), not the run: rewards are graded in worker processes."""
    monkeypatch.setenv("HANG_ONCE_MARKER", str(tmp_path / "hung"))
    spec = method_specs({"methods": {"grpo": {}}, "training": {**TRAINING, "rollouts": 2}})["grpo"]
    out = tmp_path / "run"
    rc = main([
        "train", "--base-model", str(tiny_model_dir), "--train-problems", str(train_file),
        "--method-json", json.dumps(spec), "--seed", "3", "--template", "{problem}\n",
        "--grader", "tests._hostile_graders:hang_once", "--grading-timeout-s", "0.5",
        "--out-model", str(out / "model"), "--metrics", str(out / "metrics.jsonl"), "--checkpoint-dir", str(out / "ckpt"),
    ])
    assert rc == 0 and (tmp_path / "hung").exists()
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert {r["grader_timeouts"] for r in records if r["rollout"] == 0} == {1}  # a per-rollout count on each update
    assert {r["grader_timeouts"] for r in records if r["rollout"] == 1} == {0}
    assert all(r["grader_errors"] == 0 for r in records)


def test_aer_sets_each_rollouts_alpha_from_that_rollouts_entropy(tmp_path, tiny_model_dir, train_file):
    """No one-rollout lag: alpha_r = clip(alpha_{r-1} + eta * (H* - H_r), 0, alpha_max) with H_r
    the rollout's own entropy, measured before its updates (rollout 0 anchors H_0)."""
    entry = {"regularizer": {"eta": 5.0, "alpha_max": 10.0, "rho": 1.2}}
    records, _ = train(tmp_path, tiny_model_dir, train_file, "grpo_aer", entry, rollouts=4)
    per_rollout = {r["rollout"]: r for r in records}
    assert per_rollout[0]["aer_alpha"] == 0.0 and per_rollout[0]["aer_h0"] == per_rollout[0]["rollout_entropy"]
    target = per_rollout[0]["aer_target"]
    for r in range(1, 4):
        expected = min(max(per_rollout[r - 1]["aer_alpha"] + 5.0 * (target - per_rollout[r]["rollout_entropy"]), 0.0), 10.0)
        assert per_rollout[r]["aer_alpha"] == pytest.approx(expected, rel=1e-12, abs=1e-15)
    assert per_rollout[3]["aer_alpha"] > 0


def test_lr_schedules_by_hand():
    from pipeline.rl.schedule import learning_rate

    # constant: lr throughout; warm-up: lr * (u + 1) / w, so the first update already moves
    assert [learning_rate(1.0, {}, u, 10) for u in (0, 5, 9)] == [1.0, 1.0, 1.0]
    assert [learning_rate(1.0, {"warmup_updates": 4}, u, 10) for u in range(5)] == [0.25, 0.5, 0.75, 1.0, 1.0]
    # cosine over updates 2..9 after 2 warm-up updates: lr at the first, 0.1 * lr at the last
    cos = {"name": "cosine", "warmup_updates": 2, "min_lr_ratio": 0.1}
    lrs = [learning_rate(2.0, cos, u, 10) for u in range(10)]
    assert lrs[:3] == [1.0, 2.0, 2.0] and lrs[-1] == pytest.approx(0.2)
    assert lrs[5] == pytest.approx(2.0 * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 3 / 7))))
    assert all(a >= b for a, b in zip(lrs[2:], lrs[3:]))
    with pytest.raises(ValueError, match="known: \\['constant', 'cosine'\\]"):
        learning_rate(1.0, {"name": "step"}, 0, 10)


def test_cosine_schedule_with_warmup_reaches_every_policy_update(tmp_path, tiny_model_dir, train_file):
    """The lr each update used is logged; PPO's critic warm-up rollouts do not advance the schedule."""
    from pipeline.rl.schedule import learning_rate

    schedule = {"name": "cosine", "warmup_updates": 2, "min_lr_ratio": 0.0}
    records, _ = train(tmp_path, tiny_model_dir, train_file, "grpo", {"training": {"lr_schedule": schedule}}, rollouts=3)
    assert [r["lr"] for r in records] == [learning_rate(1e-3, schedule, u, 6) for u in range(6)]
    assert records[0]["lr"] == pytest.approx(5e-4) and records[-1]["lr"] == pytest.approx(0.0, abs=1e-12)
    entry = {"estimator": {"critic_warmup_rollouts": 1}, "training": {"lr_schedule": schedule}}
    records, _ = train(tmp_path, tiny_model_dir, train_file, "ppo", entry, rollouts=3, tag="ppo")
    policy = [r["lr"] for r in records if r["policy_updated"]]
    assert policy == [learning_rate(1e-3, schedule, u, 4) for u in range(4)]
    assert all(r["lr"] >= 0 for r in records)


def test_kl_to_the_reference_is_zero_at_the_start_and_pulls_the_policy_back(tmp_path, tiny_model_dir, train_file):
    """training.kl: the reference is the base model (KL 0 at the first update); a large coefficient
    keeps the policy closer to it than a tiny one does; off by default (no kl_ref logged). (The
    untrained tiny model earns no reward: an entropy bonus moves the policy.)"""
    bonus = {"regularizer": {"coef": 0.5}}
    plain, _ = train(tmp_path, tiny_model_dir, train_file, "grpo_entropy_reg", bonus, rollouts=3, tag="plain")
    assert "kl_ref" not in plain[0]
    weak, _ = train(tmp_path, tiny_model_dir, train_file, "grpo_entropy_reg", {**bonus, "training": {"kl": {"coef": 1e-6}}},
                    rollouts=3, tag="weak")
    strong, _ = train(tmp_path, tiny_model_dir, train_file, "grpo_entropy_reg",
                      {**bonus, "training": {"kl": {"coef": 50.0, "estimator": "k3"}}}, rollouts=3, tag="strong")
    assert weak[0]["kl_ref"] == pytest.approx(0.0, abs=1e-6) and strong[0]["kl_ref"] == pytest.approx(0.0, abs=1e-6)
    assert weak[-1]["kl_ref"] > 1e-6
    assert strong[-1]["kl_ref"] < weak[-1]["kl_ref"] / 2
    assert weak[-1]["loss"] == pytest.approx(plain[-1]["loss"], rel=1e-3)  # a tiny coefficient barely changes the loss


def test_progress_lines_and_tensorboard_scalars(tmp_path, tiny_model_dir, train_file, caplog):
    """Watching a run: one plain progress line per rollout (with ETA) in the log, and every
    update's metrics as TensorBoard scalars equal to metrics.jsonl's."""
    import logging

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    with caplog.at_level(logging.INFO, logger="pipeline.progress"):
        records, _ = train(tmp_path, tiny_model_dir, train_file, "grpo",
                           extra=["--progress-every-s", "0", "--tensorboard-dir", str(out / "tb")])
    lines = [r.getMessage() for r in caplog.records if r.name == "pipeline.progress"]
    assert lines[0].startswith("train grpo seed 3: rollouts: 1/2 (50%)") and "ETA" in lines[0] and "accuracy" in lines[0]
    assert lines[-1].startswith("train grpo seed 3: rollouts: 2/2 (100%)") and "done" in lines[-1]
    events = EventAccumulator(str(out / "tb"))
    events.Reload()
    entropy = events.Scalars("train/entropy")
    assert [e.step for e in entropy] == [r["update"] for r in records]
    assert [e.value for e in entropy] == pytest.approx([r["entropy"] for r in records], rel=1e-6)
    assert "train/lr" in events.Tags()["scalars"]


def test_progress_log_eta_by_hand():
    from pipeline.progress import ProgressLog

    t = [0.0]
    p = ProgressLog("x", 10, every_s=5, clock=lambda: t[0])
    t[0] = 4.0
    p.done = 2
    assert p.line() == "x: 2/10 (20%), 4 s elapsed, ETA 16 s"


def test_wandb_offline_run_holds_the_metrics(tmp_path, tiny_model_dir, train_file, monkeypatch):
    """logging.wandb: an offline W&B run named <method>/seed<s>, its summary = the last update's metrics."""
    monkeypatch.setenv("WANDB_SILENT", "true")
    out = tmp_path / "run"
    records, _ = train(tmp_path, tiny_model_dir, train_file, "grpo", rollouts=1,
                       extra=["--wandb-project", "entropy-rl-test", "--wandb-dir", str(out / "wandb")])
    last = records[-1]
    runs = list((out / "wandb" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    # the run's log (W&B's own binary record format; values are stored as JSON text)
    data = next(runs[0].glob("run-*.wandb")).read_bytes()
    assert b"entropy-rl-test" in data and b"grpo/seed3" in data and b"train/entropy" in data
    assert json.dumps(last["entropy"]).encode() in data and json.dumps(last["lr"]).encode() in data
    assert b"clip_high" in data  # the resolved method is the run's config


@pytest.mark.parametrize("method", ["grpo_aer", "ppo"])
def test_old_log_probs_from_the_sampler_train_as_the_recomputed_ones(tmp_path, tiny_model_dir, train_file, method):
    """training.old_log_probs: rollout skips the no-grad pass over the rollout and takes the
    HF sampler's log-probs and entropies: the same rollouts, the same updates up to float
    rounding (the ratio, AER's observed entropy, PPO's critic unchanged)."""
    runs = {}
    for source in ("recompute", "rollout"):
        entry = {"training": {"old_log_probs": source}}
        runs[source], _ = train(tmp_path, tiny_model_dir, train_file, method, entry=entry, rollouts=2, tag=source)
    recomputed, reused = runs["recompute"], runs["rollout"]
    assert [r["update"] for r in reused] == [r["update"] for r in recomputed]
    for a, b in zip(recomputed, reused):
        assert a["response_length"] == b["response_length"] and a["reward"] == b["reward"]  # same samples
        for key in ("loss", "entropy", "approx_kl"):
            assert b[key] == pytest.approx(a[key], abs=1e-4), key
    assert abs(reused[0]["approx_kl"]) < 1e-5  # first update: the policy that sampled, ratio 1


def test_old_log_probs_from_the_sampler_need_the_hf_backend_in_fp32():
    from pipeline.config import _check_training
    from pipeline.schema import ConfigError

    base = {"minibatch_prompts": 2, "prompts_per_rollout": 4, "old_log_probs": "rollout", "precision": "fp32"}
    _check_training("training", {**base, "rollout_backend": "hf"})
    for bad in ({"rollout_backend": "vllm"}, {"rollout_backend": "hf", "precision": "bf16"}):
        with pytest.raises(ConfigError, match="training.old_log_probs"):
            _check_training("training", {**base, **bad})
