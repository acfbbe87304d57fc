"""The curves stage: Pass@k and maj@k at every k of the grid, from score files built by hand."""

import argparse
import json
import math

import pandas as pd
import pytest

from pipeline.errors import PipelineError
from pipeline.report import curves
from pipeline.report.scores import curve_points


def score(method, seed, suite, passk, majk):
    return {"method": method, "seed": seed, "suite": suite, "k_max": max(int(k) for k in passk),
            "pass_at_k": {str(k): v for k, v in passk.items()},
            "maj_at_k": None if majk is None else {str(k): v for k, v in majk.items()}}


ITEMS = [
    ("b.json", score("base", None, "s", {1: 0.1, 2: 0.2, 4: 0.4}, {1: 0.1, 2: 0.1, 4: 0.2})),
    ("g0.json", score("grpo", 0, "s", {1: 0.3, 2: 0.4, 4: 0.5}, {1: 0.3, 2: 0.3, 4: 0.4})),
    ("g1.json", score("grpo", 1, "s", {1: 0.5, 2: 0.6, 4: 0.7}, {1: 0.5, 2: 0.5, 4: 0.6})),
]


def test_means_and_standard_deviations_over_seeds_by_hand():
    table = curves.curves_table(curve_points(ITEMS), ["base", "grpo"], ["s"])
    grpo = table[table["method"] == "grpo"].set_index("k")
    assert grpo.loc[4, "passk_pct"] == pytest.approx(60.0)
    assert grpo.loc[4, "majk_pct"] == pytest.approx(50.0)
    assert grpo.loc[1, "passk_std_pct"] == pytest.approx(100 * math.sqrt(0.02))  # sd of 0.3, 0.5
    base = table[table["method"] == "base"].set_index("k")
    assert math.isnan(base.loc[2, "passk_std_pct"]) and base.loc[2, "majk_pct"] == pytest.approx(10.0)
    assert list(table["n_seeds"]) == [1, 1, 1, 2, 2, 2]
    text = curves.to_markdown(table, ["base", "grpo"], ["s"])
    assert "| grpo | 2 | 40.0 / 40.0 | 50.0 / 40.0 | 60.0 / 50.0 |" in text
    assert "k=1 | k=2 | k=4" in text


def test_a_grader_without_an_extractor_leaves_maj_blank_and_the_grid_is_the_shared_one():
    items = [("b.json", score("base", None, "s", {1: 0.1, 2: 0.2, 4: 0.4, 8: 0.5}, None)),
             ("g.json", score("grpo", 0, "s", {1: 0.3, 2: 0.4, 4: 0.5}, None))]
    table = curves.curves_table(curve_points(items), ["base", "grpo"], ["s"])
    assert sorted(table["k"].unique()) == [1, 2, 4]
    assert table["majk_pct"].isna().all()
    assert "| base | 1 | 10.0 / — |" in curves.to_markdown(table, ["base", "grpo"], ["s"])
    assert "10.0 / --" in curves.to_latex(table, ["base", "grpo"], ["s"])


def test_missing_method_and_duplicate_files_name_the_culprit():
    points = curve_points(ITEMS)
    with pytest.raises(PipelineError, match="'ppo' on suite 's'"):
        curves.curves_table(points, ["base", "ppo"], ["s"])
    with pytest.raises(PipelineError, match="g0.json, again.json"):
        curve_points([*ITEMS, ("again.json", ITEMS[1][1])])
    with pytest.raises(PipelineError, match="maj_at_k must be an object"):
        curve_points([("x.json", {**ITEMS[0][1], "maj_at_k": [0.1]})])


def test_the_stage_writes_markdown_csv_and_latex(tmp_path):
    paths = []
    for name, obj in ITEMS:
        (tmp_path / name).write_text(json.dumps(obj))
        paths.append(tmp_path / name)
    out = tmp_path / "tables"
    assert curves.run(argparse.Namespace(passk=paths, methods=["grpo"], suites=["s"], out_dir=out)) == 0
    csv = pd.read_csv(out / "passk_curves.csv")
    assert list(csv.columns) == list(curves.COLUMNS) and len(csv) == 6
    assert (out / "passk_curves.tex").read_text().count("\\begin{tabular}") == 1
    assert "maj@k" in (out / "passk_curves.md").read_text()
