"""The sampler interface shared by the HF backend (here) and the vLLM backend (paper scale)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class SamplingParams:
    """Every field is explicit so that no model's generation_config can change the protocol."""

    n: int
    temperature: float
    top_p: float
    max_new_tokens: int
    seed: int
    top_k: int = 0  # 0 = disabled
    # Also return, per sampled token, its log-probability and the entropy of the distribution
    # it was drawn from, both of softmax(logits / temperature) before top-k / top-p (what the
    # trainer's own forward pass computes). HF backend only: vLLM's are not the trainer's.
    logprobs: bool = False

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError(f"sampling.n must be >= 1, got {self.n}")
        if self.temperature < 0:
            raise ValueError(f"sampling.temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"sampling.top_p must be in (0, 1], got {self.top_p}")
        if self.max_new_tokens < 1:
            raise ValueError(f"sampling.max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.logprobs and self.temperature == 0:
            raise ValueError("sampling log-probs need temperature > 0 (greedy decoding has no sampling distribution)")


@dataclass
class Completion:
    """One sampled response, the same from every backend (HF and vLLM).

    * ``token_ids``: the response's tokens **without** the end-of-sequence token that
      ended it (vLLM keeps the sampled EOS in ``CompletionOutput.token_ids``; its backend
      removes it here). ``text`` is their decoding without special tokens.
    * ``finish_reason``: ``"stop"`` when the model sampled an end-of-sequence token —
      **also when that EOS was the last allowed token** (vLLM checks the length cap first
      and reports ``"length"`` then; its backend corrects it) — or, with the vLLM backend,
      when a configured stop string ended it; ``"length"`` when ``max_new_tokens`` tokens
      were sampled and none of them was an EOS. Only ``"length"`` responses count as
      truncated (graded wrong).
    * ``stop_token_id``: the EOS token that was sampled (models may have several, e.g.
      ``<|endoftext|>`` and ``<|im_end|>``), None otherwise. The trainer's actions are
      ``token_ids + [stop_token_id]``: every token that was sampled, each exactly once.
    """

    token_ids: list[int]
    text: str
    finish_reason: str
    stop_token_id: int | None = None
    # with SamplingParams.logprobs: one value per token of ``sampled_ids`` (the EOS included)
    logprobs: list[float] | None = None
    entropies: list[float] | None = None

    @property
    def num_tokens(self) -> int:
        """Tokens of the response, not counting the EOS that ended it."""
        return len(self.token_ids)

    @property
    def sampled_ids(self) -> list[int]:
        """Every sampled token, the terminating EOS included (the trainer's actions)."""
        return self.token_ids + ([self.stop_token_id] if self.stop_token_id is not None else [])


def end_of_sequence_ids(tokenizer, generation_config=None) -> list[int]:
    """The token ids that end a response: the tokenizer's EOS and those of the model's
    ``generation_config`` (``eos_token_id`` may be a list there), as vLLM stops on both."""
    ids: list[int] = []
    candidates = [getattr(tokenizer, "eos_token_id", None)]
    eos = getattr(generation_config, "eos_token_id", None) if generation_config is not None else None
    candidates += list(eos) if isinstance(eos, (list, tuple)) else [eos]
    for token in candidates:
        if token is not None and int(token) not in ids:
            ids.append(int(token))
    return ids


@dataclass
class PromptCompletions:
    prompt_ids: list[int]
    completions: list[Completion] = field(default_factory=list)


class Sampler(Protocol):
    def generate(self, prompts: list[str], params: SamplingParams) -> list[PromptCompletions]:
        """n completions for each prompt, in prompt order."""
        ...
