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

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError(f"sampling.n must be >= 1, got {self.n}")
        if self.temperature < 0:
            raise ValueError(f"sampling.temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"sampling.top_p must be in (0, 1], got {self.top_p}")
        if self.max_new_tokens < 1:
            raise ValueError(f"sampling.max_new_tokens must be >= 1, got {self.max_new_tokens}")


@dataclass
class Completion:
    token_ids: list[int]
    text: str
    finish_reason: str  # "stop" (EOS emitted) or "length" (hit max_new_tokens)

    @property
    def num_tokens(self) -> int:
        return len(self.token_ids)


@dataclass
class PromptCompletions:
    prompt_ids: list[int]
    completions: list[Completion] = field(default_factory=list)


class Sampler(Protocol):
    def generate(self, prompts: list[str], params: SamplingParams) -> list[PromptCompletions]:
        """n completions for each prompt, in prompt order."""
        ...
