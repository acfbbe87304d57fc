"""Fixtures for a CPU "dress rehearsal" of the paper configs (issue 15).

* :mod:`rehearsal.problems` - simple arithmetic problems in the benchmarks' natural-language
  LaTeX style, with worked solutions (deterministic from a seed);
* :mod:`rehearsal.mirrors` - local mirrors of every paper-scale dataset in its hub
  repository's exact layout (file names, splits, configs, columns, dtypes, quirks), and a
  stand-in for the hub that serves them at their pinned revisions;
* :mod:`rehearsal.tiny_model` - a tiny Qwen2-architecture "hub" model (byte-level BPE
  tokenizer trained locally, the Qwen2.5 chat template, bf16 safetensors), briefly SFT'd
  to write well-formed answers for both paper prompt templates.

Entry points: ``python -m rehearsal.mirrors --out DIR`` and
``python -m rehearsal.tiny_model --out DIR --seed 0``.
"""
