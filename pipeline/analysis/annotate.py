"""One pass over analysed responses: pivotal-word occurrences, segments, per-response counts.

Shared by the ``analyze`` stage (stored samples) and ``analyze-checkpoints`` (samples
drawn from training snapshots), so that both measure exactly the same things.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipeline.analysis.pivotal import categorize
from pipeline.analysis.reflective import segments_of
from pipeline.analysis.repetition import ngram_repetition_rate, units_of
from pipeline.analysis.settings import Patterns

OTHER = "other"


@dataclass
class Annotation:
    occurrences: pd.DataFrame  # problem_id, sample_index, category, entropy (category "other": untouched tokens)
    segments: pd.DataFrame  # problem_id, sample_index, segment, start, end, text, n_tokens, mean_entropy, first_entropy, reflective, kinds
    responses: pd.DataFrame  # problem_id, sample_index, n_tokens, mean_entropy, n_<category>, n_pivotal, n_segments, n_reflective, repetition


def annotate_response(text: str, token_ids, starts, ends, entropy, patterns: Patterns, repetition: dict) -> tuple[dict, list[dict], dict]:
    """``({category: entropies, "other": entropies}, segment records, response summary)`` of one response."""
    entropy = np.asarray(entropy, dtype=float)
    per_category, other = categorize(text, starts, ends, entropy, patterns.categories, patterns.word_entropy)
    segments = segments_of(text, starts, ends, entropy, patterns.segment, patterns.reflective)
    summary = {
        "n_tokens": len(entropy),
        "mean_entropy": float(entropy.mean()) if len(entropy) else float("nan"),
        **{f"n_{name}": len(v) for name, v in per_category.items()},
        "n_pivotal": int(sum(len(per_category[c]) for c in patterns.pivotal)),
        "pivotal_entropy_sum": float(sum(per_category[c].sum() for c in patterns.pivotal)),
        "n_segments": len(segments),
        "n_reflective": int(sum(s["reflective"] for s in segments)),
        "reflective_entropy_sum": float(sum(s["mean_entropy"] for s in segments if s["reflective"])),
        "repetition": ngram_repetition_rate(units_of(text, list(token_ids), repetition["unit"]), repetition["n"]),
    }
    return {**per_category, OTHER: other}, segments, summary


def annotate(tokens: pd.DataFrame, texts: dict, patterns: Patterns, repetition: dict) -> Annotation:
    """Annotate every response of a per-token frame (columns of ``token_entropy.TOKEN_COLUMNS``).

    ``texts`` maps ``(problem_id, sample_index)`` to the response text the token spans
    refer to. Responses are visited in (problem_id, sample_index) order of first appearance.
    """
    occ = {"problem_id": [], "sample_index": [], "category": [], "entropy": []}
    seg_rows, resp_rows = [], []
    tokens = tokens.sort_values(["problem_id", "sample_index", "position"], kind="stable")
    for (pid, sidx), g in tokens.groupby(["problem_id", "sample_index"], sort=False):
        key = (str(pid), int(sidx))
        text = texts[key]
        values, segments, summary = annotate_response(
            text, g["token_id"].to_numpy(), g["start"].to_numpy(), g["end"].to_numpy(), g["entropy"].to_numpy(),
            patterns, repetition,
        )
        for cat, v in values.items():
            occ["problem_id"].extend([key[0]] * len(v))
            occ["sample_index"].extend([key[1]] * len(v))
            occ["category"].extend([cat] * len(v))
            occ["entropy"].extend(np.asarray(v, dtype=float).tolist())
        seg_rows.extend({"problem_id": key[0], "sample_index": key[1], **s} for s in segments)
        resp_rows.append({"problem_id": key[0], "sample_index": key[1], **summary})
    seg_cols = ["problem_id", "sample_index", "segment", "start", "end", "text", "n_tokens", "mean_entropy", "first_entropy",
                "reflective", "kinds"]
    return Annotation(
        occurrences=pd.DataFrame(occ),
        segments=pd.DataFrame(seg_rows, columns=seg_cols),
        responses=pd.DataFrame(resp_rows),
    )


def response_key(frame: pd.DataFrame) -> np.ndarray:
    """One integer cluster id per row: the response it belongs to (for the bootstrap over responses)."""
    if frame.empty:
        return np.zeros(0, dtype=np.int64)
    codes, _ = pd.MultiIndex.from_arrays([frame["problem_id"].astype(str), frame["sample_index"]]).factorize()
    return np.asarray(codes, dtype=np.int64)
