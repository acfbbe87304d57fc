"""n-gram repetition rate (docs/methods.md §9, our assumption: 4-grams, repeated-n-gram fraction).

rate = 1 − (distinct n-grams) / (n-grams): the share of a response's n-grams that repeat
an earlier one. 0 for a response shorter than n units, or with no repeated n-gram.
"""

from __future__ import annotations

from typing import Sequence


def ngram_repetition_rate(units: Sequence, n: int = 4) -> float:
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    m = len(units) - n + 1
    if m <= 0:
        return 0.0
    grams = [tuple(units[i : i + n]) for i in range(m)]
    return 1.0 - len(set(grams)) / m


def units_of(text: str, token_ids: Sequence[int], unit: str = "token") -> list:
    """The sequence n-grams are taken over: the model's tokens, or whitespace-separated words."""
    if unit == "token":
        return list(token_ids)
    if unit == "word":
        return text.split()
    raise ValueError(f"unknown repetition unit {unit!r} (token or word)")
