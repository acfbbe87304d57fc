"""The paper path on a GPU: training and sampling in CUDA, where there is one.

CI and this project's development machines have no GPU, so these tests skip there and run on a
GPU node (README "Checking a GPU node": ``make test-cuda``). They train every method of the paper
configs on the rehearsal's tiny Qwen2 checkpoint (the real architecture, bf16 on disk) with the
paper configs' recipe — bf16 autocast over fp32 master weights, gradient checkpointing, chunked
entropies, micro-batches — and check what a first GPU run would get wrong: a tensor left on the
CPU, a dtype that leaks into the master weights, a non-finite loss, a resume that differs from the
uninterrupted run, a sampler that is not reproducible on the device.

One GPU runs one trainer process; FSDP over several GPUs is not covered here (on the CPU it is,
over gloo: ``tests/test_distributed.py`` and the rehearsal).
"""

import json
import math
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from pipeline.cli import main
from pipeline.config import method_specs

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device: run `make test-cuda` on a GPU node"),
]

PAPER = Path(__file__).resolve().parents[1] / "configs" / "paper"

# The paper configs' recipe at the rehearsal's sizes (rehearsal/overlay.yaml).
TRAINING = {
    "rollouts": 2, "prompts_per_rollout": 4, "group_size": 8, "minibatch_prompts": 2, "epochs": 1,
    "lr": 1e-6, "weight_decay": 0.0, "grad_clip": 1.0, "temperature": 1.0, "top_p": 1.0,
    "max_new_tokens": 32, "entropy_chunk_size": 16, "micro_batch_size": 4,
    "precision": "bf16", "gradient_checkpointing": True,
}


def paper_methods() -> dict[str, dict]:
    """Every method entry of configs/paper/*.yaml (the first config's entry per name)."""
    methods: dict[str, dict] = {}
    for path in sorted(PAPER.glob("*.yaml")):
        for name, entry in (yaml.safe_load(path.read_text())["methods"] or {}).items():
            methods.setdefault(name, entry or {})
    return methods


def train(out: Path, model_dir, train_file, method: str, rollouts: int = 2) -> list[dict]:
    entry = json.loads(json.dumps(paper_methods()[method]))
    if "critic_warmup_rollouts" in entry.get("estimator", {}):
        entry["estimator"]["critic_warmup_rollouts"] = 1  # as the rehearsal does: the policy trains too
    spec = method_specs({"methods": {method: entry}, "training": {**TRAINING, "rollouts": rollouts}})[method]
    assert main([
        "train", "--base-model", str(model_dir), "--train-problems", str(train_file),
        "--method-json", json.dumps(spec), "--seed", "3", "--template", "{problem}\n",
        "--out-model", str(out / "model"), "--metrics", str(out / "metrics.jsonl"),
        "--checkpoint-dir", str(out / "ckpt"), "--checkpoint-every", "1",
    ]) == 0
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("method", sorted(paper_methods()))
def test_every_paper_method_trains_on_cuda_with_the_papers_recipe(tmp_path, tiny_model, train_file, method):
    records = train(tmp_path, tiny_model, train_file, method)
    assert [r["update"] for r in records] == list(range(4))  # 2 rollouts x 2 mini-batches
    for record in records:
        for key, value in record.items():
            # explained variance is nan by definition when every return is the same
            if isinstance(value, float) and not (key == "explained_variance" and math.isnan(value)):
                assert math.isfinite(value), (key, value)
    timings = [json.loads(x) for x in (tmp_path / "ckpt" / "timings.jsonl").read_text().splitlines()]
    assert {(t["device"].split(":")[0], t["param_dtype"], t["compute_dtype"]) for t in timings} == {
        ("cuda", "float32", "bfloat16")}
    state = torch.load(sorted((tmp_path / "ckpt").glob("step-*"))[-1] / "state.pt", weights_only=False)
    assert state["rollout"] == 2
    moments = [s["exp_avg"] for s in state["optimizer"]["state"].values()]
    assert moments and {m.dtype for m in moments} == {torch.float32}


def test_resume_on_cuda_gives_the_uninterrupted_run(tmp_path, tiny_model, train_file):
    full = train(tmp_path / "full", tiny_model, train_file, "grpo_aer", rollouts=3)
    train(tmp_path / "resumed", tiny_model, train_file, "grpo_aer", rollouts=2)
    resumed = train(tmp_path / "resumed", tiny_model, train_file, "grpo_aer", rollouts=3)
    assert [r["update"] for r in resumed] == [r["update"] for r in full]
    # the rollouts are the same token for token (the sampler's generator state was restored) ...
    assert [r["response_length"] for r in resumed] == [r["response_length"] for r in full]
    assert [r["reward"] for r in resumed] == [r["reward"] for r in full]
    # ... and the losses equal up to CUDA's non-deterministic reductions
    diffs = [abs(a["loss"] - b["loss"]) for a, b in zip(resumed, full)]
    print("resume vs uninterrupted, |loss difference| per update:", diffs)
    assert max(diffs) <= 1e-4 * max(1.0, max(abs(r["loss"]) for r in full))


def test_hf_sampling_on_cuda_in_bf16_is_reproducible(tmp_path, tiny_model, train_file):
    cfg = {"temperature": 0.6, "top_p": 0.95, "top_k": 0, "max_new_tokens": 32, "batch_size": 16,
           "backend": "hf", "dtype": "bfloat16"}

    def sample(tag: str) -> pd.DataFrame:
        out = tmp_path / tag / "samples.parquet"
        assert main(["sample", "--model", str(tiny_model), "--problems", str(train_file), "--n", "4",
                     "--seed", "1", "--out", str(out), "--sampling-json", json.dumps(cfg),
                     "--template", "{problem}\n"]) == 0
        return pd.read_parquet(out)

    first, second = sample("a"), sample("b")
    assert len(first) == 4 * len(pd.read_parquet(train_file))
    assert first["text"].tolist() == second["text"].tolist()
    assert first["num_tokens"].gt(0).mean() > 0.5


def test_bf16_entropies_on_cuda_match_fp32_on_the_cpu(tiny_model):
    """The chunked log-prob/entropy pass under the trainer's bf16 autocast on CUDA, against fp32
    on the CPU: the entropy the entropy advantage and AER read is the same quantity."""
    from pipeline.models import load_model_and_tokenizer
    from pipeline.rl.distributed import Processes
    from pipeline.rl.trainer import policy_logp_entropy

    model, tokenizer = load_model_and_tokenizer(tiny_model)
    ids = torch.tensor([tokenizer("What is 12 + 7 * 3? First, $7\\cdot 3=21$. Then")["input_ids"]])
    with torch.no_grad():
        logp_cpu, h_cpu = policy_logp_entropy(model, ids, torch.ones_like(ids), 4, temperature=1.0)
        model.to("cuda")
        with Processes(precision="bf16").autocast():
            logp_gpu, h_gpu = policy_logp_entropy(model, ids.cuda(), torch.ones_like(ids).cuda(), 4, temperature=1.0)
    print("max |entropy difference| bf16 CUDA vs fp32 CPU:", (h_gpu.float().cpu() - h_cpu).abs().max().item())
    assert torch.allclose(h_gpu.float().cpu(), h_cpu, atol=0.05, rtol=0.05)
    assert torch.allclose(logp_gpu.float().cpu(), logp_cpu, atol=0.1, rtol=0.05)
