"""The vLLM backend (paper scale, GPU): ``VLLMSampler.generate(prompts, params)``, same
``Sampler`` interface as ``pipeline.sampling.hf.HFSampler``.

``vllm`` is imported lazily (it needs CUDA; the rest of the pipeline does not). The
protocol we send to vLLM follows SPEC §8's pitfalls:

* ``vllm.SamplingParams`` is built with every field explicit — n, temperature, top_p,
  top_k (our ``0`` = disabled becomes vLLM's ``-1``), min_p, the three penalties (off),
  ``max_tokens`` ALWAYS from ``max_new_tokens`` (vLLM's default is 16), min_tokens,
  stop / stop_token_ids as configured, ignore_eos, seed, ``logprobs=None``,
  prompt_logprobs, skip_special_tokens — so a model's ``generation_config`` or a vLLM
  default cannot change the protocol.
* Large n is split into shards of at most ``max_n_per_request`` samples
  (``plan_shards``). With a request seed ``s`` and ``n`` samples, vLLM seeds sample ``i``
  with ``s + i``; shard ``j`` therefore gets the request seed ``base_seed + j * M``
  (``M = max_n_per_request`` >= the shard's n), so the shards' seed ranges never overlap.
  Because shards are filled in order, sample ``k`` of a prompt always has seed
  ``base_seed + k``: the samples do not depend on the shard size.
* Each shard runs on its own ``vllm.LLM`` engine whose seed differs per shard
  (``engine_seed + j`` modulo 2**32; ``engine_seed`` defaults to the sampling seed);
  the engine is released before the next one is built.
* Completions come back in prompt order, sample order within a prompt (shard by
  shard, by ``CompletionOutput.index`` within a shard), with token ids, text and the
  finish reason (``"stop"``: EOS or a stop string/token; ``"length"``: hit max_tokens).

All prompts of a shard go in one ``LLM.generate`` call with the same SamplingParams, so
every prompt's sample ``k`` uses the same seed ``base_seed + k``.
"""

from __future__ import annotations

import dataclasses
import gc
import importlib
import logging
import os
from typing import Any, Mapping, Sequence

from pipeline.errors import PipelineError
from pipeline.sampling.base import Completion, PromptCompletions, SamplingParams, end_of_sequence_ids

log = logging.getLogger(__name__)

DEFAULT_MAX_N_PER_REQUEST = 256
_MAX_REQUEST_SEED = 2**63 - 1  # vLLM seeds a torch.Generator per request
_ENGINE_SEED_MOD = 2**32  # the engine seeds numpy too, which takes 32-bit seeds
_FINISH_REASONS = ("stop", "length")


@dataclasses.dataclass(frozen=True)
class Shard:
    """One vLLM request per prompt: ``n`` samples, request seed ``seed``; ``offset`` is the
    index of the shard's first sample among the prompt's samples."""

    n: int
    seed: int
    offset: int = 0

    @property
    def sample_seeds(self) -> range:
        """The per-sample seeds vLLM derives from the request seed (``seed + i``)."""
        return range(self.seed, self.seed + self.n)


def plan_shards(n_total: int, max_per_request: int, base_seed: int) -> list[Shard]:
    """Split ``n_total`` samples into shards of at most ``max_per_request`` with disjoint seed ranges.

    Shard ``j`` has ``min(max_per_request, n_total - j * max_per_request)`` samples and
    request seed ``base_seed + j * max_per_request``; sample ``k`` overall has seed
    ``base_seed + k``.
    """
    for label, value in (("n_total", n_total), ("max_per_request", max_per_request), ("base_seed", base_seed)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{label} must be an int, got {value!r}")
    if n_total < 1:
        raise ValueError(f"n_total must be >= 1, got {n_total}")
    if max_per_request < 1:
        raise ValueError(f"max_per_request must be >= 1, got {max_per_request}")
    if base_seed < 0:
        raise ValueError(f"base_seed must be >= 0, got {base_seed}")
    if base_seed + n_total - 1 > _MAX_REQUEST_SEED:
        raise ValueError(f"base_seed {base_seed} + {n_total} samples exceeds the largest seed {_MAX_REQUEST_SEED}")
    shards = [
        Shard(n=min(max_per_request, n_total - offset), seed=base_seed + offset, offset=offset)
        for offset in range(0, n_total, max_per_request)
    ]
    # The guarantee, checked rather than trusted: consecutive seed ranges, no overlap, no gap.
    for prev, nxt in zip(shards, shards[1:]):
        if nxt.seed < prev.seed + prev.n:
            raise AssertionError(f"shards {prev} and {nxt} share seeds")  # pragma: no cover - by construction
    return shards


def vllm_sampling_kwargs(
    params: SamplingParams, shard: Shard, stop: Sequence[str] = (), stop_token_ids: Sequence[int] = ()
) -> dict[str, Any]:
    """Every ``vllm.SamplingParams`` field of our protocol for one shard, explicit."""
    if params.top_k < 0:
        raise ValueError(f"sampling.top_k must be >= 0 (0 = disabled), got {params.top_k}")
    return {
        "n": shard.n,
        "temperature": float(params.temperature),
        "top_p": float(params.top_p),
        "top_k": int(params.top_k) if params.top_k > 0 else -1,
        "min_p": 0.0,
        "presence_penalty": 0.0,
        "frequency_penalty": 0.0,
        "repetition_penalty": 1.0,
        "max_tokens": int(params.max_new_tokens),
        "min_tokens": 0,
        "stop": list(stop),
        "stop_token_ids": [int(t) for t in stop_token_ids],
        "ignore_eos": False,
        "seed": int(shard.seed),
        "logprobs": None,
        "prompt_logprobs": None,
        "skip_special_tokens": True,
    }


class VLLMSampler:
    """Sampler over a model directory or hub id, one ``vllm.LLM`` engine per shard."""

    def __init__(
        self,
        model: str,
        *,
        tensor_parallel_size: int = 1,
        dtype: str = "bfloat16",
        max_model_len: int | None = None,
        trust_remote_code: bool = False,
        max_n_per_request: int = DEFAULT_MAX_N_PER_REQUEST,
        engine_seed: int | None = None,
        stop: Sequence[str] | None = None,
        stop_token_ids: Sequence[int] | None = None,
        engine_kwargs: Mapping[str, Any] | None = None,
        show_progress: bool = False,
        eos_token_ids: Sequence[int] | None = None,
    ):
        if int(tensor_parallel_size) < 1:
            raise ValueError(f"tensor_parallel_size must be >= 1, got {tensor_parallel_size}")
        if int(max_n_per_request) < 1:
            raise ValueError(f"max_n_per_request must be >= 1, got {max_n_per_request}")
        reserved = {"model", "seed", "tensor_parallel_size", "dtype", "trust_remote_code", "max_model_len"}
        clash = sorted(reserved & set(engine_kwargs or {}))
        if clash:
            raise ValueError(f"engine_kwargs may not set {', '.join(clash)}: they are VLLMSampler arguments")
        self.model = str(model)
        self.tensor_parallel_size = int(tensor_parallel_size)
        self.dtype = dtype
        self.max_model_len = max_model_len
        self.trust_remote_code = bool(trust_remote_code)
        self.max_n_per_request = int(max_n_per_request)
        self.engine_seed = engine_seed
        self.stop = list(stop or [])
        self.stop_token_ids = [int(t) for t in (stop_token_ids or [])]
        self.engine_kwargs = dict(engine_kwargs or {})
        self.show_progress = show_progress
        # EOS ids of the model plus configured stop tokens: removed from token_ids (Completion)
        self.stop_ids = set(
            model_stop_ids(self.model, self.trust_remote_code, self.stop_token_ids) if eos_token_ids is None
            else [*map(int, eos_token_ids), *self.stop_token_ids]
        )
        self._vllm = _import_vllm()

    def engine_arguments(self, engine_seed: int) -> dict[str, Any]:
        """The keyword arguments of one shard's ``vllm.LLM``."""
        return {
            "model": self.model,
            "seed": int(engine_seed),
            "tensor_parallel_size": self.tensor_parallel_size,
            "dtype": self.dtype,
            "trust_remote_code": self.trust_remote_code,
            "max_model_len": self.max_model_len,
            **self.engine_kwargs,
        }

    def generate(self, prompts: Sequence[str], params: SamplingParams) -> list[PromptCompletions]:
        prompts = list(prompts)
        results = [PromptCompletions(prompt_ids=[]) for _ in prompts]
        if not prompts:
            return results
        shards = plan_shards(params.n, self.max_n_per_request, params.seed)
        engine_base = params.seed if self.engine_seed is None else int(self.engine_seed)
        log.info(
            "vLLM: %d prompts x %d samples in %d shard(s) of <= %d (request seeds %d..%d)",
            len(prompts), params.n, len(shards), self.max_n_per_request, params.seed, params.seed + params.n - 1,
        )
        for j, shard in enumerate(shards):
            sampling = self._vllm.SamplingParams(
                **vllm_sampling_kwargs(params, shard, self.stop, self.stop_token_ids)
            )
            llm = self._vllm.LLM(**self.engine_arguments((engine_base + j) % _ENGINE_SEED_MOD))
            try:
                outputs = llm.generate(prompts, sampling_params=sampling, use_tqdm=self.show_progress)
            finally:
                del llm
                _release_engine()
            self._collect(outputs, prompts, shard, j, results)
        return results

    def _collect(self, outputs, prompts: list[str], shard: Shard, j: int, results: list[PromptCompletions]) -> None:
        outputs = list(outputs)
        if len(outputs) != len(prompts):
            raise PipelineError(f"vLLM returned {len(outputs)} outputs for {len(prompts)} prompts (shard {j})")
        for p, out in enumerate(outputs):
            prompt = getattr(out, "prompt", None)
            if prompt is not None and prompt != prompts[p]:
                raise PipelineError(f"vLLM output {p} of shard {j} belongs to another prompt: outputs out of order")
            completions = sorted(enumerate(out.outputs), key=lambda item: (getattr(item[1], "index", item[0]), item[0]))
            if len(completions) != shard.n:
                raise PipelineError(
                    f"vLLM returned {len(completions)} completions for prompt {p} in shard {j}, expected {shard.n}"
                )
            if j == 0:
                results[p].prompt_ids = [int(t) for t in (getattr(out, "prompt_token_ids", None) or [])]
            for _, c in completions:
                results[p].completions.append(completion_from_vllm(c, self.stop_ids, f"prompt {p} in shard {j}"))


def completion_from_vllm(output, stop_ids: set[int] | Sequence[int], where: str = "") -> Completion:
    """One ``vllm.CompletionOutput`` in our convention (see ``sampling.base.Completion``).

    vLLM keeps a sampled EOS (or configured stop token) in ``token_ids``, and reports
    ``"length"`` when that EOS was the last allowed token (it checks the length cap
    first). Here the EOS is removed from ``token_ids`` into ``stop_token_id`` and such a
    response is ``"stop"``: it ended by the model's choice, exactly as the HF sampler
    reports it. A ``"stop"`` without a trailing stop token (a stop string) keeps its tokens.
    """
    if output.finish_reason not in _FINISH_REASONS:
        raise PipelineError(
            f"vLLM completion of {where or 'a prompt'} finished with {output.finish_reason!r}, "
            f"not one of {', '.join(_FINISH_REASONS)}"
        )
    ids = [int(t) for t in output.token_ids]
    if ids and ids[-1] in stop_ids:
        stop = ids.pop()
        return Completion(token_ids=ids, text=output.text, finish_reason="stop", stop_token_id=stop)
    return Completion(token_ids=ids, text=output.text, finish_reason=output.finish_reason)


def model_stop_ids(model_dir: str, trust_remote_code: bool = False, extra: Sequence[int] = ()) -> list[int]:
    """The EOS ids vLLM stops on for ``model_dir`` (tokenizer + generation_config), plus ``extra``."""
    from transformers import AutoTokenizer, GenerationConfig

    tokenizer = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=trust_remote_code)
    try:
        generation = GenerationConfig.from_pretrained(model_dir)
    except OSError:  # no generation_config.json
        generation = None
    ids = end_of_sequence_ids(tokenizer, generation)
    return ids + [int(t) for t in extra if int(t) not in ids]


def _import_vllm():
    try:
        return importlib.import_module("vllm")
    except ImportError as err:
        raise PipelineError(
            f"the vLLM sampler needs the vllm package (GPU machines; pip install vllm): {err}"
        ) from None


def _release_engine() -> None:
    """Free the engine just deleted before the next shard builds one."""
    gc.collect()
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a pipeline dependency
        return
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


class VLLMRollouts:
    """Rollouts for the trainer from one long-lived, colocated ``vllm.LLM`` engine.

    Unlike :class:`VLLMSampler` (a fresh engine per evaluation shard), the trainer keeps one
    engine for the whole run and copies the policy's weights into it before every rollout
    that follows a policy update (:meth:`load_weights`), the way TRL's "colocate" mode and
    verl's hybrid engine do. Prompts go in as token ids, so the rollout sees exactly the
    prompt tokens the trainer scores. The engine must run in this process
    (``VLLM_ENABLE_V1_MULTIPROCESSING=0``, set here) for its model to be reachable.
    """

    def __init__(
        self,
        model: str,
        *,
        seed: int,
        gpu_memory_utilization: float = 0.3,
        max_model_len: int | None = None,
        dtype: str = "bfloat16",
        trust_remote_code: bool = False,
        eos_token_ids: Sequence[int] | None = None,
    ):
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        self.stop_ids = set(model_stop_ids(str(model), trust_remote_code) if eos_token_ids is None else map(int, eos_token_ids))
        self._vllm = _import_vllm()
        self.engine_kwargs = {
            "model": str(model), "seed": int(seed) % _ENGINE_SEED_MOD, "tensor_parallel_size": 1,
            "dtype": dtype, "gpu_memory_utilization": float(gpu_memory_utilization),
            "max_model_len": max_model_len, "trust_remote_code": bool(trust_remote_code),
            "enable_prefix_caching": True,
        }
        self.llm = self._vllm.LLM(**self.engine_kwargs)
        self.weight_syncs = 0

    def generate_ids(self, prompt_ids: Sequence[Sequence[int]], params: SamplingParams) -> list[PromptCompletions]:
        shard = Shard(n=params.n, seed=params.seed)
        sampling = self._vllm.SamplingParams(**vllm_sampling_kwargs(params, shard))
        requests = [{"prompt_token_ids": [int(t) for t in p]} for p in prompt_ids]
        outputs = list(self.llm.generate(requests, sampling_params=sampling, use_tqdm=False))
        if len(outputs) != len(requests):
            raise PipelineError(f"vLLM returned {len(outputs)} outputs for {len(requests)} rollout prompts")
        results = []
        for p, out in enumerate(outputs):
            completions = sorted(enumerate(out.outputs), key=lambda item: (getattr(item[1], "index", item[0]), item[0]))
            if len(completions) != params.n:
                raise PipelineError(f"vLLM returned {len(completions)} completions for rollout prompt {p}, expected {params.n}")
            pc = PromptCompletions(prompt_ids=[int(t) for t in prompt_ids[p]])
            for _, c in completions:
                pc.completions.append(completion_from_vllm(c, self.stop_ids, f"rollout prompt {p}"))
            results.append(pc)
        return results

    def load_weights(self, state_dict: Mapping[str, Any]) -> None:
        """Copy the trainer's current weights into the engine (then drop its prefix cache,
        whose keys and values were computed with the old weights)."""
        engine_model(self.llm).load_weights(weights=list(state_dict.items()))
        reset = getattr(self.llm, "reset_prefix_cache", None)
        if reset is not None:
            reset()
        self.weight_syncs += 1


def engine_model(llm):
    """The ``nn.Module`` inside an in-process vLLM engine (V1 and V0 layouts)."""
    executor = llm.llm_engine.model_executor
    worker = executor.driver_worker
    for path in (("worker", "model_runner", "model"), ("model_runner", "model")):
        obj = worker
        try:
            for name in path:
                obj = getattr(obj, name)
        except AttributeError:
            continue
        return obj
    raise PipelineError(
        "cannot reach the model inside the vLLM engine to sync weights (this vLLM version keeps it "
        "in another process: set VLLM_ENABLE_V1_MULTIPROCESSING=0, or use training.rollout_backend: hf)"
    )
