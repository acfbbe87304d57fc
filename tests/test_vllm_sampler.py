"""The protocol ``VLLMSampler`` sends to vLLM, checked against a recording test double.

vLLM needs CUDA and is not installed here: ``tests/fake_vllm.py`` is placed in
``sys.modules["vllm"]``; it records every ``LLM(...)`` and ``generate(...)`` call and
labels each returned completion with the prompt index and the per-sample seed that was
asked for. These tests check what WE send and how we stitch results, not vLLM.
"""

from __future__ import annotations

import math
import sys

import pytest

from tests import fake_vllm
from pipeline.errors import PipelineError
from pipeline.sampling.base import SamplingParams
from pipeline.sampling.vllm_backend import (
    Shard,
    VLLMSampler,
    plan_shards,
    vllm_sampling_kwargs,
)

PROMPTS = ["What is 1+1?", "Find x.", "Compute 7*6."]


@pytest.fixture
def fake(monkeypatch):
    module = fake_vllm.make_module()
    monkeypatch.setitem(sys.modules, "vllm", module)
    return module


def install(monkeypatch, **knobs):
    module = fake_vllm.make_module(**knobs)
    monkeypatch.setitem(sys.modules, "vllm", module)
    return module


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


# --------------------------------------------------------------------------- protocol sent to vLLM


@pytest.mark.parametrize("max_n", [256, 100, 1000, 1024])
def test_n1024_protocol_and_stitching(fake, max_n):
    sampler = VLLMSampler("/models/qwen2.5-math-7b", eos_token_ids=[-1], max_n_per_request=max_n, max_model_len=9216, dtype="bfloat16")
    params = paper_params(1024, seed=1234)
    results = sampler.generate(PROMPTS, params)
    shards = plan_shards(1024, max_n, 1234)

    # One engine per shard, each with every argument explicit and its own seed.
    assert len(fake.constructions) == len(shards)
    engine_seeds = [c["seed"] for c in fake.constructions]
    assert len(set(engine_seeds)) == len(shards)
    assert engine_seeds == [1234 + j for j in range(len(shards))]
    for c in fake.constructions:
        assert c == {
            "model": "/models/qwen2.5-math-7b", "seed": c["seed"], "tensor_parallel_size": 1, "dtype": "bfloat16",
            "trust_remote_code": False, "max_model_len": 9216,
        }
    assert fake.live_engines_at_construction == [0] * len(shards)  # the previous engine was released first

    # One generate call per shard, on its own engine, all prompts in order, SamplingParams exact.
    assert [call[0] for call in fake.generate_calls] == list(range(len(shards)))
    for (engine, prompts, sp, gen_kwargs), shard in zip(fake.generate_calls, shards):
        assert prompts == PROMPTS
        assert gen_kwargs == {"use_tqdm": False}
        assert sp == {
            "n": shard.n, "temperature": 0.6, "top_p": 0.95, "top_k": -1, "min_p": 0.0,
            "presence_penalty": 0.0, "frequency_penalty": 0.0, "repetition_penalty": 1.0,
            "max_tokens": 8192, "min_tokens": 0, "stop": [], "stop_token_ids": [], "ignore_eos": False,
            "seed": shard.seed, "logprobs": None, "prompt_logprobs": None, "skip_special_tokens": True,
        }
    requested = [seed for _, _, sp, _ in fake.generate_calls for seed in range(sp["seed"], sp["seed"] + sp["n"])]
    assert len(requested) == len(set(requested)) == 1024

    # Stitched back: prompt order, 1024 completions each, sample k <- seed 1234 + k, finish reasons kept.
    assert len(results) == len(PROMPTS)
    for p, (prompt, res) in enumerate(zip(PROMPTS, results)):
        assert res.prompt_ids == [ord(ch) for ch in prompt]
        assert len(res.completions) == 1024
        assert [c.text for c in res.completions] == [f"p{p}|seed{1234 + k}" for k in range(1024)]
        assert [c.token_ids for c in res.completions] == [[p, 1234 + k] for k in range(1024)]
        assert [c.finish_reason for c in res.completions] == [
            "length" if (1234 + k) % 5 == 0 else "stop" for k in range(1024)
        ]
        assert {c.num_tokens for c in res.completions} == {2}


def test_samples_do_not_depend_on_shard_size(monkeypatch):
    texts = []
    for max_n in (1024, 256, 100):
        install(monkeypatch)
        out = VLLMSampler("m", eos_token_ids=[-1], max_n_per_request=max_n).generate(PROMPTS, paper_params(1024, seed=99))
        texts.append([[c.text for c in r.completions] for r in out])
    assert texts[0] == texts[1] == texts[2]


def test_fields_reach_sampling_params_exactly(fake):
    sampler = VLLMSampler(
        "org/model", tensor_parallel_size=4, dtype="float16", max_model_len=4096, trust_remote_code=True,
        engine_seed=777, stop=["</answer>"], stop_token_ids=[151643, 151645],
        engine_kwargs={"gpu_memory_utilization": 0.85}, show_progress=True, eos_token_ids=[-1],
    )
    params = SamplingParams(n=3, temperature=1.0, top_p=0.7, max_new_tokens=321, seed=5, top_k=20)
    results = sampler.generate(["a", "b"], params)
    assert fake.constructions == [{
        "model": "org/model", "seed": 777, "tensor_parallel_size": 4, "dtype": "float16", "trust_remote_code": True,
        "max_model_len": 4096, "gpu_memory_utilization": 0.85,
    }]
    (_, prompts, sp, gen_kwargs), = fake.generate_calls
    assert prompts == ["a", "b"] and gen_kwargs == {"use_tqdm": True}
    assert (sp["n"], sp["temperature"], sp["top_p"], sp["top_k"], sp["max_tokens"], sp["seed"]) == (3, 1.0, 0.7, 20, 321, 5)
    assert sp["stop"] == ["</answer>"] and sp["stop_token_ids"] == [151643, 151645] and sp["logprobs"] is None
    assert [len(r.completions) for r in results] == [3, 3]


def test_engine_seed_varies_per_shard_from_a_configured_base(fake):
    VLLMSampler("m", eos_token_ids=[-1], max_n_per_request=2, engine_seed=2**32 - 2).generate(["a"], paper_params(6, seed=0))
    assert [c["seed"] for c in fake.constructions] == [2**32 - 2, 2**32 - 1, 0]  # distinct, 32-bit
    assert [sp["seed"] for _, _, sp, _ in fake.generate_calls] == [0, 2, 4]


def test_vllm_sampling_kwargs_is_complete_and_max_tokens_always_set():
    kwargs = vllm_sampling_kwargs(paper_params(4), Shard(4, 10))
    assert kwargs["max_tokens"] == 8192 and kwargs["top_k"] == -1 and kwargs["seed"] == 10 and kwargs["n"] == 4
    with pytest.raises(ValueError, match="top_k must be >= 0"):
        vllm_sampling_kwargs(paper_params(4, top_k=-1), Shard(4, 10))


def test_completion_order_is_restored_from_index(monkeypatch):
    install(monkeypatch, reverse_outputs=True)
    (res,) = VLLMSampler("m", eos_token_ids=[-1], max_n_per_request=4).generate(["q"], paper_params(8, seed=0))
    assert [c.text for c in res.completions] == [f"p0|seed{k}" for k in range(8)]


def test_empty_prompt_list_builds_no_engine(fake):
    assert VLLMSampler("m", eos_token_ids=[-1]).generate([], paper_params(4)) == []
    assert fake.constructions == []


# --------------------------------------------------------------------------- malformed results


@pytest.mark.parametrize(
    ("knobs", "message"),
    [
        ({"drop_one": True}, r"returned 3 completions for prompt 0 in shard 0, expected 4"),
        ({"finish_reason_override": "abort"}, r"finished with 'abort'"),
        ({"finish_reason_override": None, "prompt_override": "other"}, r"belongs to another prompt"),
    ],
)
def test_malformed_vllm_results_are_errors(monkeypatch, knobs, message):
    install(monkeypatch, **knobs)
    with pytest.raises(PipelineError, match=message):
        VLLMSampler("m", eos_token_ids=[-1]).generate(["q", "r"], paper_params(4))


def test_missing_vllm_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # makes `import vllm` raise ImportError
    with pytest.raises(PipelineError, match="needs the vllm package"):
        VLLMSampler("m", eos_token_ids=[-1])


def test_constructor_validation(fake):
    with pytest.raises(ValueError, match="engine_kwargs may not set seed"):
        VLLMSampler("m", eos_token_ids=[-1], engine_kwargs={"seed": 1})
    with pytest.raises(ValueError, match="max_n_per_request must be >= 1"):
        VLLMSampler("m", eos_token_ids=[-1], max_n_per_request=0)
