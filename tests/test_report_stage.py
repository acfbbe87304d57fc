"""Stage ``report`` (pipeline.report.report): REPORT.md from constructed tables, analyses and figures.

The last test runs the whole report chain (tables -> compare -> crossing -> figures -> report)
on constructed score files, as the Snakefile does.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.errors import PipelineError
from pipeline.eval.score import build_summary
from pipeline.report import compare, crossing, report, tables

CFG = {
    "run_name": "toy-default", "world": "toy", "methods": ["grpo", "grpo_entropy_adv", "grpo_entropy_reg"],
    "baselines": {"grpo_entropy_adv": "grpo", "grpo_entropy_reg": "grpo"}, "seeds": [0, 1],
    "suites": {"toy-aime": {"k": 256, "n_samples": 256, "problems": 30}, "toy-math500": {"k": 16, "n_samples": 16,
                                                                                         "problems": 500}},
}


def run_stage(module, argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    module.add_arguments(parser)
    return module.run(parser.parse_args(argv))


def constructed_inputs(root: Path) -> dict:
    results = root / "results"
    (results / "tables").mkdir(parents=True)
    (results / "figures").mkdir(parents=True)
    (results / "tables" / "main.md").write_text("| Method | Seeds |\n|:---|---:|\n| base | 1 |\n\nValues in %.\n")
    (results / "tables" / "table3.md").write_text("### table3\n\n| Method | Seeds |\n|:---|---:|\n| grpo_entropy_reg | 2 |\n")
    (results / "tables" / "comparisons.md").write_text("| Method | Baseline |\n|:---|:---|\n| grpo_entropy_adv | grpo |\n")
    (results / "tables" / "crossing.md").write_text("| Method | Suite | K | K* |\n|:---|:---|---:|---:|\n| grpo | toy-aime | 256 | 64 |\n")
    figs = []
    for name in ("passk_toy-aime", "passk_toy-math500", "training_dynamics", "entropy_control"):
        p = results / "figures" / f"{name}.png"
        p.write_bytes(b"\x89PNG\r\n\x1a\n")
        figs.append(p)
    return {"results": results, "figures": figs}


def report_argv(inp: dict, out: Path, tables_order=("table3", "main"), context=("cheng2025_table2:Qwen2.5-7B",)):
    t = inp["results"] / "tables"
    argv = ["--tables", *[str(t / f"{n}.md") for n in tables_order], "--comparisons", str(t / "comparisons.md"),
            "--crossing", str(t / "crossing.md"), "--figures", *map(str, inp["figures"]), "--config", json.dumps(CFG),
            "--out", str(out)]
    if context:
        argv += ["--paper-context", *context]
    return argv


def headings(text: str) -> list[str]:
    return [line for line in text.splitlines() if re.match(r"^#{1,3} ", line)]


def test_report_sections_and_image_links(tmp_path):
    inp = constructed_inputs(tmp_path)
    out = inp["results"] / "REPORT.md"
    assert run_stage(report, report_argv(inp, out)) == 0
    text = out.read_text()
    h2 = [h for h in headings(text) if h.startswith("## ")]
    assert h2 == [
        "## Run configuration",
        "## Main results (Cheng et al. 2025, Table 2 layout)",  # main first although given second
        "## Entropy regularization vs entropy-based advantage (Cheng et al. 2025, Table 3 layout)",
        "## Paired bootstrap: each method vs its baseline",
        "## Where the base model catches up: crossing point K*",
        "## Figures",
        "## What the papers report (for context)",
    ]
    assert text.startswith("# Reproduction report: toy-default\n")
    # the embedded table lost its own "### table3" title, kept its rows
    assert "### table3" not in text and "| grpo_entropy_reg | 2 |" in text
    assert "| grpo_entropy_adv | grpo |" in text and "| grpo | toy-aime | 256 | 64 |" in text
    # relative image links, readable on GitHub from results/
    for link in ("![Pass@k on toy-aime](figures/passk_toy-aime.png)", "![Pass@k on toy-math500](figures/passk_toy-math500.png)",
                 "(figures/training_dynamics.png)", "(figures/entropy_control.png)"):
        assert link in text
    # config summary: methods with baselines, seeds, suites with K
    assert "| grpo_entropy_adv | grpo |" in text and "| grpo | — |" in text
    assert "seeds 0, 1 (2 per method)" in text
    assert "| toy-aime | 256 | 256 | 30 |" in text and "| toy-math500 | 16 | 16 | 500 |" in text
    # the paper's numbers for context, with the citation
    assert "| grpo_entropy_adv | 53.3 | 11.8 | 56.7 | 12.6 | 91.6 | 57.8 | 74.0 | 58.5 | paper |" in text
    assert "2506.14758" in text


def test_links_are_relative_to_the_report(tmp_path):
    inp = constructed_inputs(tmp_path)
    out = tmp_path / "elsewhere" / "R.md"
    assert run_stage(report, report_argv(inp, out, context=())) == 0
    text = out.read_text()
    assert "(../results/figures/training_dynamics.png)" in text
    assert "What the papers report" not in text


def test_missing_input_is_an_error(tmp_path):
    inp = constructed_inputs(tmp_path)
    (inp["results"] / "tables" / "crossing.md").unlink()
    with pytest.raises(PipelineError, match="crossing file"):
        run_stage(report, report_argv(inp, tmp_path / "R.md"))
    assert not (tmp_path / "R.md").exists()
    with pytest.raises(PipelineError, match="--config"):
        report.parse_config('{"methods": []}')


# --------------------------------------------------------------------------- the whole report chain

def score_obj(model: str, suite: str, counts, n: int, k_max: int) -> dict:
    ids = [f"{suite}-{i}" for i in range(len(counts))]
    verdicts = pd.DataFrame(
        {
            "problem_id": np.repeat(ids, n),
            "correct": np.concatenate([[True] * c + [False] * (n - c) for c in counts]),
            "finish_reason": "stop",
            "grader_status": "ok",
        }
    )
    problems = pd.DataFrame({"id": ids, "difficulty": [1] * len(ids)})
    return build_summary(problems=problems, verdicts=verdicts, n=n, model=model, suite=suite, k_max=k_max,
                         grader="answer_line", n_boot=100, seed=0)


def test_report_chain_on_constructed_scores(tmp_path):
    from pipeline.report import figures

    rng = np.random.default_rng(0)
    results = tmp_path / "results"
    paths = []
    suites = {"toy-aime": (30, 32), "toy-math500": (50, 8)}  # problems, n = K
    # base: rarely right but often enough to solve most at large k; grpo sharper; adv sharper and broader
    p_correct = {"base": 0.06, "grpo/seed0": 0.12, "grpo/seed1": 0.12, "grpo_entropy_adv/seed0": 0.2,
                 "grpo_entropy_adv/seed1": 0.2}
    for suite, (n_problems, n) in suites.items():
        difficulty = rng.uniform(0.2, 1.8, size=n_problems)
        for model, p in p_correct.items():
            solvable = rng.uniform(size=n_problems) < (0.55 if model.startswith("grpo/") else 0.8)
            counts = rng.binomial(n, np.clip(p * difficulty, 0, 1) * solvable)
            path = results / "scores" / model / f"{suite}.passk.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(score_obj(model, suite, counts.tolist(), n, n)))
            paths.append(path)
    tdir = results / "tables"
    baselines = json.dumps({"grpo_entropy_adv": "grpo"})
    common = ["--passk", *map(str, paths), "--suites", *suites]
    assert run_stage(tables, common + ["--methods", "grpo", "grpo_entropy_adv", "--out-dir", str(tdir),
                                       "--baselines", baselines]) == 0
    assert run_stage(compare, common + ["--baselines", baselines, "--bootstrap", "1000", "--out-dir", str(tdir)]) == 0
    assert run_stage(crossing, common + ["--methods", "grpo", "grpo_entropy_adv", "--out-dir", str(tdir)]) == 0
    assert run_stage(figures, ["--passk", *map(str, paths), "--methods", "grpo", "grpo_entropy_adv",
                               "--out-dir", str(results / "figures")]) == 0
    figs = sorted((results / "figures").glob("*.png"))
    cfg = dict(CFG, methods=["grpo", "grpo_entropy_adv"], baselines={"grpo_entropy_adv": "grpo"},
               suites={s: {"k": n, "n_samples": n, "problems": p} for s, (p, n) in suites.items()})
    out = results / "REPORT.md"
    assert run_stage(report, ["--tables", str(tdir / "main.md"), "--comparisons", str(tdir / "comparisons.md"),
                              "--crossing", str(tdir / "crossing.md"), "--figures", *map(str, figs),
                              "--config", json.dumps(cfg), "--out", str(out)]) == 0
    text = out.read_text()
    assert "| Δ vs grpo |" in text
    assert "| grpo_entropy_adv | grpo | toy-aime | Pass@32 |" in text
    assert "| grpo | toy-aime | 32 |" in text
    assert "![Pass@k on toy-math500](figures/passk_toy-math500.png)" in text
    # the comparison's numbers are the tables' numbers
    main = pd.read_csv(tdir / "main.csv")
    comp = pd.read_csv(tdir / "comparisons.csv")
    row = comp[(comp["suite"] == "toy-aime") & (comp["metric"] == "pass@K")].iloc[0]
    d = main[(main["method"] == "grpo_entropy_adv") & (main["suite"] == "toy-aime") & (main["metric"] == "pass@K")]
    assert row["diff_pp"] == pytest.approx(d["delta_pp"].iloc[0], abs=1e-6)
    assert row["ci_lo"] <= row["diff_pp"] <= row["ci_hi"]
