"""Reflective actions (docs/methods.md §9): responses cut into sentences / steps, mean token entropy
per segment, reflective segments found by configurable regexes (verify, check, wait,
re-examine, …).

For the toy world a segment is a line (``13+2=15``, ``wait, 7*8=56``, ``check: 55/3=18``);
for natural-language responses the default separator also ends a sentence at ``.``,
``!`` or ``?`` followed by whitespace.
"""

from __future__ import annotations

import re

import numpy as np


def segment_spans(text: str, separator: re.Pattern) -> list[tuple[int, int]]:
    """Spans of the non-blank pieces between separator matches, surrounding whitespace trimmed."""
    spans = []
    pos = 0
    pieces = [(m.start(), m.end()) for m in separator.finditer(text) if m.end() > m.start()]
    for s, e in pieces + [(len(text), len(text))]:
        start, end = pos, s
        while start < end and text[start].isspace():
            start += 1
        while end > start and text[end - 1].isspace():
            end -= 1
        if end > start:
            spans.append((start, end))
        pos = e
    return spans


def assign_tokens(text: str, starts, ends, spans: list[tuple[int, int]]) -> np.ndarray:
    """The segment index of each token (-1 for tokens that are only whitespace between segments).

    A token belongs to the segment holding its first non-whitespace character (so a
    BPE token such as ``" because"`` belongs to the sentence of ``because``).
    """
    starts, ends = np.asarray(starts, dtype=int), np.asarray(ends, dtype=int)
    out = np.full(len(starts), -1, dtype=int)
    if not spans:
        return out
    seg_starts = np.array([s for s, _ in spans])
    seg_ends = np.array([e for _, e in spans])
    for i, (s, e) in enumerate(zip(starts, ends)):
        anchor = s
        while anchor < e and text[anchor].isspace():
            anchor += 1
        if anchor >= e:
            continue
        j = int(np.searchsorted(seg_starts, anchor, side="right")) - 1
        if j >= 0 and anchor < seg_ends[j]:
            out[i] = j
    return out


def reflective_kinds(segment: str, patterns: dict[str, re.Pattern]) -> list[str]:
    """Names of the reflective patterns found in one segment (empty: not reflective)."""
    return [name for name, pattern in patterns.items() if pattern.search(segment)]


def segments_of(text: str, starts, ends, entropy, separator: re.Pattern, patterns: dict[str, re.Pattern]) -> list[dict]:
    """One record per segment with at least one token: span, text, token count, mean entropy,
    the entropy of its first token (where the model chose what kind of step comes next),
    and which reflective patterns it matches."""
    entropy = np.asarray(entropy, dtype=float)
    spans = segment_spans(text, separator)
    owner = assign_tokens(text, starts, ends, spans)
    records = []
    for j, (s, e) in enumerate(spans):
        mask = owner == j
        if not mask.any():
            continue
        seg = text[s:e]
        kinds = reflective_kinds(seg, patterns)
        records.append({
            "segment": j, "start": s, "end": e, "text": seg, "n_tokens": int(mask.sum()),
            "mean_entropy": float(entropy[mask].mean()), "first_entropy": float(entropy[np.argmax(mask)]),
            "reflective": bool(kinds), "kinds": ",".join(kinds),
        })
    return records
