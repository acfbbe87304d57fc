"""Exploration analysis (docs/methods.md §9; Cheng et al. 2025 §2 and Fig. 8).

Where does a policy's token entropy sit in its reasoning? Over stored samples of any
model (the entropies recomputed by a teacher-forced pass of the model that produced
them) and over intermediate training checkpoints:

* ``token_entropy`` — per-token records (problem, sample, position, token, entropy);
* ``pivotal`` — configurable word categories vs all other tokens (Mann–Whitney U, effect size);
* ``reflective`` — sentence/step segmentation, reflective segments by regex;
* ``rarity`` — sentence embeddings, kNN distance to the base model's sentences, rare = top fraction;
* ``repetition`` — n-gram repetition rate;
* ``checkpoints`` — the Fig. 8 quantities per training snapshot;
* ``stage`` — the ``analyze`` stage: tables and figures (Fig. 2, 3, 8).

Every module is small and importable without torch except where a model runs.
"""
