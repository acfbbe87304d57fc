"""A TEST DOUBLE of the ``vllm`` module that RECORDS CALLS. It is NOT an imitation of vLLM.

vLLM cannot be installed on the CPU test machines, so ``tests/test_vllm_sampler.py``
puts a module made by ``make_module()`` into ``sys.modules["vllm"]`` to check the
protocol that ``pipeline.sampling.vllm_backend`` SENDS: which ``LLM(...)`` engines it
builds, with which arguments, and which ``generate(prompts, sampling_params)`` calls it
makes with which ``SamplingParams``. Nothing here samples, tokenizes or models vLLM's
behaviour; it only has the shapes the backend reads:

* ``SamplingParams(**kwargs)`` stores its keyword arguments (positional ones are refused,
  so every field must be named);
* ``LLM(**kwargs)`` records its keyword arguments in ``module.constructions`` (and, in
  ``module.live_engines_at_construction``, how many earlier engines were still alive);
* ``LLM.generate`` records ``(engine index, prompts, sampling params kwargs)`` in
  ``module.generate_calls`` and returns, per prompt, a ``RequestOutput`` with ``n``
  ``CompletionOutput(index, text, token_ids, finish_reason)``. The outputs are a label
  of WHAT WAS ASKED, so a test can see where each one ended up: completion ``i`` of
  prompt ``p`` under request seed ``s`` has text ``"p{p}|seed{s + i}"`` (the per-sample
  seed vLLM documents for a seeded request with ``n`` samples), token ids
  ``[p, s + i]``, and finish reason ``"length"`` when ``(s + i) % 5 == 0`` else
  ``"stop"``.

Knobs, to exercise the backend's checks on malformed results: ``reverse_outputs``
(completions listed in reverse ``index`` order), ``drop_one`` (one completion too few),
``finish_reason_override`` (e.g. ``"abort"``), ``prompt_override`` (a wrong ``prompt``
on every output), ``token_id_mod`` (token ids reduced modulo a vocabulary size, so that
a trainer can feed them to a real model). ``LLM`` also exposes the in-process engine
layout the trainer's weight sync reaches into, recording each ``load_weights`` call in
``module.weight_loads`` and each ``reset_prefix_cache`` in ``module.prefix_cache_resets``.
"""

from __future__ import annotations

import dataclasses
import types


@dataclasses.dataclass
class CompletionOutput:
    index: int
    text: str
    token_ids: list[int]
    finish_reason: str | None


@dataclasses.dataclass
class RequestOutput:
    request_id: str
    prompt: str
    prompt_token_ids: list[int]
    outputs: list[CompletionOutput]
    finished: bool = True


def make_module(
    *,
    reverse_outputs: bool = False,
    drop_one: bool = False,
    finish_reason_override: str | None = None,
    prompt_override: str | None = None,
    token_id_mod: int | None = None,
) -> types.ModuleType:
    """A fresh recording double, to be placed in ``sys.modules["vllm"]``."""
    module = types.ModuleType("vllm")
    module.__doc__ = "test double of vllm (tests/fake_vllm.py): records calls only"
    module.constructions = []  # kwargs of every LLM(...)
    module.generate_calls = []  # (engine index, prompts, SamplingParams kwargs, generate kwargs)
    module.released = []  # engine indices whose objects were garbage collected
    module.live_engines_at_construction = []  # engines not yet released when each LLM(...) was built
    module.weight_loads = []  # (engine index, {name: tensor copy}) of every load_weights call
    module.prefix_cache_resets = []  # engine index of every reset_prefix_cache call

    class _Model:
        """Where the trainer's weight sync lands: ``load_weights(weights=[(name, tensor)])`` is recorded."""

        def __init__(self, engine_index):
            self.engine_index = engine_index

        def load_weights(self, weights):
            module.weight_loads.append((self.engine_index, {name: t.detach().clone() for name, t in weights}))

    class SamplingParams:
        def __init__(self, *args, **kwargs):
            if args:
                raise TypeError("test double: SamplingParams fields must be passed by keyword")
            self.kwargs = dict(kwargs)

    class LLM:
        def __init__(self, *args, **kwargs):
            if args:
                raise TypeError("test double: LLM arguments must be passed by keyword")
            self.engine_index = len(module.constructions)
            module.live_engines_at_construction.append(len(module.constructions) - len(module.released))
            module.constructions.append(dict(kwargs))
            # the in-process V1 layout: llm_engine.model_executor.driver_worker.worker.model_runner.model
            runner = types.SimpleNamespace(model=_Model(self.engine_index))
            worker = types.SimpleNamespace(worker=types.SimpleNamespace(model_runner=runner))
            self.llm_engine = types.SimpleNamespace(model_executor=types.SimpleNamespace(driver_worker=worker))

        def reset_prefix_cache(self):
            module.prefix_cache_resets.append(self.engine_index)

        def __del__(self):
            module.released.append(self.engine_index)

        def generate(self, prompts, sampling_params=None, **kwargs):
            prompts = list(prompts)
            sp = dict(sampling_params.kwargs)
            module.generate_calls.append((self.engine_index, prompts, sp, dict(kwargs)))
            n, seed = sp["n"], sp["seed"]
            count = n - 1 if drop_one else n
            results = []
            for p, prompt in enumerate(prompts):
                outs = [
                    CompletionOutput(
                        index=i,
                        text=f"p{p}|seed{seed + i}",
                        token_ids=[p, seed + i] if token_id_mod is None else [(p + 3) % token_id_mod, (seed + i) % token_id_mod],
                        finish_reason=finish_reason_override or ("length" if (seed + i) % 5 == 0 else "stop"),
                    )
                    for i in range(count)
                ]
                if reverse_outputs:
                    outs.reverse()
                results.append(
                    RequestOutput(
                        request_id=str(p),
                        prompt=prompt if prompt_override is None else prompt_override,
                        prompt_token_ids=prompt["prompt_token_ids"] if isinstance(prompt, dict) else [ord(ch) for ch in prompt],
                        outputs=outs,
                    )
                )
            return results

    module.SamplingParams = SamplingParams
    module.LLM = LLM
    module.CompletionOutput = CompletionOutput
    module.RequestOutput = RequestOutput
    return module
