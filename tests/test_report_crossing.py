"""Base-vs-RL crossing point K* (pipeline.report.crossing) on constructed Pass@k curves."""

from __future__ import annotations

import argparse
import json

import pandas as pd
import pytest

from pipeline.errors import PipelineError
from pipeline.report import crossing
from pipeline.report.scores import curve_points

KS = [1, 2, 4, 8, 16]


def curve_obj(method: str, seed, suite: str, values: list[float]) -> dict:
    return {
        "model": "base" if seed is None else f"{method}/seed{seed}",
        "method": method, "seed": seed, "suite": suite, "k_max": KS[len(values) - 1], "ks": KS[: len(values)],
        "pass_at_k": {str(k): v for k, v in zip(KS, values)}, "pass1": values[0],
    }


def curves(objs: list[dict]) -> pd.DataFrame:
    return curve_points([(f"f{i}", o) for i, o in enumerate(objs)])


def run_stage(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    crossing.add_arguments(parser)
    return crossing.run(parser.parse_args(argv))


def test_crossing_point_on_known_curves():
    ks = [1, 2, 4, 8, 16]
    base = [0.10, 0.30, 0.60, 0.90, 0.95]
    assert crossing.crossing_point(ks, base, [0.40, 0.50, 0.60, 0.80, 0.85]) == 4  # equal at 4 counts
    assert crossing.crossing_point(ks, base, [0.40, 0.50, 0.70, 0.85, 0.90]) == 8
    assert crossing.crossing_point(ks, base, [0.40, 0.50, 0.70, 0.95, 0.99]) is None  # RL ahead up to K
    assert crossing.crossing_point(ks, base, [0.05, 0.50, 0.70, 0.95, 0.99]) == 1  # not better even at Pass@1
    # unsorted input is sorted by k
    assert crossing.crossing_point([16, 1, 4, 2, 8], [0.95, 0.1, 0.6, 0.3, 0.9], [0.9, 0.4, 0.7, 0.5, 0.85]) == 8
    # float noise at 1.0 does not hide a crossing
    assert crossing.crossing_point([1, 2], [0.5, 1.0], [0.6, 1.0 + 1e-12]) == 2
    with pytest.raises(PipelineError):
        crossing.crossing_point([1, 2], [0.1], [0.2, 0.3])


def test_method_curve_is_the_mean_over_seeds():
    objs = [
        curve_obj("base", None, "s", [0.10, 0.30, 0.60, 0.90]),
        curve_obj("grpo", 0, "s", [0.40, 0.50, 0.70, 0.80]),
        curve_obj("grpo", 1, "s", [0.40, 0.50, 0.50, 0.80]),  # mean at k=4: 0.60 = base
        curve_obj("adv", 0, "s", [0.40, 0.60, 0.80, 0.95]),
        curve_obj("adv", 1, "s", [0.40, 0.60, 0.70, 0.93]),
    ]
    table = crossing.crossing_table(curves(objs), ["grpo", "adv"], ["s"]).set_index("method")
    assert table.loc["grpo", "k_star"] == 4
    assert table.loc["grpo", "base_pct_at_k_star"] == pytest.approx(60.0)
    assert table.loc["grpo", "method_pct_at_k_star"] == pytest.approx(60.0)
    assert table.loc["grpo", "n_seeds"] == 2 and table.loc["grpo", "k_max"] == 8
    assert table.loc["adv", "k_star"] == "none"
    assert pd.isna(table.loc["adv", "base_pct_at_k_star"])
    assert table.loc["adv", "diff_at_k_max_pp"] == pytest.approx(100 * (0.94 - 0.90))
    assert table.loc["grpo", "diff_at_k_max_pp"] == pytest.approx(-10.0)


def test_missing_base_is_an_error():
    with pytest.raises(PipelineError, match="'base'"):
        crossing.crossing_table(curves([curve_obj("grpo", 0, "s", [0.1, 0.2])]), ["grpo"], ["s"])


def test_stage_writes_crossing_tables(tmp_path):
    objs = [
        curve_obj("base", None, "toy-aime", [0.02, 0.05, 0.10, 0.20, 0.40]),
        curve_obj("grpo", 0, "toy-aime", [0.10, 0.15, 0.20, 0.25, 0.30]),
        curve_obj("grpo_entropy_adv", 0, "toy-aime", [0.12, 0.20, 0.28, 0.36, 0.44]),
        curve_obj("base", None, "toy-math500", [0.50, 0.70, 0.85]),
        curve_obj("grpo", 0, "toy-math500", [0.60, 0.70, 0.75]),
        curve_obj("grpo_entropy_adv", 0, "toy-math500", [0.62, 0.75, 0.86]),
    ]
    paths = []
    for i, o in enumerate(objs):
        p = tmp_path / f"{i}.json"
        p.write_text(json.dumps(o))
        paths.append(p)
    out = tmp_path / "tables"
    assert run_stage(["--passk", *map(str, paths), "--methods", "grpo", "grpo_entropy_adv",
                      "--suites", "toy-aime", "toy-math500", "--out-dir", str(out)]) == 0
    csv = pd.read_csv(out / "crossing.csv", dtype={"k_star": str})
    assert list(csv.columns) == list(crossing.COLUMNS)
    got = {(r.method, r.suite): r.k_star for r in csv.itertuples()}
    assert got == {("grpo", "toy-aime"): "16", ("grpo", "toy-math500"): "2",
                   ("grpo_entropy_adv", "toy-aime"): "none", ("grpo_entropy_adv", "toy-math500"): "none"}
    md = (out / "crossing.md").read_text()
    assert "| grpo | toy-aime | 16 | 16 | 40.0 | 30.0 | -10.0 | 1 |" in md
    assert "| grpo_entropy_adv | toy-math500 | 4 | none | — | — | +1.0 | 1 |" in md
