"""The HF sampler: protocol fields honoured, seeded, finish reasons, and KV-cache correctness."""

import torch

from pipeline.models import load_model_and_tokenizer
from pipeline.sampling.base import SamplingParams
from pipeline.sampling.hf import HFSampler, sample_next_token

PROMPTS = ["12+7\n", "((3*4)-5)+9\n", "7\n"]


def params(**kw):
    base = dict(n=3, temperature=1.0, top_p=1.0, max_new_tokens=12, seed=5)
    base.update(kw)
    return SamplingParams(**base)


def test_same_seed_same_samples_other_seed_differs(tiny_model_dir):
    model, tok = load_model_and_tokenizer(tiny_model_dir)
    sampler = HFSampler(model, tok, batch_size=4)
    a = sampler.generate(PROMPTS, params())
    b = sampler.generate(PROMPTS, params())
    c = sampler.generate(PROMPTS, params(seed=6))
    ids = lambda out: [c.token_ids for o in out for c in o.completions]
    assert ids(a) == ids(b)
    assert ids(a) != ids(c)
    assert all(len(o.completions) == 3 for o in a)


def test_max_new_tokens_and_finish_reasons(tiny_model_dir):
    model, tok = load_model_and_tokenizer(tiny_model_dir)
    out = HFSampler(model, tok).generate(PROMPTS, params(max_new_tokens=5))
    for o in out:
        for c in o.completions:
            assert c.num_tokens <= 5
            assert c.finish_reason in ("stop", "length")
            assert (c.finish_reason == "length") == (c.num_tokens == 5 and tok.eos_token_id not in c.token_ids)


def test_greedy_matches_full_recompute(tiny_model_dir):
    """The preallocated KV cache with left padding and compaction gives the same tokens as
    recomputing the whole sequence at every step (no cache, no padding)."""
    model, tok = load_model_and_tokenizer(tiny_model_dir)
    out = HFSampler(model, tok, batch_size=16).generate(PROMPTS, params(n=1, temperature=0.0, max_new_tokens=10))
    for prompt, o in zip(PROMPTS, out):
        ids = tok(prompt).input_ids
        expected = []
        with torch.no_grad():
            for _ in range(10):
                nxt = int(model(torch.tensor([ids])).logits[0, -1].argmax())
                if nxt == tok.eos_token_id:
                    break
                expected.append(nxt)
                ids.append(nxt)
        assert o.completions[0].token_ids == expected


def test_top_p_and_top_k_filtering():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    gen = torch.Generator().manual_seed(0)
    drawn = {int(sample_next_token(logits, 1.0, 0.7, 0, gen)) for _ in range(300)}
    assert drawn == {0, 1}  # 0.5 < 0.7, 0.5 + 0.3 >= 0.7: the nucleus is the first two
    drawn = {int(sample_next_token(logits, 1.0, 1.0, 1, gen)) for _ in range(50)}
    assert drawn == {0}
    assert int(sample_next_token(logits, 0.0, 1.0, 0, gen)) == 0


def test_sampling_params_reject_bad_values():
    import pytest

    for bad in (dict(n=0), dict(top_p=0.0), dict(top_p=1.2), dict(max_new_tokens=0), dict(temperature=-1)):
        with pytest.raises(ValueError):
            params(**bad)


def test_sampled_logprobs_equal_the_trainers_recomputed_ones(tiny_model_dir):
    """SamplingParams.logprobs: each sampled token's log-prob and entropy, as the trainer's own
    forward pass over the finished sequence computes them (softmax(logits / T), before top-p),
    the EOS included and the same tokens sampled as without it; rows of different lengths
    and a compacted batch included (n = 6, batch 4: several chunks)."""
    from pipeline.rl.rollout import build_rollout, sampled_logprobs
    from pipeline.rl.trainer import policy_logp_entropy

    model, tok = load_model_and_tokenizer(tiny_model_dir)
    sampler = HFSampler(model, tok, batch_size=12)
    prompt_ids = sampler.encode(PROMPTS)
    p = params(n=6, temperature=0.7, top_p=0.9, max_new_tokens=12)
    plain = sampler.generate_ids(prompt_ids, p)
    out = sampler.generate_ids(prompt_ids, SamplingParams(**{**p.__dict__, "logprobs": True}))
    assert [c.sampled_ids for o in out for c in o.completions] == [c.sampled_ids for o in plain for c in o.completions]
    assert {c.finish_reason for o in out for c in o.completions} == {"stop", "length"}  # both kinds of row
    rollout = build_rollout(out, [True] * 18, 6, pad_id=tok.pad_token_id)
    logp, entropy = sampled_logprobs(out, rollout)
    with torch.no_grad():
        ref_logp, ref_entropy = policy_logp_entropy(model, rollout.input_ids, rollout.attention, None, 0.7)
    mask = rollout.mask.bool()
    assert int(mask.sum()) == sum(len(c.sampled_ids) for o in out for c in o.completions)
    assert torch.allclose(logp[mask], ref_logp[mask], atol=1e-4)
    assert torch.allclose(entropy[mask], ref_entropy[mask], atol=1e-4)
    assert not logp[~mask].any() and not entropy[~mask].any()
    assert all(c.logprobs is None for o in plain for c in o.completions)


def test_logprobs_need_a_sampling_distribution():
    import pytest

    with pytest.raises(ValueError, match="temperature > 0"):
        params(temperature=0.0, logprobs=True)


def test_sampled_logprobs_refuse_a_completion_without_them(tiny_model_dir):
    """A sampler that ignored SamplingParams.logprobs (or returned too few) is named, rather
    than its rows silently training against zero old log-probs."""
    import pytest

    from pipeline.rl.rollout import build_rollout, sampled_logprobs

    model, tok = load_model_and_tokenizer(tiny_model_dir)
    sampler = HFSampler(model, tok, batch_size=12)
    out = sampler.generate_ids(sampler.encode(PROMPTS), params(n=2, logprobs=True))
    rollout = build_rollout(out, [True] * 6, 2, pad_id=tok.pad_token_id)
    sampled_logprobs(out, rollout)  # complete: fine
    out[1].completions[0].logprobs = None
    with pytest.raises(ValueError, match="no log-prob per sampled token"):
        sampled_logprobs(out, rollout)
    out[1].completions[0].logprobs = [0.0] * (len(out[1].completions[0].sampled_ids) + 1)
    with pytest.raises(ValueError, match="no log-prob per sampled token"):
        sampled_logprobs(out, rollout)


def test_kv_cache_passed_under_the_installed_transformers_name(tiny_model_dir):
    """transformers 5.25 renamed forward's ``past_key_values`` to ``cache`` (the old name warns,
    5.40 removes it); older 5.x releases (the vLLM environment's) only know the old name."""
    import inspect
    import warnings

    import pytest

    from pipeline.sampling.hf import cache_argument

    model, tok = load_model_and_tokenizer(tiny_model_dir)
    expected = "cache" if "cache" in inspect.signature(type(model).forward).parameters else "past_key_values"
    assert cache_argument(model) == expected
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)  # the deprecation warning fails the test
        out = HFSampler(model, tok, batch_size=4).generate(PROMPTS, params(n=2))
    assert all(len(o.completions) == 2 for o in out)

    class Old(torch.nn.Module):
        def forward(self, input_ids, past_key_values=None):
            return input_ids

    class Neither(torch.nn.Module):
        def forward(self, input_ids):
            return input_ids

    assert cache_argument(Old()) == "past_key_values"
    with pytest.raises(TypeError, match="Neither.forward takes neither"):
        cache_argument(Neither())
