"""Reproduction pipeline for entropy-driven exploration in RL for LLM reasoning.

Every Snakemake rule calls ``python -m pipeline <stage> ...``; each stage lives in
its own module and is imported lazily so light stages never pay for torch.
"""

__version__ = "0.1.0"
