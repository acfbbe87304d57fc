"""The workflow's helpers: the config slices and options the rules pass as params.

Pure functions of the validated config (its defaults filled by the schema), imported by the
rule files; kept out of ``rules/*.smk`` so that they are tested directly
(``tests/test_report_rules.py``). The helpers that need Snakemake's own objects
(``config``, ``workflow``, wildcards) are in ``rules/common.smk``.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

# --------------------------------------------------------------------------- tables and REPORT.md


def method_baselines(methods: dict[str, dict], baseline_of: dict[str, str]) -> dict[str, str]:
    """Each configured method's baseline (``baseline_of`` of its preset) when that baseline is configured too."""
    out = {}
    for name, spec in methods.items():
        baseline = baseline_of.get(spec.get("preset", name))
        if baseline is not None and baseline != name and baseline in methods:
            out[name] = baseline
    return out


def option(flag: str, values: list[str]) -> str:
    """``--flag 'v1' 'v2'`` shell-quoted, or "" when there are no values (the option is left out)."""
    if not values:
        return ""
    return " ".join([flag, *map(shlex.quote, values)])


def reported_options(settings: dict, suite_map_json: str) -> str:
    if not settings["reported"]:
        return ""
    return option("--reported", settings["reported"]) + " " + option("--suite-map", [suite_map_json])


def reference_files(specs: list[str], package_dir: str | Path) -> list[str]:
    """``pipeline/``-relative paths of the shipped reference CSVs named in NAME:MODEL specs (for code_hash)."""
    names = sorted({str(spec).rpartition(":")[0] for spec in specs})
    return [f"reference/{n}.csv" for n in names if (Path(package_dir) / "reference" / f"{n}.csv").is_file()]


def report_config(config: dict, methods: list[str], baselines: dict[str, str], seeds: list, suites: list[str]) -> dict:
    """The run's summary shown at the top of REPORT.md."""
    return {
        "run_name": config.get("run_name"),
        "world": config.get("world"),
        "methods": list(methods),
        "baselines": dict(baselines),
        "seeds": list(seeds),
        "suites": {
            s: {k: config["suites"][s][k] for k in ("k", "n_samples", "problems") if k in config["suites"][s]}
            for s in suites
        },
    }


# --------------------------------------------------------------------------- exploration analysis


def analysed_runs(config: dict) -> list[str]:
    """``<method>/seed<s>`` of every RL run the analysis covers (config already validated)."""
    methods, seeds = analysed_pairs(config)
    return [f"{m}/seed{s}" for m, s in zip(methods, seeds)]


def analysed_pairs(config: dict) -> tuple[list[str], list[int]]:
    """The analysed runs as parallel lists of methods and seeds (for ``expand(..., zip, ...)``)."""
    cfg = config["analysis"]
    methods = list(config["methods"]) if cfg["methods"] is None else cfg["methods"]
    seeds = config["seeds"][:1] if cfg["seeds"] is None else cfg["seeds"]
    return [m for m in methods for _ in seeds], [s for _ in methods for s in seeds]


def analysis_suite(config: dict) -> str:
    suite = config["analysis"]["suite"]
    return next(iter(config["suites"])) if suite is None else suite


def slice_keys(cfg: dict, keys: tuple[str, ...]) -> dict[str, Any]:
    return {k: cfg[k] for k in keys}


# What each job depends on (so that changing, e.g., a word list does not recompute entropies).
TOKEN_KEYS = ("problems", "samples_per_problem", "seed", "temperature", "batch_size", "chunk_size")
TEXT_KEYS = ("case_sensitive", "word_entropy", "categories", "pivotal", "segment_pattern", "reflective_patterns", "repetition")
PASS_KEYS = ("seed", "temperature", "batch_size", "chunk_size")  # a model pass over drawn samples (checkpoints)
STAGE_KEYS = ("seed", "bootstrap", "rarity")  # the analyze stage, besides TEXT_KEYS
