"""The vLLM backend's pure pieces, without an engine: shard plans, per-prompt seeds, the
sampling arguments, stitching and malformed outputs. The real engine (vLLM's CPU build)
runs in tests/test_vllm_engine.py."""

from __future__ import annotations

import math
import sys

import pytest

from types import SimpleNamespace

from pipeline.errors import PipelineError
from pipeline.sampling.base import PromptCompletions, SamplingParams
from pipeline.sampling.vllm_backend import (
    Shard,
    VLLMSampler,
    collect_outputs,
    plan_shards,
    vllm_sampling_kwargs,
)

PROMPTS = ["What is 1+1?", "Find x.", "Compute 7*6."]


def paper_params(n: int, seed: int = 1234, top_k: int = 0) -> SamplingParams:
    return SamplingParams(n=n, temperature=0.6, top_p=0.95, max_new_tokens=8192, seed=seed, top_k=top_k)


# --------------------------------------------------------------------------- plan_shards


@pytest.mark.parametrize("max_per_request", [1, 7, 100, 255, 256, 300, 1000, 1023, 1024, 4096])
@pytest.mark.parametrize("base_seed", [0, 12345])
def test_plan_shards_has_no_seed_overlap_for_1024(max_per_request, base_seed):
    shards = plan_shards(1024, max_per_request, base_seed)
    assert len(shards) == math.ceil(1024 / max_per_request)
    assert sum(s.n for s in shards) == 1024
    assert all(1 <= s.n <= max_per_request for s in shards)
    seeds = [seed for s in shards for seed in s.sample_seeds]
    assert len(seeds) == len(set(seeds)) == 1024  # no two samples share a seed
    assert seeds == list(range(base_seed, base_seed + 1024))  # sample k has seed base + k, whatever the shard size
    for j, (a, b) in enumerate(zip(shards, shards[1:])):
        assert b.seed - a.seed >= a.n  # spacing >= the shard's n
        assert b.seed == base_seed + (j + 1) * max_per_request
    assert [s.offset for s in shards] == [j * max_per_request for j in range(len(shards))]


def test_plan_shards_examples():
    assert plan_shards(1000, 256, 7) == [Shard(256, 7, 0), Shard(256, 263, 256), Shard(256, 519, 512), Shard(232, 775, 768)]
    assert plan_shards(16, 256, 0) == [Shard(16, 0, 0)]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((0, 256, 0), "n_total must be >= 1"),
        ((8, 0, 0), "max_per_request must be >= 1"),
        ((8, 4, -1), "base_seed must be >= 0"),
        ((8, 4, 2**63 - 4), "exceeds the largest seed"),
        ((8.0, 4, 0), "n_total must be an int"),
    ],
)
def test_plan_shards_rejects_bad_arguments(args, message):
    with pytest.raises(ValueError, match=message):
        plan_shards(*args)


# --------------------------------------------------------------------------- the protocol, engine-free
#
# The engine itself runs in tests/test_vllm_engine.py (vLLM's CPU build, .venv-vllm). Here:
# the pure pieces — arguments, seeds per prompt, and what we do with malformed outputs (plain
# records with the fields of vllm's RequestOutput / CompletionOutput, which a healthy engine
# never returns).


def test_vllm_sampling_kwargs_is_complete_and_max_tokens_always_set():
    kwargs = vllm_sampling_kwargs(paper_params(4), Shard(4, 10))
    assert kwargs == {
        "n": 4, "temperature": 0.6, "top_p": 0.95, "top_k": -1, "min_p": 0.0,
        "presence_penalty": 0.0, "frequency_penalty": 0.0, "repetition_penalty": 1.0,
        "max_tokens": 8192, "min_tokens": 0, "stop": [], "stop_token_ids": [], "ignore_eos": False,
        "seed": 10, "logprobs": None, "prompt_logprobs": None, "skip_special_tokens": True,
    }
    with pytest.raises(ValueError, match="top_k must be >= 0"):
        vllm_sampling_kwargs(paper_params(4, top_k=-1), Shard(4, 10))


def test_every_prompt_has_its_own_seeds():
    """Sample k of prompt p has seed base + p * n + k: no two samples of a call share a stream."""
    n = 1024
    seeds = set()
    for shard in plan_shards(n, 256, 1234):
        for p in range(len(PROMPTS)):
            s = vllm_sampling_kwargs(paper_params(n, seed=1234), shard, prompt_index=p)["seed"]
            assert s == 1234 + p * n + shard.offset
            seeds.update(range(s, s + shard.n))
    assert seeds == set(range(1234, 1234 + len(PROMPTS) * n))


def _output(prompt, n, finish="stop", reverse=False, drop=0):
    completions = [SimpleNamespace(index=i, token_ids=[i, 2], text=f"c{i}", finish_reason=finish) for i in range(n - drop)]
    return SimpleNamespace(prompt=prompt, prompt_token_ids=[1], outputs=completions[::-1] if reverse else completions)


def test_outputs_are_stitched_in_sample_order():
    results = [PromptCompletions(prompt_ids=[]) for _ in PROMPTS]
    for j, shard in enumerate(plan_shards(8, 4, 0)):
        collect_outputs([_output(p, 4, reverse=True) for p in PROMPTS], PROMPTS, shard, j, results, stop_ids={2})
    for res in results:
        assert [c.text for c in res.completions] == [f"c{i}" for i in range(4)] * 2
        assert all(c.token_ids == [int(c.text[1:])] and c.stop_token_id == 2 for c in res.completions)  # EOS removed
        assert res.prompt_ids == [1]


@pytest.mark.parametrize(
    ("outputs", "message"),
    [
        ([_output("q", 4, drop=1), _output("r", 4)], r"returned 3 completions for prompt 0 in shard 0, expected 4"),
        ([_output("q", 4, finish="abort"), _output("r", 4)], r"finished with 'abort'"),
        ([_output("other", 4), _output("r", 4)], r"belongs to another prompt"),
        ([_output("q", 4)], r"returned 1 outputs for 2 prompts"),
    ],
)
def test_malformed_vllm_results_are_errors(outputs, message):
    with pytest.raises(PipelineError, match=message):
        collect_outputs(outputs, ["q", "r"], Shard(4, 0), 0, [PromptCompletions([]), PromptCompletions([])], stop_ids=set())


def test_missing_vllm_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # makes `import vllm` raise ImportError
    with pytest.raises(PipelineError, match="needs the vllm package"):
        VLLMSampler("m", eos_token_ids=[-1])


def test_constructor_validation():
    with pytest.raises(ValueError, match="engine_kwargs may not set seed"):
        VLLMSampler("m", eos_token_ids=[-1], engine_kwargs={"seed": 1})
    with pytest.raises(ValueError, match="max_n_per_request must be >= 1"):
        VLLMSampler("m", eos_token_ids=[-1], max_n_per_request=0)
