"""maj@k: the majority vote over k samples' extracted answers, next to Pass@k.

For one problem with n samples, each with an extracted answer (normalised; None when the
response states none) and a verdict: the vote of a k-subset picks the most frequent answer
among the subset's answered samples; ties are broken uniformly at random, so the subset's
score is the fraction of tied answers that are correct (an answer is correct when its
samples' verdicts are, by majority). A subset with no answer scores 0. maj@k is the mean
score over k-subsets: exact for k = n; for k < n the mean over ``draws`` uniformly drawn
subsets (seeded per problem and k, our choice: there is no closed form like Pass@k's).
maj@1 equals Pass@1 whenever every answer's samples agree in their verdict.
"""

from __future__ import annotations

import importlib
from typing import Callable

import numpy as np

from pipeline.eval.grading import normalize_answer
from pipeline.io import stable_seed


# Which answer a grader reads from a response, by import path like GRADERS (the grader's own
# module, hashed into the score rule only when that grader is configured). A grader given as
# module:function has none registered: its score file then has no maj@k.
ANSWER_EXTRACTORS: dict[str, str] = {
    "answer_line": "pipeline.eval.grading:extract_answer_line",
    "math_verify": "pipeline.eval.math_graders:extract_last_boxed",
    "boxed_strict": "pipeline.eval.math_graders:extract_last_boxed",
}


def answer_extractor(grader: str) -> Callable[[str], str | None] | None:
    spec = ANSWER_EXTRACTORS.get(grader)
    if spec is None:
        return None
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)


def answer_codes(answers: list[str | None], correct: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Integer code per sample (-1: no answer) and whether each distinct answer is correct."""
    codes, index, votes = np.full(len(answers), -1, dtype=np.int64), {}, []
    for i, a in enumerate(answers):
        if a is None or a == "":
            continue
        code = index.setdefault(a, len(index))
        if code == len(votes):
            votes.append([0, 0])
        votes[code][0] += int(bool(correct[i]))
        votes[code][1] += 1
        codes[i] = code
    good = np.array([c * 2 > n for c, n in votes], dtype=np.float64) if votes else np.zeros(0)
    return codes, good


def majority_score(subsets: np.ndarray, good: np.ndarray) -> np.ndarray:
    """Score of each row of ``subsets`` ([R, k] answer codes, -1 = none) under a uniform tie-break."""
    n_answers = len(good)
    if n_answers == 0:
        return np.zeros(len(subsets))
    rows = np.repeat(np.arange(len(subsets)), subsets.shape[1])
    flat = subsets.reshape(-1)
    keep = flat >= 0
    counts = np.bincount(rows[keep] * n_answers + flat[keep], minlength=len(subsets) * n_answers).reshape(len(subsets), n_answers)
    top = counts.max(axis=1, keepdims=True)
    tied = (counts == top) & (top > 0)
    return np.where(tied.any(axis=1), (tied * good).sum(axis=1) / np.maximum(tied.sum(axis=1), 1), 0.0)


def maj_at_k(codes: np.ndarray, good: np.ndarray, k: int, seed: int, draws: int = 256) -> float:
    """maj@k of one problem (``codes``: its n samples' answer codes)."""
    n = len(codes)
    if not 1 <= k <= n:
        raise ValueError(f"maj@k needs 1 <= k <= n, got k={k}, n={n}")
    if k == n:
        return float(majority_score(codes[None, :], good)[0])
    if k == 1:  # every 1-subset, exactly
        return float(majority_score(codes[:, None], good).mean())
    rng = np.random.default_rng(seed)
    subsets = np.argsort(rng.random((draws, n)), axis=1)[:, :k]
    return float(majority_score(codes[subsets], good).mean())


def maj_at_ks(texts: list[str], correct: np.ndarray, problem_of: np.ndarray, problem_ids: list[str], ks: list[int],
              grader: str, seed: int, truncated: np.ndarray | None = None) -> dict[str, float] | None:
    """Mean maj@k over problems for every k (None for a grader without an answer extractor).
    Truncated samples do not vote (they are wrong whatever they contain, as for Pass@k)."""
    extract = answer_extractor(grader)
    if extract is None:
        return None
    answers = [None if (truncated is not None and truncated[i]) or (a := extract(t)) is None else normalize_answer(a)
               for i, t in enumerate(texts)]
    out = {str(k): [] for k in ks}
    for pid in problem_ids:
        rows = np.flatnonzero(problem_of == pid)
        codes, good = answer_codes([answers[i] for i in rows], correct[rows])
        for k in ks:
            out[str(k)].append(maj_at_k(codes, good, k, stable_seed(seed, "maj", pid, k)))
    return {k: float(np.mean(v)) for k, v in out.items()}
