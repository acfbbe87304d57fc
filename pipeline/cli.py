"""Command-line entry point: ``python -m pipeline <stage> [options]``.

Each stage is a module exposing ``add_arguments(parser)`` and ``run(args) -> int``.
Modules are imported only when their stage runs, so ``score`` or ``tables`` never
import torch and ``--help`` is instant.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from pipeline.errors import PipelineError

STAGES: dict[str, tuple[str, str]] = {
    "prepare-data": ("pipeline.data.prepare", "Generate or load evaluation suites and the training split."),
    "prepare-hub-data": ("pipeline.data.prepare_hub", "Load the paper-scale suites and training set (pinned revisions)."),
    "build-base-model": ("pipeline.toy.build", "Build the toy tokenizer and tiny Llama model, SFT it, save_pretrained."),
    "fetch-base-model": ("pipeline.fetch", "Fetch the paper-scale base model (pinned revision or local mirror)."),
    "sample": ("pipeline.sampling.stage", "Draw n samples per problem from a model for one suite."),
    "train": ("pipeline.rl.trainer", "RL-train a policy with one method and seed."),
    "score": ("pipeline.eval.score", "Grade samples and compute Pass@K for one model and suite."),
    "tables": ("pipeline.report.tables", "Build the Pass@K tables (Markdown, CSV, LaTeX)."),
    "figures": ("pipeline.report.figures", "Draw Pass@K curves and training-dynamics figures."),
    "compare": ("pipeline.report.compare", "Paired bootstrap of each method against its baseline (comparisons.{md,csv,tex})."),
    "crossing": ("pipeline.report.crossing", "Base-vs-RL crossing point K* of the Pass@k curves (crossing.{md,csv})."),
    "curves": ("pipeline.report.curves", "Pass@k and maj@k at every k of the grid, per method and suite (passk_curves.{md,csv,tex})."),
    "dvc-stages": ("pipeline.dvc_stages", "Write a dvc.yaml that versions any config's results (dvc/<run_name>/dvc.yaml)."),
    "methods": ("pipeline.rl.method_list", "List every configured method with its effective parameters (defaults filled)."),
    "claims": ("pipeline.report.claims", "Every claim of the papers tested on the run, with a computed verdict (claims.{md,csv})."),
    "report": ("pipeline.report.report", "Assemble REPORT.md from the tables, analyses and figures."),
    "token-entropy": ("pipeline.analysis.token_entropy", "Per-token entropies of stored samples (teacher-forced pass of their model)."),
    "analyze": ("pipeline.analysis.stage", "Exploration analysis: pivotal tokens, reflective actions, rare sentences (tables, figures)."),
    "analyze-checkpoints": ("pipeline.analysis.checkpoints", "Fig. 8 quantities across one run's training snapshots."),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="stage", metavar="STAGE", required=True)
    argv = sys.argv[1:] if argv is None else argv
    # Only the chosen stage's module is imported (keeps light stages light).
    chosen = next((a for a in argv if not a.startswith("-")), None)
    for name, (module_name, help_text) in STAGES.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--log-level", default="INFO")
        if name == chosen:
            importlib.import_module(module_name).add_arguments(p)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, str(args.log_level).upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    module = importlib.import_module(STAGES[args.stage][0])
    try:
        return int(module.run(args) or 0)
    except PipelineError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # a full disk inside a library's own writer (e.g. the datasets cache)
        from pipeline.io import is_out_of_space

        if not is_out_of_space(err):
            raise
        print(f"error: {err.strerror}: {err.filename or ''} (out of disk space?)", file=sys.stderr)
        return 2
