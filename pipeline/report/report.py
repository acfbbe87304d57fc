"""Stage ``report``: assemble ``REPORT.md``, one Markdown file readable on GitHub.

Sections, each with a short caption: the run's configuration (methods with their
baselines, seeds, suites with K and n), the main Pass@K table (Cheng et al. Table 2
layout), the comparison tables that exist (``table3``, ``entropy_control``), the paired
bootstrap against each method's baseline, the base-vs-RL crossing point K*, the figures
(relative image links, e.g. ``figures/passk_<suite>.png``), and the papers' own numbers
for context (``--paper-context``, from ``pipeline/reference/``).

The tables are embedded from the Markdown files the other report stages wrote; nothing is
recomputed here.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
from pathlib import Path

import pandas as pd

from pipeline import machine
from pipeline.errors import PipelineError
from pipeline.io import read_json, write_text
from pipeline.report.reference import citation, load_reported
from pipeline.report.scores import parse_json_arg, parse_reported

logger = logging.getLogger(__name__)

TABLE_CAPTIONS = {
    "main": (
        "Main results (Cheng et al. 2025, Table 2 layout)",
        "Pass@K at the suite's K and Pass@1, in percent, for the base model and every method. Bold: best in the "
        "column. Δ lines: the method minus its baseline in percentage points.",
    ),
    "table3": (
        "Entropy regularization vs entropy-based advantage (Cheng et al. 2025, Table 3 layout)",
        "GRPO with a fixed entropy bonus against GRPO with the entropy-based advantage (and plain GRPO).",
    ),
    "entropy_control": (
        "Entropy-control strategies",
        "GRPO against the other ways of keeping entropy up: a fixed entropy bonus, AER (Zhang et al. 2025, "
        "our reconstruction), Clip-Cov and KL-Cov (Cui et al. 2025).",
    ),
}
FIGURE_CAPTIONS = {
    "training_dynamics": (
        "Training dynamics (Cheng et al. 2025, Fig. 6–7)",
        "Reward, response length, mean token entropy and the entropy-advantage shaping ratio ψ/|A| per policy "
        "update; mean over seeds, band = min–max.",
    ),
    "entropy_control": (
        "Entropy control",
        "Mean token entropy of the entropy-control methods (dashed: AER's target H\\*) and AER's coefficient α_t.",
    ),
}
PASSK_RE = re.compile(r"^passk_(?P<suite>.+)$")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tables", nargs="+", required=True, type=Path,
                        help="table Markdown files (main.md first; others such as table3.md, entropy_control.md)")
    parser.add_argument("--comparisons", required=True, type=Path, help="comparisons.md from 'compare'")
    parser.add_argument("--crossing", required=True, type=Path, help="crossing.md from 'crossing'")
    parser.add_argument("--curves", type=Path, default=None, help="passk_curves.md from 'curves' (Pass@k and maj@k on the k grid)")
    parser.add_argument("--claims", type=Path, default=None, help="claims.md from 'claims' (the report opens with it)")
    parser.add_argument("--figures", nargs="*", default=[], type=Path, help="PNG figures to link")
    parser.add_argument("--config", required=True,
                        help="JSON: run_name, world, methods, baselines, seeds, suites {name: {k, n_samples, problems}}")
    parser.add_argument("--paper-context", nargs="*", default=[], metavar="NAME:MODEL",
                        help="reported numbers to list for context, e.g. cheng2025_table2:Qwen2.5-7B")
    parser.add_argument("--exploration-tables", nargs="*", default=[], type=Path,
                        help="exploration_*.md tables from 'analyze' (summary first)")
    parser.add_argument("--exploration-figures", nargs="*", default=[], type=Path,
                        help="exploration_*.png figures from 'analyze'")
    parser.add_argument("--machines", nargs="*", default=[], type=Path,
                        help="files that record the machine they were computed on: the base models' "
                             "sft_metrics.json, the evaluation samples' .parquet")
    parser.add_argument("--out", required=True, type=Path, help="REPORT.md to write")


# --------------------------------------------------------------------------- pieces

def parse_config(text: str) -> dict:
    obj = parse_json_arg(text, "--config", "(run_name, world, methods, baselines, seeds, suites)")
    for key in ("methods", "seeds", "suites"):
        if key not in obj:
            raise PipelineError(f"--config: missing key {key!r}")
    if not isinstance(obj["suites"], dict):
        raise PipelineError("--config: 'suites' must map a suite name to {k, n_samples, ...}")
    return obj


def config_section(cfg: dict) -> str:
    baselines = cfg.get("baselines") or {}
    lines = ["## Run configuration", ""]
    meta = []
    if cfg.get("run_name"):
        meta.append(f"run `{cfg['run_name']}`")
    if cfg.get("world"):
        meta.append(f"world `{cfg['world']}`")
    seeds = ", ".join(str(s) for s in cfg["seeds"])
    meta.append(f"seeds {seeds} ({len(cfg['seeds'])} per method)")
    lines += ["; ".join(meta) + ".", ""]
    lines += ["| Method | Baseline |", "|:---|:---|", "| base | (the model before RL) |"]
    for m in cfg["methods"]:
        lines.append(f"| {m} | {baselines.get(m, '—')} |")
    lines += ["", "| Suite | K (Pass@K) | n samples per problem | Problems |", "|:---|---:|---:|---:|"]
    for name, s in cfg["suites"].items():
        s = s or {}
        lines.append(f"| {name} | {s.get('k', '—')} | {s.get('n_samples', '—')} | {s.get('problems', '—')} |")
    lines.append("")
    return "\n".join(lines)


def _read(path: Path, what: str) -> str:
    if not Path(path).is_file():
        raise PipelineError(f"{what} {path} does not exist")
    return Path(path).read_text(encoding="utf-8")


def embed_markdown(text: str) -> str:
    """A generated table file without its own ``###`` title (the report gives the heading)."""
    lines = text.strip("\n").splitlines()
    while lines and (lines[0].startswith("#") or not lines[0].strip()):
        lines.pop(0)
    return "\n".join(lines).rstrip() + "\n"


def table_section(path: Path) -> str:
    name = Path(path).stem
    title, caption = TABLE_CAPTIONS.get(name, (f"Comparison table `{name}`", f"Methods compared side by side ({name})."))
    return "\n".join([f"## {title}", "", f"*{caption}* Source: `{Path(path).name}` (also `.csv`, `.tex`).", "",
                      embed_markdown(_read(path, "table file"))])


def relative_link(target: Path, out: Path) -> str:
    rel = os.path.relpath(Path(target).resolve(), Path(out).resolve().parent)
    return Path(rel).as_posix()


def figures_section(figures: list[Path], out: Path) -> str:
    passk, others = [], []
    for fig in figures:
        stem = Path(fig).stem
        (passk if PASSK_RE.match(stem) else others).append(fig)
    known = list(FIGURE_CAPTIONS)
    others.sort(key=lambda f: known.index(Path(f).stem) if Path(f).stem in known else len(known))
    lines = ["## Figures", ""]
    if passk:
        lines += ["### Pass@k curves", "",
                  "*Pass@k against k (log scale) for the base model (black, dashed) and each method; mean over seeds, "
                  "band = min–max over seeds. Where the base curve meets a method's curve is K\\* above.*", ""]
        for fig in passk:
            suite = PASSK_RE.match(Path(fig).stem).group("suite")
            lines += [f"![Pass@k on {suite}]({relative_link(fig, out)})", ""]
    for fig in others:
        stem = Path(fig).stem
        title, caption = FIGURE_CAPTIONS.get(stem, (stem.replace("_", " ").capitalize(), ""))
        lines += [f"### {title}", ""]
        if caption:
            lines += [f"*{caption}*", ""]
        lines += [f"![{title}]({relative_link(fig, out)})", ""]
    if not figures:
        lines += ["No figures were given.", ""]
    return "\n".join(lines)


def _reported_markdown(frame: pd.DataFrame) -> str:
    cols = [c for c in frame.columns if c != "model"]
    numeric = {c: pd.api.types.is_numeric_dtype(frame[c]) for c in cols}
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---:" if numeric[c] else ":---" for c in cols) + "|"]
    for _, row in frame.iterrows():
        cells = []
        for c in cols:
            v = row[c]
            if numeric[c]:
                cells.append("—" if pd.isna(v) else f"{float(v):.1f}")
            else:
                cells.append("—" if pd.isna(v) else str(v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def paper_context_section(specs: list[str]) -> str:
    sources = parse_reported(specs)
    lines = ["## What the papers report (for context)", "",
             "*The papers' own numbers (percent), from the package's copy in `pipeline/reference/` (see its README for "
             "full citations). They come from 7B models on the real benchmarks; a toy-world run reproduces the "
             "qualitative pattern, not these values.*", ""]
    for name, model in sources:
        frame = load_reported(name)
        if "model" in frame.columns:
            frame = frame[frame["model"].astype(str) == model]
            if frame.empty:
                raise PipelineError(f"--paper-context {name}:{model}: no rows for model {model!r}")
        cite = citation(name)
        lines += [f"### {name} — {model}", ""]
        if cite:
            lines += ["> " + cite[0], ""]
        lines += [_reported_markdown(frame.reset_index(drop=True)), ""]
    return "\n".join(lines)


EXPLORATION_FIGURES = {
    "exploration_entropy": (
        "Where the entropy sits (Cheng et al. 2025, Fig. 2 analogue)",
        "Mean token entropy of each pivotal-token category vs all other tokens, reflective vs other segments, rare vs "
        "other RL sentences; one bar per model, 95% bootstrap CIs over responses.",
    ),
    "exploration_embeddings": (
        "Sentence embeddings (Fig. 3 analogue)",
        "2-D PCA of the distinct sentences of the base model (grey) and of each RL model (blue); red: RL sentences "
        "labelled rare (farthest from their k nearest base-model sentences).",
    ),
    "exploration_checkpoints": (
        "Across training snapshots (Fig. 8 analogue)",
        "Pivotal tokens and reflective actions per response, their entropy, response length, n-gram repetition rate, "
        "mean token entropy and accuracy on fixed problems, per training snapshot; mean over seeds, band = min–max.",
    ),
}
EXPLORATION_ORDER = ("summary", "pivotal", "reflective", "rare", "checkpoints")


def exploration_section(tables: list[Path], figures: list[Path], out: Path) -> str:
    """Tables (their own ``###`` titles and notes kept) and figures of the exploration analysis."""
    lines = ["## Exploration analysis (Cheng et al. 2025 §2, Fig. 2, 3, 8)", "",
             "*Where the policy's entropy sits in its responses: per-token entropies of the stored samples recomputed by "
             "the model that wrote them, pivotal-word categories, reflective segments and rare sentences (docs/methods.md §9). "
             "Sources: `exploration_*.md` (also `.csv`).*", ""]

    def rank(path: Path) -> int:
        name = Path(path).stem.removeprefix("exploration_")
        return EXPLORATION_ORDER.index(name) if name in EXPLORATION_ORDER else len(EXPLORATION_ORDER)

    for path in sorted(tables, key=rank):
        lines += [_read(path, "exploration table").strip(), ""]
    for fig in sorted(figures, key=lambda f: list(EXPLORATION_FIGURES).index(Path(f).stem)
                      if Path(f).stem in EXPLORATION_FIGURES else len(EXPLORATION_FIGURES)):
        title, caption = EXPLORATION_FIGURES.get(Path(fig).stem, (Path(fig).stem.replace("_", " ").capitalize(), ""))
        lines += [f"### {title}", ""]
        if caption:
            lines += [f"*{caption}*", ""]
        lines += [f"![{title}]({relative_link(fig, out)})", ""]
    return "\n".join(lines)


MACHINE_STAGES = {".json": "base model (SFT)", ".parquet": "evaluation sampling"}


def recorded_machines(path: Path) -> list[dict]:
    """The machines a stage's output records: ``machine`` of an SFT metrics JSON, the
    Parquet metadata of a samples file; [] for files written before machines were recorded."""
    if path.suffix == ".parquet":
        return machine.from_parquet(path)
    if path.suffix == ".json":
        entry = read_json(path).get("machine")
        return [entry] if entry else []
    raise PipelineError(f"--machines: {path} is neither an SFT metrics .json nor a samples .parquet")


def machines_section(files: list[Path]) -> str:
    """Which machines computed this run's numbers, per stage, with how many files each."""
    counts: dict[tuple[str, str], int] = {}
    kernels: set[str] = set()
    unrecorded = 0
    for path in files:
        found = recorded_machines(Path(path))
        unrecorded += not found
        for entry in found:
            key = (MACHINE_STAGES[Path(path).suffix], machine.label(entry))
            counts[key] = counts.get(key, 0) + 1
            kernels.add(machine.kernels_key(entry))
    rows = ["| stage | machine | files |", "|:---|:---|---:|"]
    rows += [f"| {stage} | {where} | {n} |" for (stage, where), n in counts.items()]
    lines = ["## Where these numbers were computed", "",
             "*Recorded by the stages themselves. Floating-point kernels differ between CPUs (instruction set, and "
             "the vendor paths of MKL and oneDNN), so a rerun reproduces these numbers exactly only where the CPU "
             "fingerprint is the same (and the versions); compare two runs' claims with `scripts/compare_claims.py`.*", ""]
    if counts:
        lines += rows
    if len(kernels) > 1:
        lines += ["", f"**Mixed machines**: this run's files come from {len(kernels)} kinds of CPU kernels "
                      f"({', '.join(sorted(kernels))}: fingerprints, or the instruction set where none was recorded)."]
    if unrecorded:
        lines += ["", f"{unrecorded} of {len(files)} files were written before machines were recorded."]
    return "\n".join(lines) + "\n"


def build_report(
    *,
    tables: list[Path],
    comparisons: Path,
    crossing: Path,
    figures: list[Path],
    cfg: dict,
    paper_context: list[str],
    out: Path,
    exploration_tables: list[Path] | None = None,
    exploration_figures: list[Path] | None = None,
    claims: Path | None = None,
    curves: Path | None = None,
    machines: list[Path] | None = None,
) -> str:
    title = f"# Reproduction report: {cfg.get('run_name') or 'run'}"
    intro = (
        "Entropy-driven exploration in RL for LLM reasoning: the entropy-based advantage of Cheng et al. 2025 "
        "(*Reasoning with Exploration: An Entropy Perspective*, arXiv 2506.14758) and Adaptive Entropy Regularization "
        "of Zhang et al. 2025 (arXiv 2510.10959), against their baselines, evaluated by Pass@K at large K. "
        "Generated by `python -m pipeline report` from the run's tables and figures; every number below is "
        "also in the CSV files beside the Markdown ones."
    )
    parts = [title, "", intro, ""]
    if claims is not None:
        text = _read(claims, "claims file")
        body = text.split("\n", 1)[1] if text.startswith("# ") else text  # its own title gives way to ours
        parts += ["## Which claims of the papers hold here", "",
                  "*Every claim tested on this run, with a verdict computed by the stated rule at the end "
                  "(`claims.md`, also `.csv`).*", "", body.strip(), ""]
    if machines:
        parts.append(machines_section(list(machines)))
    parts.append(config_section(cfg))
    ordered = sorted(tables, key=lambda p: (Path(p).stem != "main", list(TABLE_CAPTIONS).index(Path(p).stem)
                                            if Path(p).stem in TABLE_CAPTIONS else len(TABLE_CAPTIONS)))
    for path in ordered:
        parts.append(table_section(path))
    parts += [
        "## Paired bootstrap: each method vs its baseline",
        "",
        "*Is a method's gain over its baseline more than problem-sampling noise? Δ = method − baseline (percentage "
        "points) on the same problems, with a 95% CI and a two-sided p-value from a paired bootstrap over problems "
        "(seeds averaged per problem). Source: `comparisons.md` (also `.csv`, `.tex`).*",
        "",
        embed_markdown(_read(comparisons, "comparisons file")),
        "## Where the base model catches up: crossing point K*",
        "",
        "*RL raises Pass@k at small k; at large k the base model often matches or overtakes it (Yue et al. 2025). "
        "K\\* is the first k where the base model's Pass@k reaches the method's; a method that widens exploration "
        "pushes K\\* up or removes the crossing ('none'). Source: `crossing.md` (also `.csv`).*",
        "",
        embed_markdown(_read(crossing, "crossing file")),
    ]
    if curves is not None:
        parts += ["## Pass@k and maj@k on the k grid", "",
                  "*The curves behind the crossing point, with the majority vote over k samples' answers beside "
                  "Pass@k. Source: `passk_curves.md` (also `.csv` with the standard deviations over seeds, `.tex`).*",
                  "", embed_markdown(_read(curves, "curves file"))]
    parts.append(figures_section(figures, out))
    if exploration_tables or exploration_figures:
        parts.append(exploration_section(list(exploration_tables or []), list(exploration_figures or []), out))
    if paper_context:
        parts.append(paper_context_section(paper_context))
    return "\n".join(parts).rstrip() + "\n"


def run(args: argparse.Namespace) -> int:
    cfg = parse_config(args.config)
    for fig in [*args.figures, *args.exploration_figures]:
        if not Path(fig).is_file():
            raise PipelineError(f"figure {fig} does not exist")
    text = build_report(
        tables=list(args.tables),
        comparisons=args.comparisons,
        crossing=args.crossing,
        figures=list(args.figures),
        cfg=cfg,
        paper_context=list(args.paper_context),
        out=args.out,
        exploration_tables=list(args.exploration_tables),
        exploration_figures=list(args.exploration_figures),
        claims=args.claims,
        curves=args.curves,
        machines=list(args.machines),
    )
    write_text(args.out, text)
    logger.info("report: wrote %s (%d tables, %d figures)", args.out, len(args.tables), len(args.figures))
    return 0
