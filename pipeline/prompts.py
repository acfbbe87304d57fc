"""Prompt rendering shared by sampling and training: a template, optionally a chat template.

The template (config ``prompt.template``) wraps the bare problem text, e.g. DAPO's
``Answer:`` instruction or the Qwen-Math ``\\boxed{}`` suffix. With
``prompt.chat_template: true`` the result is sent as a user turn through the tokenizer's
own chat template (a model without one is an error, not a silent fallback).
"""

from __future__ import annotations

from typing import Iterable

from pipeline.errors import PipelineError

# docs/methods.md §8: Qwen2.5-Math's suffix, used with Math-Verify grading.
QWEN_BOXED_TEMPLATE = "{problem}\nPlease reason step by step, and put your final answer within \\boxed{{}}."


def render_prompts(problems: Iterable[str], template: str, tokenizer=None, chat_template: bool = False) -> list[str]:
    texts = [template.format(problem=p) for p in problems]
    if not chat_template:
        return texts
    if tokenizer is None or not getattr(tokenizer, "chat_template", None):
        raise PipelineError("prompt.chat_template is true but the model's tokenizer has no chat template")
    return [
        tokenizer.apply_chat_template([{"role": "user", "content": t}], tokenize=False, add_generation_prompt=True)
        for t in texts
    ]
