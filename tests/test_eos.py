"""One end-of-sequence convention for both samplers (``sampling.base.Completion``).

vLLM keeps the sampled EOS in ``CompletionOutput.token_ids`` and reports ``"length"`` when
the EOS was the last allowed token; the HF sampler drops the EOS and reports ``"stop"``.
Both now return the response without its EOS, ``stop_token_id`` = the EOS sampled and
``"stop"`` whenever an EOS was sampled, so the trainer trains on each sampled token once.
The vLLM outputs here are plain records with the fields vLLM's ``CompletionOutput`` has
(the conversion is a pure function); the real engine's own outputs are checked in
tests/test_vllm_engine.py.
"""

from __future__ import annotations

from types import SimpleNamespace

import torch

from pipeline.models import load_model_and_tokenizer
from pipeline.eval.grading import GraderPool
from pipeline.rl.rollout import build_rollout, grade_rollout
from pipeline.sampling.base import Completion, PromptCompletions, SamplingParams
from pipeline.sampling.hf import HFSampler
from pipeline.sampling.vllm_backend import completion_from_vllm

EOS = 7


def vllm_output(token_ids, finish_reason, text="x"):
    return SimpleNamespace(index=0, token_ids=token_ids, text=text, finish_reason=finish_reason)


def test_vllm_completions_lose_their_eos_and_an_eos_at_the_cap_is_a_stop():
    stopped = completion_from_vllm(vllm_output([3, 4, EOS], "stop"), {EOS})
    assert (stopped.token_ids, stopped.finish_reason, stopped.stop_token_id) == ([3, 4], "stop", EOS)
    at_cap = completion_from_vllm(vllm_output([3, 4, EOS], "length"), {EOS})  # EOS was the last allowed token
    assert (at_cap.token_ids, at_cap.finish_reason, at_cap.stop_token_id) == ([3, 4], "stop", EOS)
    truncated = completion_from_vllm(vllm_output([3, 4, 5], "length"), {EOS})
    assert (truncated.token_ids, truncated.finish_reason, truncated.stop_token_id) == ([3, 4, 5], "length", None)
    stop_string = completion_from_vllm(vllm_output([3, 4], "stop"), {EOS})  # a configured stop string
    assert (stop_string.token_ids, stop_string.finish_reason, stop_string.stop_token_id) == ([3, 4], "stop", None)
    other_eos = completion_from_vllm(vllm_output([3, 9], "stop"), {EOS, 9})  # e.g. <|im_end|> beside <|endoftext|>
    assert (other_eos.token_ids, other_eos.stop_token_id) == ([3], 9)


def test_a_rollout_from_vllm_trains_on_each_sampled_token_once():
    prompt = [1, 2]
    outs = [PromptCompletions(prompt_ids=prompt, completions=[
        completion_from_vllm(vllm_output([3, 4, EOS], "stop", "Answer: 1"), {EOS}),
        completion_from_vllm(vllm_output([5, EOS], "length", "Answer: 2"), {EOS}),
    ])]
    correct, failures = grade_rollout(outs, ["1"], GraderPool("answer_line"))
    rollout = build_rollout(outs, correct, 2, pad_id=0)
    sequences = [ids[: int(n)].tolist() for ids, n in zip(rollout.input_ids, rollout.attention.sum(1))]
    assert sequences == [[1, 2, 3, 4, EOS], [1, 2, 5, EOS]]  # one EOS each, never two
    assert rollout.mask.sum(1).tolist() == [3.0, 2.0]  # the response tokens and their EOS are the actions
    assert rollout.response_lengths.tolist() == [3.0, 2.0]
    assert rollout.scores.tolist() == [1.0, -1.0]  # the EOS-at-the-cap response is graded, not truncated


def test_hf_sampler_reports_an_eos_sampled_as_the_last_allowed_token_as_a_stop(tiny_model_dir):
    model, tok = load_model_and_tokenizer(tiny_model_dir)
    # A model that always samples EOS: the output layer's bias decides alone.
    head = torch.nn.Linear(model.config.hidden_size, model.config.vocab_size, bias=True)
    with torch.no_grad():
        head.weight.zero_()
        head.bias.fill_(-30.0)
        head.bias[tok.eos_token_id] = 30.0
    model.lm_head = head
    sampler = HFSampler(model, tok)
    for cap in (1, 3):
        (pc,) = sampler.generate(["1+1\n"], SamplingParams(n=2, temperature=1.0, top_p=1.0, max_new_tokens=cap, seed=0))
        for c in pc.completions:
            assert c == Completion(token_ids=[], text="", finish_reason="stop", stop_token_id=tok.eos_token_id)
            assert c.sampled_ids == [tok.eos_token_id]
