"""The HF backend: batched sampling from any ``transformers`` causal LM with a KV cache.

Why a hand-written loop rather than ``model.generate``: we need every protocol field
explicit (temperature, top-p, top-k, max new tokens, seed), finish reasons per sample,
and two savings that matter for Pass@K at large n:

* each prompt is prefilled once and its KV cache repeated n times;
* finished sequences are dropped from the batch (the cache is compacted), and the loop
  exits as soon as every sequence has ended, so no compute is spent on padding.

Sampling is seeded by a ``torch.Generator`` so the same seed gives the same samples.
"""

from __future__ import annotations

import inspect
import logging
from typing import Sequence

import torch
from tqdm import tqdm
from transformers.cache_utils import Cache, DynamicLayer

from pipeline.rl.entropy import logprobs_and_entropy
from pipeline.sampling.base import Completion, PromptCompletions, SamplingParams, end_of_sequence_ids

log = logging.getLogger(__name__)


def sample_next_token(
    logits: torch.Tensor, temperature: float, top_p: float, top_k: int, generator: torch.Generator | None
) -> torch.Tensor:
    """One token per row from ``logits`` [B, V] with temperature, top-k and nucleus (top-p) filtering."""
    if temperature == 0:
        return logits.argmax(dim=-1)
    logits = logits.float() / temperature
    if top_k and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        probs = torch.softmax(sorted_logits, dim=-1)
        # Drop a token when the mass before it already reaches top_p (the first token always stays).
        drop = (torch.cumsum(probs, dim=-1) - probs) >= top_p
        sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
        logits = torch.empty_like(logits).scatter_(-1, order, sorted_logits)
    probs = torch.softmax(logits, dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


class HFSampler:
    """Sampler over a loaded ``PreTrainedModel`` and its tokenizer."""

    def __init__(self, model, tokenizer, batch_size: int = 1024, show_progress: bool = False):
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.show_progress = show_progress
        # The tokenizer's EOS and the generation config's (several for some models): the
        # vLLM backend stops on the same set.
        self.stop_ids = end_of_sequence_ids(tokenizer, getattr(model, "generation_config", None))
        if not self.stop_ids:
            raise ValueError("the tokenizer has no eos_token_id: sampling could never stop")
        self.eos_id = self.stop_ids[0]
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos_id
        self.cache_kwarg = cache_argument(model)

    def encode(self, prompts: Sequence[str]) -> list[list[int]]:
        return [self.tokenizer(p).input_ids for p in prompts]

    def generate(self, prompts: Sequence[str], params: SamplingParams) -> list[PromptCompletions]:
        return self.generate_ids(self.encode(prompts), params)

    @torch.no_grad()  # not inference_mode: the trainer feeds these tensors into autograd later
    def generate_ids(self, prompt_ids: Sequence[Sequence[int]], params: SamplingParams) -> list[PromptCompletions]:
        generator = torch.Generator().manual_seed(params.seed)
        results = [PromptCompletions(prompt_ids=list(p)) for p in prompt_ids]
        # Prompts of similar length share a chunk (little padding); whole prompts per chunk
        # so that each prompt is prefilled once.
        order = sorted(range(len(prompt_ids)), key=lambda i: (len(prompt_ids[i]), i))
        per_chunk = max(1, self.batch_size // params.n)
        chunks = [order[i : i + per_chunk] for i in range(0, len(order), per_chunk)]
        was_training = self.model.training
        self.model.eval()
        try:
            for chunk in tqdm(chunks, desc="sampling", unit="chunk", disable=not self.show_progress):
                token_lists, stops, logps, entropies = self._sample_chunk([prompt_ids[i] for i in chunk], params, generator)
                for j, prompt_index in enumerate(chunk):
                    for s in range(params.n):
                        row = j * params.n + s
                        ids = token_lists[row]
                        results[prompt_index].completions.append(
                            Completion(
                                token_ids=ids,
                                text=self.tokenizer.decode(ids, skip_special_tokens=True),
                                finish_reason="stop" if stops[row] is not None else "length",
                                stop_token_id=stops[row],
                                logprobs=logps[row] if params.logprobs else None,
                                entropies=entropies[row] if params.logprobs else None,
                            )
                        )
        finally:
            self.model.train(was_training)
        return results

    def _sample_chunk(
        self, prompts: list[Sequence[int]], params: SamplingParams, generator: torch.Generator
    ) -> tuple[list[list[int]], list[int | None], list[list[float]], list[list[float]]]:
        """Token ids of every row (without EOS), the EOS that ended it (None: truncated) and,
        with ``params.logprobs``, each sampled token's log-prob and entropy (EOS included)."""
        device = self.model.device
        n_prompts, width = len(prompts), max(len(p) for p in prompts)
        input_ids = torch.full((n_prompts, width), self.pad_id, dtype=torch.long)
        attention = torch.zeros((n_prompts, width + params.max_new_tokens), dtype=torch.long)
        for i, p in enumerate(prompts):  # left padding: every prompt ends at the same column
            input_ids[i, width - len(p) :] = torch.tensor(p, dtype=torch.long)
            attention[i, width - len(p) :] = 1  # generated columns are always attended
        input_ids, attention = input_ids.to(device), attention.to(device)
        positions = (attention[:, :width].cumsum(-1) - 1).clamp(min=0)

        cache = preallocated_cache(width + params.max_new_tokens)
        out = self.model(
            input_ids=input_ids, attention_mask=attention[:, :width], position_ids=positions,
            use_cache=True, logits_to_keep=1, **{self.cache_kwarg: cache},
        )
        # Prefill once per prompt, then repeat each prompt's cache n times.
        logits = out.logits[:, -1, :].repeat_interleave(params.n, dim=0)
        if params.n > 1:
            cache.batch_repeat_interleave(params.n)
        attention = attention.repeat_interleave(params.n, dim=0)
        next_pos = positions[:, -1:].repeat_interleave(params.n, dim=0) + 1

        total = n_prompts * params.n
        rows = list(range(total))  # original row of each current batch row
        alive = [True] * total
        generated: list[list[int]] = [[] for _ in range(total)]
        stopped_by: list[int | None] = [None] * total
        logps: list[list[float]] = [[] for _ in range(total)]
        entropies: list[list[float]] = [[] for _ in range(total)]
        stop_ids = set(self.stop_ids)
        for step in range(params.max_new_tokens):
            tokens = sample_next_token(logits, params.temperature, params.top_p, params.top_k, generator)
            if params.logprobs:  # the trainer's old log-probs, from the logits decoding computed anyway
                step_logp, step_entropy = token_logprob_entropy(logits, tokens, params.temperature)
            for k, tok in enumerate(tokens.tolist()):
                if not alive[k]:
                    continue
                if params.logprobs:
                    logps[rows[k]].append(step_logp[k])
                    entropies[rows[k]].append(step_entropy[k])
                if tok in stop_ids:  # an EOS ends the response, also as the last allowed token
                    alive[k] = False
                    stopped_by[rows[k]] = tok
                else:
                    generated[rows[k]].append(tok)
            n_alive = sum(alive)
            if n_alive == 0 or step == params.max_new_tokens - 1:
                break
            # Drop ended rows once they are a quarter of the batch: compaction copies the
            # cache, so doing it at every single EOS would cost more than it saves.
            if len(rows) - n_alive >= max(1, len(rows) // 4):
                keep = torch.tensor([k for k in range(len(rows)) if alive[k]], device=device)
                cache.batch_select_indices(keep)
                tokens, attention, next_pos = tokens[keep], attention[keep], next_pos[keep]
                rows = [rows[k] for k in keep.tolist()]
                alive = [True] * len(rows)
            out = self.model(
                input_ids=tokens[:, None], attention_mask=attention[:, : width + step + 1],
                position_ids=next_pos, use_cache=True, **{self.cache_kwarg: cache},
            )
            next_pos = next_pos + 1
            logits = out.logits[:, -1, :]
        return generated, stopped_by, logps, entropies


def cache_argument(model) -> str:
    """The name under which ``model.forward`` takes its KV cache: ``cache`` from transformers
    5.25 on, ``past_key_values`` before (5.25 still accepts it with a deprecation warning, 5.40
    drops it; the vLLM environment and the GPU images run older 5.x releases)."""
    parameters = inspect.signature(model.forward).parameters
    if "cache" in parameters:
        return "cache"
    if "past_key_values" in parameters:
        return "past_key_values"
    raise TypeError(f"{type(model).__name__}.forward takes neither `cache` nor `past_key_values`: no KV cache to decode with")


def token_logprob_entropy(logits: torch.Tensor, tokens: torch.Tensor, temperature: float) -> tuple[list[float], list[float]]:
    """Per row of ``logits`` [B, V]: log-prob of ``tokens`` [B] and the full-vocabulary entropy,
    both of ``softmax(logits / temperature)`` — the trainer's definition, before top-k / top-p."""
    chosen, entropy = logprobs_and_entropy(logits.float() / temperature, tokens)
    return chosen.tolist(), entropy.tolist()


class _PreallocatedLayer(DynamicLayer):
    """A KV-cache layer writing into a buffer allocated once, instead of torch.cat per step.

    ``DynamicLayer`` concatenates the whole cache at every generated token (quadratic
    copying); at the toy scale that copy was the sampler's largest cost.
    """

    capacity = 0  # set by preallocated_cache()

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        super().lazy_initialization(key_states, value_states)
        b, h, _, d = key_states.shape
        self._k = key_states.new_empty((b, h, self.capacity, key_states.shape[-1]))
        self._v = value_states.new_empty((b, h, self.capacity, value_states.shape[-1]))
        self._len = 0

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        n = key_states.shape[-2]
        if self._len + n > self.capacity:
            raise RuntimeError(f"KV cache capacity {self.capacity} exceeded")
        self._k[:, :, self._len : self._len + n] = key_states
        self._v[:, :, self._len : self._len + n] = value_states
        self._len += n
        self.keys, self.values = self._k[:, :, : self._len], self._v[:, :, : self._len]
        return self.keys, self.values

    def batch_repeat_interleave(self, repeats: int) -> None:
        self._k = self._k.repeat_interleave(repeats, dim=0)
        self._v = self._v.repeat_interleave(repeats, dim=0)
        self.keys, self.values = self._k[:, :, : self._len], self._v[:, :, : self._len]

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        self._k, self._v = self._k[indices], self._v[indices]
        self.keys, self.values = self._k[:, :, : self._len], self._v[:, :, : self._len]


def preallocated_cache(capacity: int) -> Cache:
    layer = type("PreallocatedLayer", (_PreallocatedLayer,), {"capacity": capacity})
    return Cache(layer_class_to_replicate=layer)
