"""Helpers for ``rules/report.smk``: the config slices the report rules pass as params.

Pure functions of the resolved config (no Snakemake import), so ``snakemake --lint``
keeps the rule file free of function definitions and the logic is testable. Every
return value is a plain builtin (str, list, dict) so Snakemake tracks it as a param.
"""

from __future__ import annotations

import shlex
from pathlib import Path

DEFAULT_PAPER_CONTEXT = ("cheng2025_table2:Qwen2.5-7B", "cheng2025_table3:Qwen2.5-7B")


def method_baselines(methods: dict[str, dict], baseline_of: dict[str, str]) -> dict[str, str]:
    """Each configured method's baseline (``baseline_of`` of its preset) when that baseline is configured too."""
    out = {}
    for name, spec in methods.items():
        baseline = baseline_of.get(spec.get("preset", name))
        if baseline is not None and baseline != name and baseline in methods:
            out[name] = baseline
    return out


def report_settings(config: dict) -> dict:
    """The optional ``report:`` config section with its defaults filled in.

    ``reported``: NAME:MODEL specs shown beside our numbers (paper-scale runs);
    ``suite_map``: our suite -> reference column prefix; ``bootstrap``/``seed``: the
    paired bootstrap; ``paper_context``: reported numbers listed in REPORT.md.
    """
    section = dict(config.get("report") or {})
    return {
        "reported": [str(s) for s in section.get("reported", [])],
        "suite_map": dict(section.get("suite_map", {})),
        "bootstrap": int(section.get("bootstrap", 10000)),
        "seed": int(section.get("seed", 0)),
        "paper_context": [str(s) for s in section.get("paper_context", DEFAULT_PAPER_CONTEXT)],
    }


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
