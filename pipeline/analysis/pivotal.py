"""Pivotal tokens (docs/methods.md §9): words of configurable categories (causal, contrastive, sequential,
reasoning verbs, …) against all other tokens.

A category is a list of terms matched in the response text (see
:func:`pipeline.analysis.settings.term_pattern`); each match is one *occurrence*, whose
entropy is that of the word's first token (``first``: the point where the model chose
to write the word — with a character tokenizer the later characters are near-certain)
or the mean over its tokens (``mean``). "Other" tokens are those no category match
touches.
"""

from __future__ import annotations

import re

import numpy as np


def match_spans(text: str, pattern: re.Pattern) -> list[tuple[int, int]]:
    """Character spans of every non-empty match of ``pattern`` in ``text``."""
    return [(m.start(), m.end()) for m in pattern.finditer(text) if m.end() > m.start()]


def occurrence_entropies(
    starts: np.ndarray, ends: np.ndarray, entropy: np.ndarray, spans: list[tuple[int, int]], mode: str = "first"
) -> tuple[np.ndarray, np.ndarray]:
    """Entropy of each matched word and the mask of tokens the matches touch.

    Tokens are given by their character spans ``[starts[i], ends[i])`` (sorted, as a
    tokenizer's offsets are). A word's tokens are those overlapping its span; its first
    token is the one containing the span's first character.
    """
    covered = np.zeros(len(starts), dtype=bool)
    values = []
    for s, e in spans:
        idx = np.nonzero((starts < e) & (ends > s))[0]
        if len(idx) == 0:
            continue
        covered[idx] = True
        values.append(float(entropy[idx[0]]) if mode == "first" else float(entropy[idx].mean()))
    return np.asarray(values, dtype=float), covered


def categorize(
    text: str, starts, ends, entropy, categories: dict[str, re.Pattern], mode: str = "first"
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Per category the occurrence entropies in one response; and the entropies of the other tokens."""
    starts, ends, entropy = np.asarray(starts), np.asarray(ends), np.asarray(entropy, dtype=float)
    touched = np.zeros(len(starts), dtype=bool)
    per_category = {}
    for name, pattern in categories.items():
        values, covered = occurrence_entropies(starts, ends, entropy, match_spans(text, pattern), mode)
        per_category[name] = values
        touched |= covered
    return per_category, entropy[~touched]
