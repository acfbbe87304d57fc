"""Pass@K tables (pipeline.report.tables) from constructed score JSON files."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.cli import main as cli_main
from pipeline.errors import PipelineError
from pipeline.report import tables

SUITES = {"toy-aime": 256, "toy-math500": 16}


def score_obj(method: str, seed: int | None, suite: str, passk: float, pass1: float, ci=(None, None)) -> dict:
    k_max = SUITES[suite]
    ks = [1, 2, 4, 8, 16] + ([32, 64, 128, 256] if k_max == 256 else [])
    pass_at = {str(k): pass1 + (passk - pass1) * i / (len(ks) - 1) for i, k in enumerate(ks)}
    obj = {
        "model": "base" if seed is None else f"{method}/seed{seed}",
        "method": method,
        "seed": seed,
        "suite": suite,
        "k_max": k_max,
        "n_samples": k_max,
        "n_problems": 30,
        "ks": ks,
        "pass_at_k": pass_at,
        "pass_at_k_ci": {},
        "pass1": pass1,
        "grader": "answer_line",
        "grader_version": "test",
        "n_truncated": 0,
        "n_grader_failures": 0,
    }
    if ci[0] is not None:
        obj["pass_at_k_ci"] = {str(k_max): list(ci[0]), "1": list(ci[1])}
    return obj


# base: one model; grpo: 3 seeds; grpo_entropy_adv: 2 seeds; ppo: 1 seed (CI case)
VALUES = {
    ("base", None): {"toy-aime": (0.60, 0.05), "toy-math500": (0.70, 0.20)},
    ("grpo", 1): {"toy-aime": (0.50, 0.20), "toy-math500": (0.80, 0.40)},
    ("grpo", 2): {"toy-aime": (0.52, 0.22), "toy-math500": (0.82, 0.42)},
    ("grpo", 3): {"toy-aime": (0.54, 0.24), "toy-math500": (0.84, 0.44)},
    ("grpo_entropy_adv", 1): {"toy-aime": (0.65, 0.21), "toy-math500": (0.90, 0.45)},
    ("grpo_entropy_adv", 2): {"toy-aime": (0.67, 0.23), "toy-math500": (0.92, 0.47)},
    ("ppo", 1): {"toy-aime": (0.40, 0.10), "toy-math500": (0.75, 0.30)},
}


def write_inputs(tmp_path: Path, skip: set[tuple] = frozenset()) -> list[Path]:
    paths = []
    for (method, seed), per_suite in VALUES.items():
        for suite, (passk, pass1) in per_suite.items():
            if (method, seed, suite) in skip:
                continue
            ci = ((passk - 0.1, passk + 0.05), (pass1 - 0.02, pass1 + 0.03))
            path = tmp_path / "scores" / f"{method}_{seed}_{suite}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(score_obj(method, seed, suite, passk, pass1, ci)))
            paths.append(path)
    return paths


def records_fixture() -> pd.DataFrame:
    items = []
    for (method, seed), per_suite in VALUES.items():
        for suite, (passk, pass1) in per_suite.items():
            ci = ((passk - 0.1, passk + 0.05), (pass1 - 0.02, pass1 + 0.03))
            items.append((f"{method}-{seed}-{suite}", score_obj(method, seed, suite, passk, pass1, ci)))
    return tables.records_from_objects(items)


def cell(summary: pd.DataFrame, method: str, suite: str, metric: str) -> pd.Series:
    row = summary[(summary["method"] == method) & (summary["suite"] == suite) & (summary["metric"] == metric)]
    assert len(row) == 1
    return row.iloc[0]


def test_summary_values():
    summary = tables.summarise(records_fixture(), ["grpo", "grpo_entropy_adv", "ppo"], ["toy-aime", "toy-math500"])
    assert list(dict.fromkeys(summary["method"])) == ["base", "grpo", "grpo_entropy_adv", "ppo"]
    grpo = cell(summary, "grpo", "toy-aime", "pass@K")
    assert grpo["k"] == 256 and grpo["n_seeds"] == 3 and grpo["seeds"] == 3
    assert grpo["mean_pct"] == pytest.approx(52.0)
    assert grpo["std_pct"] == pytest.approx(np.std([50, 52, 54], ddof=1))  # sample std = 2.0
    assert math.isnan(grpo["ci_lo_pct"]) and math.isnan(grpo["ci_hi_pct"])
    ppo = cell(summary, "ppo", "toy-math500", "pass@1")
    assert ppo["k"] == 1 and ppo["n_seeds"] == 1
    assert ppo["mean_pct"] == pytest.approx(30.0)
    assert math.isnan(ppo["std_pct"])
    assert (ppo["ci_lo_pct"], ppo["ci_hi_pct"]) == pytest.approx((28.0, 33.0))


def test_best_per_column_with_ties():
    summary = tables.summarise(records_fixture(), ["grpo", "grpo_entropy_adv", "ppo"], ["toy-aime", "toy-math500"])
    best = {
        (suite, metric): sorted(group.loc[group["best"], "method"])
        for (suite, metric), group in summary.groupby(["suite", "metric"])
    }
    assert best == {
        ("toy-aime", "pass@K"): ["grpo_entropy_adv"],  # 66.0 beats base 60.0
        ("toy-aime", "pass@1"): ["grpo", "grpo_entropy_adv"],  # 22.0 vs 22.0: a tie, both bold
        ("toy-math500", "pass@K"): ["grpo_entropy_adv"],
        ("toy-math500", "pass@1"): ["grpo_entropy_adv"],
    }


def test_cell_formatting():
    summary = tables.summarise(records_fixture(), ["grpo", "ppo"], ["toy-aime"])
    assert tables.cell_text(cell(summary, "grpo", "toy-aime", "pass@K")) == "52.0 ± 2.0"
    assert tables.cell_text(cell(summary, "ppo", "toy-aime", "pass@K")) == "40.0 [30.0, 45.0]"
    assert tables.cell_text(cell(summary, "base", "toy-aime", "pass@1")) == "5.0 [3.0, 8.0]"
    assert tables.cell_text(cell(summary, "grpo", "toy-aime", "pass@K"), pm="$\\pm$") == "52.0 $\\pm$ 2.0"


def test_single_seed_without_ci_shows_bare_value():
    obj = score_obj("base", None, "toy-aime", 0.5, 0.1)  # no pass_at_k_ci (score --bootstrap 0)
    obj2 = score_obj("ppo", 4, "toy-aime", 0.25, 0.125)
    summary = tables.summarise(tables.records_from_objects([("a", obj), ("b", obj2)]), ["ppo"], ["toy-aime"])
    assert tables.cell_text(cell(summary, "ppo", "toy-aime", "pass@1")) == "12.5"


def test_markdown_layout_and_bold():
    summary = tables.summarise(records_fixture(), ["grpo", "grpo_entropy_adv"], ["toy-aime", "toy-math500"])
    md = tables.to_markdown(summary, ["grpo", "grpo_entropy_adv"], ["toy-aime", "toy-math500"])
    lines = [ln for ln in md.splitlines() if ln.startswith("|")]
    assert lines[0] == (
        "| Method | Seeds | toy-aime Pass@256 | toy-aime Pass@1 | toy-math500 Pass@16 | toy-math500 Pass@1 |"
    )
    rows = lines[2:]
    assert [r.split("|")[1].strip() for r in rows] == ["base", "grpo", "grpo_entropy_adv"]
    assert [r.split("|")[2].strip() for r in rows] == ["1", "3", "2"]
    adv = [c.strip() for c in rows[2].split("|")[1:-1]]
    assert adv[2] == "**66.0 ± 1.4**"
    base = [c.strip() for c in rows[0].split("|")[1:-1]]
    assert base[2] == "60.0 [50.0, 65.0]"


def test_latex_output():
    summary = tables.summarise(records_fixture(), ["grpo", "grpo_entropy_adv"], ["toy-aime", "toy-math500"])
    tex = tables.to_latex(summary, ["grpo", "grpo_entropy_adv"], ["toy-aime", "toy-math500"])
    assert "\\begin{tabular}" in tex and "\\end{tabular}" in tex
    assert "\\textbf{66.0 $\\pm$ 1.4}" in tex
    assert "grpo\\_entropy\\_adv" in tex  # underscores escaped
    assert "\\multicolumn{2}{c}{toy-aime}" in tex
    assert tex.count("\\\\") == 2 + 3  # two header rows + three body rows


def test_csv_is_numeric(tmp_path):
    summary = tables.summarise(records_fixture(), ["grpo", "ppo"], ["toy-aime", "toy-math500"])
    text = tables.render_all(summary, ["grpo", "ppo"], ["toy-aime", "toy-math500"])["csv"]
    (tmp_path / "t.csv").write_text(text)
    frame = pd.read_csv(tmp_path / "t.csv")
    assert list(frame.columns) == list(tables.SUMMARY_COLUMNS)
    for col in ("mean_pct", "std_pct", "ci_lo_pct", "ci_hi_pct"):
        assert pd.api.types.is_float_dtype(frame[col]), col
    assert pd.api.types.is_integer_dtype(frame["n_seeds"]) and pd.api.types.is_integer_dtype(frame["k"])
    assert len(frame) == 3 * 2 * 2
    grpo = frame[(frame["method"] == "grpo") & (frame["suite"] == "toy-aime") & (frame["metric"] == "pass@K")].iloc[0]
    assert grpo["mean_pct"] == pytest.approx(52.0) and grpo["std_pct"] == pytest.approx(2.0) and grpo["n_seeds"] == 3


def test_missing_method_suite_is_named():
    records = records_fixture()
    records = records[~((records["method"] == "ppo") & (records["suite"] == "toy-math500"))]
    with pytest.raises(PipelineError, match="'ppo'.*'toy-math500'"):
        tables.summarise(records, ["grpo", "ppo"], ["toy-aime", "toy-math500"])
    with pytest.raises(PipelineError, match="'nope'"):
        tables.summarise(records_fixture(), ["nope"], ["toy-aime"])
    no_base = records_fixture()
    no_base = no_base[no_base["method"] != "base"]
    with pytest.raises(PipelineError, match="'base'"):
        tables.summarise(no_base, ["grpo"], ["toy-aime"])


def test_inconsistent_seeds_and_duplicates_rejected():
    records = records_fixture()
    partial = records[~((records["method"] == "grpo") & (records["seed"] == 3) & (records["suite"] == "toy-aime"))]
    with pytest.raises(PipelineError, match="different seeds"):
        tables.summarise(partial, ["grpo"], ["toy-aime", "toy-math500"])
    obj = score_obj("grpo", 1, "toy-aime", 0.5, 0.2)
    with pytest.raises(PipelineError, match="two Pass@k files"):
        tables.records_from_objects([("x.json", obj), ("y.json", obj)])
    with pytest.raises(PipelineError, match="bad.json.*'pass1'"):
        tables.records_from_objects([("bad.json", {k: v for k, v in obj.items() if k != "pass1"})])


def test_stage_writes_all_tables(tmp_path):
    paths = write_inputs(tmp_path)
    out = tmp_path / "tables"
    argv = ["tables", "--passk", *map(str, paths), "--methods", "grpo", "grpo_entropy_adv", "ppo",
            "--suites", "toy-aime", "toy-math500", "--out-dir", str(out),
            "--comparisons", json.dumps({"table3": ["grpo_entropy_adv", "grpo"]})]
    assert cli_main(argv) == 0
    for name in ("main", "table3"):
        for suffix in ("md", "csv", "tex"):
            assert (out / f"{name}.{suffix}").stat().st_size > 0
    main_csv = pd.read_csv(out / "main.csv")
    assert list(dict.fromkeys(main_csv["method"])) == ["base", "grpo", "grpo_entropy_adv", "ppo"]
    t3 = pd.read_csv(out / "table3.csv")
    assert list(dict.fromkeys(t3["method"])) == ["base", "grpo_entropy_adv", "grpo"]
    assert "\\textbf" in (out / "main.tex").read_text()
    assert "**" in (out / "main.md").read_text()


def test_stage_missing_combination_exits_with_message(tmp_path, capsys):
    paths = write_inputs(tmp_path, skip={("ppo", 1, "toy-aime")})
    argv = ["tables", "--passk", *map(str, paths), "--methods", "grpo", "ppo",
            "--suites", "toy-aime", "toy-math500", "--out-dir", str(tmp_path / "t")]
    assert cli_main(argv) == 2
    err = capsys.readouterr().err
    assert "'ppo'" in err and "'toy-aime'" in err
    assert not (tmp_path / "t" / "main.md").exists()


def test_stage_rejects_bad_comparisons(tmp_path, capsys):
    paths = write_inputs(tmp_path)
    base_argv = ["tables", "--passk", *map(str, paths), "--methods", "grpo", "--suites", "toy-aime",
                 "--out-dir", str(tmp_path / "t")]
    assert cli_main(base_argv + ["--comparisons", "{not json"]) == 2
    assert "--comparisons" in capsys.readouterr().err
    assert cli_main(base_argv + ["--comparisons", json.dumps({"../evil": ["grpo"]})]) == 2
    assert "../evil" in capsys.readouterr().err
