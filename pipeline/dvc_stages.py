"""Stage ``dvc-stages``: a ``dvc.yaml`` for any config file, so that its results (its own
``results_dir``: data, base and trained models, samples, scores, tables) are versioned and
moved between machines like the default run's (the root ``dvc.yaml``).

    python -m pipeline dvc-stages --config configs/paper/cheng2025_table2_qwen25_7b.yaml
    # -> dvc/cheng2025-table2-qwen25-7b/dvc.yaml
    dvc repro dvc/cheng2025-table2-qwen25-7b/dvc.yaml
    dvc push  dvc/cheng2025-table2-qwen25-7b/dvc.yaml

The stages are those of the root file (each one Snakemake call with ``--configfile``;
Snakemake decides job by job what reruns, DVC records which code, config and outputs belong
together and moves them); ``wdir`` is the project root, so every path below is the project's.
"""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path

import yaml

CODE_DEPS = ["Snakefile", "rules", "pipeline"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="the config file whose results DVC should version")
    parser.add_argument("--out", default=None, help="where to write the dvc.yaml (default dvc/<run_name>/dvc.yaml)")


def stages(config_path: str, config: dict) -> dict:
    """The four stages for ``config`` (already validated), paths relative to the project root."""
    results = config["results_dir"].rstrip("/")
    snakemake = f"snakemake --configfile {config_path} --cores all"
    persist = lambda paths: [{p: {"persist": True}} for p in paths]  # noqa: E731 - a table of paths
    trained = bool(config["methods"])
    model_outs = ([f"{results}/base_model"] if trained and config["world"] == "toy" else []) + (
        [f"{results}/models"] if trained or any("repo_id" in e for e in config["eval_models"].values()) else []
    ) + ([f"{results}/train"] if trained else [])
    out = {
        "data": {"cmd": f"snakemake prepare_data --configfile {config_path} --cores all", "deps": CODE_DEPS,
                 "outs": persist([f"{results}/data"])},
    }
    if model_outs:
        # the base model and every (method, seed) run: the final models under models/ (training
        # checkpoints, the resume source of an interrupted run, stay out: .dvcignore)
        out["models"] = {"cmd": f"{snakemake} --until train fetch_eval_model", "deps": CODE_DEPS + [f"{results}/data"],
                         "outs": persist(model_outs)}
    models = [p for p in model_outs if p.endswith(("/models", "/train"))]
    out["evaluate"] = {"cmd": f"{snakemake} --until score", "deps": CODE_DEPS + [f"{results}/data"] + models[:1],
                       "outs": persist([f"{results}/samples", f"{results}/scores"])}
    out["report"] = {"cmd": snakemake, "deps": CODE_DEPS + [f"{results}/scores", f"{results}/samples"] + models,
                     "outs": persist([f"{results}/tables", f"{results}/figures", f"{results}/REPORT.md"]
                                     + ([f"{results}/analysis"] if config["analysis"]["enabled"] and trained else []))}
    for stage in out.values():
        stage["params"] = [{config_path: None}]
        stage["wdir"] = None  # filled by the caller: relative path from the dvc.yaml to the root
    return out


def run(args: argparse.Namespace) -> int:
    from pipeline.config import load_config

    from pipeline.errors import PipelineError

    config = load_config(args.config)
    if config["results_dir"].rstrip("/") == "results":
        raise PipelineError(f"{args.config}: results_dir 'results' is the default run's, versioned by the root dvc.yaml; "
                            "give this config a results_dir of its own (e.g. results/<name>)")
    root = Path.cwd()
    config_path = os.path.relpath(Path(args.config).resolve(), root)
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", config["run_name"])
    target = Path(args.out) if args.out else root / "dvc" / name / "dvc.yaml"
    wdir = os.path.relpath(root, target.resolve().parent)
    body = stages(config_path, config)
    for stage in body.values():
        stage["wdir"] = wdir
    header = (f"# DVC stages for {config_path} (results in {config['results_dir']}); written by\n"
              f"#   python -m pipeline dvc-stages --config {config_path}\n"
              "# Regenerate after changing the config's results_dir, methods or eval_models.\n")
    target.parent.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump({"stages": body}, sort_keys=False).replace(": null\n", ":\n")
    target.write_text(header + text)
    print(target)
    return 0
