"""Table 2 / Table 3 layout extensions (pipeline.report.tables): deltas vs baseline, reported column group."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from pipeline.cli import main as cli_main
from pipeline.errors import PipelineError
from pipeline.report import tables

# our suites named like the paper's benchmarks (a paper-config run); K as in Cheng et al.
K = {"aime25": 256, "math500": 16}
# (method, seed) -> suite -> (Pass@K, Pass@1) as fractions
VALUES = {
    ("base", None): {"aime25": (0.500, 0.020), "math500": (0.880, 0.540)},
    ("grpo", 0): {"aime25": (0.480, 0.100), "math500": (0.650, 0.550)},
    ("grpo", 1): {"aime25": (0.500, 0.110), "math500": (0.660, 0.560)},
    ("grpo_entropy_adv", 0): {"aime25": (0.530, 0.120), "math500": (0.740, 0.580)},
    ("grpo_entropy_adv", 1): {"aime25": (0.550, 0.110), "math500": (0.750, 0.590)},
    ("grpo_entropy_reg", 0): {"aime25": (0.500, 0.090), "math500": (0.700, 0.570)},
    ("grpo_entropy_reg", 1): {"aime25": (0.500, 0.094), "math500": (0.710, 0.574)},
}
BASELINES = {"grpo_entropy_adv": "grpo", "grpo_entropy_reg": "grpo", "ppo_entropy_adv": "ppo"}
METHODS = ["grpo", "grpo_entropy_adv", "grpo_entropy_reg"]
SUITES = ["aime25", "math500"]


def score_obj(method, seed, suite, passk, pass1):
    k_max = K[suite]
    ks = [2**i for i in range(k_max.bit_length())]
    return {
        "model": "base" if seed is None else f"{method}/seed{seed}",
        "method": method, "seed": seed, "suite": suite, "k_max": k_max, "n_samples": k_max, "n_problems": 30,
        "ks": ks,
        "pass_at_k": {str(k): pass1 + (passk - pass1) * i / (len(ks) - 1) for i, k in enumerate(ks)},
        "pass_at_k_ci": {str(k_max): [passk - 0.1, passk + 0.1], "1": [pass1 - 0.01, pass1 + 0.01]},
        "pass1": pass1,
    }


def records():
    return tables.records_from_objects(
        [(f"{m}-{s}-{suite}", score_obj(m, s, suite, *v)) for (m, s), per in VALUES.items() for suite, v in per.items()]
    )


def write_inputs(tmp_path: Path) -> list[Path]:
    paths = []
    for (m, s), per in VALUES.items():
        for suite, v in per.items():
            p = tmp_path / "scores" / f"{m}_{s}_{suite}.json"
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(json.dumps(score_obj(m, s, suite, *v)))
            paths.append(p)
    return paths


def md_rows(md: str) -> list[list[str]]:
    return [[c.strip() for c in line.split("|")[1:-1]] for line in md.splitlines() if line.startswith("|")]


def test_signed_formatting():
    assert tables.signed(14.0) == "+14.0"
    assert tables.signed(-0.44) == "-0.4"
    assert tables.signed(-0.04) == "0.0"  # rounds to zero: no sign
    assert tables.signed(0.0) == "0.0"
    assert tables.signed(0.06) == "+0.1"


def test_delta_values_are_differences_of_seed_means():
    summary = tables.summarise(records(), METHODS, SUITES)
    d = tables.deltas(summary, tables.table_baselines(METHODS, BASELINES))
    got = {(r.method, r.suite, r.metric): r.delta_pp for r in d.itertuples()}
    assert set(got) == {(m, s, t) for m in ("grpo_entropy_adv", "grpo_entropy_reg") for s in SUITES
                        for t in ("pass@K", "pass@1")}
    assert got[("grpo_entropy_adv", "aime25", "pass@K")] == pytest.approx(54.0 - 49.0)
    assert got[("grpo_entropy_adv", "math500", "pass@1")] == pytest.approx(58.5 - 55.5)
    assert got[("grpo_entropy_reg", "aime25", "pass@1")] == pytest.approx(9.2 - 10.5)
    assert (d["baseline"] == "grpo").all()


def test_markdown_delta_lines_under_each_method():
    summary = tables.summarise(records(), METHODS, SUITES)
    md = tables.to_markdown(summary, METHODS, SUITES, baselines=BASELINES)
    rows = md_rows(md)
    assert rows[0] == ["Method", "Seeds", "aime25 Pass@256", "aime25 Pass@1", "math500 Pass@16", "math500 Pass@1"]
    body = rows[2:]
    assert [r[0] for r in body] == ["base", "grpo", "grpo_entropy_adv", "Δ vs grpo", "grpo_entropy_reg", "Δ vs grpo"]
    assert body[3] == ["Δ vs grpo", "", "+5.0", "+1.0", "+9.0", "+3.0"]
    assert body[5] == ["Δ vs grpo", "", "+1.0", "-1.3", "+5.0", "+1.7"]
    # cells of the method rows keep their format and bold
    assert body[2][2] == "**54.0 ± 1.4**"
    assert body[1][2] == "49.0 ± 1.4"
    assert body[0][2] == "50.0 [40.0, 60.0]"
    assert "Δ vs <baseline>" in md


def test_no_delta_line_without_the_baseline_in_the_table():
    summary = tables.summarise(records(), ["grpo_entropy_adv"], SUITES)
    md = tables.to_markdown(summary, ["grpo_entropy_adv"], SUITES, baselines=BASELINES)
    assert "Δ vs" not in "\n".join(r[0] for r in md_rows(md))


def test_latex_and_csv_with_deltas():
    summary = tables.summarise(records(), METHODS, SUITES)
    tex = tables.to_latex(summary, METHODS, SUITES, baselines=BASELINES)
    assert "\\quad $\\Delta$ vs grpo &  & $+5.0$ & $+1.0$ & $+9.0$ & $+3.0$ \\\\" in tex
    assert tex.count("\\\\") == 2 + 6  # suite row and Pass@k row, then 6 body rows
    frame = tables.to_csv_frame(summary, baselines=BASELINES)
    assert list(frame.columns) == list(tables.SUMMARY_COLUMNS) + ["baseline", "delta_pp"]
    adv = frame[(frame["method"] == "grpo_entropy_adv") & (frame["suite"] == "aime25") & (frame["metric"] == "pass@K")]
    assert adv["delta_pp"].iloc[0] == pytest.approx(5.0) and adv["baseline"].iloc[0] == "grpo"
    base = frame[frame["method"] == "base"]
    assert base["delta_pp"].isna().all()


def test_reported_group_from_the_papers_tables():
    summary = tables.summarise(records(), METHODS, SUITES)
    reported = tables.reported_cells(
        [("cheng2025_table2", "Qwen2.5-7B"), ("cheng2025_table3", "Qwen2.5-7B")],
        {"aime25": "aime25", "math500": "math500"}, SUITES, K,
    )
    md = tables.to_markdown(summary, METHODS, SUITES, baselines=BASELINES, reported=reported, reported_note_text="NOTE-R")
    rows = md_rows(md)
    assert rows[0][6:] == ["reported aime25 Pass@256", "reported aime25 Pass@1", "reported math500 Pass@16",
                           "reported math500 Pass@1"]
    body = {r[0] if not r[0].startswith("Δ") else f"Δ-{i}": r for i, r in enumerate(rows[2:])}
    assert body["base"][6:] == ["50.0", "2.2", "88.8", "54.4"]
    assert body["grpo_entropy_adv"][6:] == ["53.3", "11.8", "74.0", "58.5"]
    # grpo_entropy_reg is only in Table 3: the second source fills it
    assert body["grpo_entropy_reg"][6:] == ["50.0", "9.3", "70.4", "57.4"]
    # reported deltas: 53.3 - 50.0 etc.
    assert body["Δ-3"][6:] == ["+3.3", "+1.1", "+8.6", "+3.2"]
    assert "NOTE-R" in md
    tex = tables.to_latex(summary, METHODS, SUITES, reported=reported)
    assert "\\multicolumn{4}{c}{Reproduced} & \\multicolumn{4}{c}{Reported}" in tex
    frame = tables.to_csv_frame(summary, baselines=BASELINES, reported=reported)
    assert list(frame.columns)[-5:] == ["delta_pp", "reported_k", "reported_pct", "reported_source", "reported_delta_pp"]
    row = frame[(frame["method"] == "grpo_entropy_reg") & (frame["suite"] == "aime25") & (frame["metric"] == "pass@1")]
    assert row["reported_pct"].iloc[0] == pytest.approx(9.3)
    assert row["reported_source"].iloc[0] == "cheng2025_table3:Qwen2.5-7B"
    assert row["reported_delta_pp"].iloc[0] == pytest.approx(9.3 - 10.7)


def test_methods_the_paper_does_not_report_show_a_dash():
    summary = tables.summarise(records(), METHODS, SUITES)
    reported = tables.reported_cells([("cheng2025_table2", "Qwen2.5-7B")], {"aime25": "aime25"}, SUITES, K)
    rows = md_rows(tables.to_markdown(summary, METHODS, SUITES, reported=reported))
    assert rows[0][6:] == ["reported aime25 Pass@256", "reported aime25 Pass@1"]  # math500 not mapped: no columns
    reg = next(r for r in rows if r[0] == "grpo_entropy_reg")
    assert reg[6:] == ["—", "—"]


def test_reported_k_differs_from_ours_and_explicit_columns(tmp_path):
    our_k = {"aime25": 64, "math500": 16}
    rep = tables.reported_cells([("cheng2025_table2", "Qwen2.5-7B")], {"aime25": "aime25"}, ["aime25"], our_k)
    assert set(rep.loc[rep["metric"] == "pass@K", "k"]) == {256}  # the paper's K labels the column
    explicit = tables.reported_cells(
        [("cui2025_clipcov_table", "Qwen2.5-7B")], {"aime25": {"pass@1": "aime25"}}, ["aime25"], our_k
    )
    assert set(explicit["metric"]) == {"pass@1"}
    assert explicit.set_index("method").loc["grpo_clip_cov", "reported_pct"] == pytest.approx(15.8)
    path = tmp_path / "ref.csv"
    path.write_text("# test\nmodel,method,x_pass8,x_pass32,x_pass1\nM,base,1,2,3\n")
    with pytest.raises(PipelineError, match="several Pass@K columns"):
        tables.reported_cells([(str(path), "M")], {"s": "x"}, ["s"], {"s": 16})
    with pytest.raises(PipelineError, match="no rows for model 'Nope'"):
        tables.reported_cells([(str(path), "Nope")], {"s": "x"}, ["s"], {"s": 8})
    with pytest.raises(PipelineError, match="no column y_pass"):
        tables.reported_cells([(str(path), "M")], {"s": "y"}, ["s"], {"s": 8})


def test_argument_parsing_errors():
    with pytest.raises(PipelineError, match="NAME:MODEL"):
        tables.parse_reported(["cheng2025_table2"])
    assert tables.parse_reported(["a/b.csv:Qwen2.5-7B"]) == [("a/b.csv", "Qwen2.5-7B")]
    with pytest.raises(PipelineError, match="--suite-map"):
        tables.parse_suite_map('{"aime25": 3}')
    with pytest.raises(PipelineError, match="--baselines"):
        tables.parse_baselines('{"grpo": "grpo"}')
    with pytest.raises(PipelineError, match="'comparisons'"):
        tables.parse_comparisons('{"comparisons": ["grpo"]}')


def test_stage_with_baselines_and_reported(tmp_path):
    paths = write_inputs(tmp_path)
    out = tmp_path / "tables"
    argv = ["tables", "--passk", *map(str, paths), "--methods", *METHODS, "--suites", *SUITES,
            "--out-dir", str(out), "--comparisons", json.dumps({"table3": ["grpo", "grpo_entropy_reg", "grpo_entropy_adv"]}),
            "--baselines", json.dumps(BASELINES),
            "--reported", "cheng2025_table2:Qwen2.5-7B", "cheng2025_table3:Qwen2.5-7B",
            "--suite-map", json.dumps({"aime25": "aime25", "math500": "math500", "not-run": "aime24"})]
    assert cli_main(argv) == 0
    main_md = (out / "main.md").read_text()
    assert "| Δ vs grpo |  | +5.0 | +1.0 | +9.0 | +3.0 | +3.3 | +1.1 | +8.6 | +3.2 |" in main_md
    assert "cheng2025_table2 (model Qwen2.5-7B; Cheng et al. 2025" in main_md
    t3 = pd.read_csv(out / "table3.csv")
    assert list(dict.fromkeys(t3["method"])) == ["base", "grpo", "grpo_entropy_reg", "grpo_entropy_adv"]
    reg = t3[(t3["method"] == "grpo_entropy_reg") & (t3["suite"] == "math500") & (t3["metric"] == "pass@K")].iloc[0]
    assert reg["reported_pct"] == pytest.approx(70.4) and reg["delta_pp"] == pytest.approx(70.5 - 65.5)
    assert "Reported" in (out / "main.tex").read_text()


def test_stage_reported_needs_a_suite_map(tmp_path, capsys):
    paths = write_inputs(tmp_path)
    argv = ["tables", "--passk", *map(str, paths), "--methods", *METHODS, "--suites", *SUITES,
            "--out-dir", str(tmp_path / "t"), "--reported", "cheng2025_table2:Qwen2.5-7B"]
    assert cli_main(argv) == 2
    assert "--suite-map" in capsys.readouterr().err
    assert not (tmp_path / "t").exists()


def test_default_layout_is_unchanged_without_the_options(tmp_path):
    paths = write_inputs(tmp_path)
    out = tmp_path / "plain"
    assert cli_main(["tables", "--passk", *map(str, paths), "--methods", *METHODS, "--suites", *SUITES,
                     "--out-dir", str(out)]) == 0
    md = (out / "main.md").read_text()
    assert "Δ" not in md and "reported" not in md
    assert list(pd.read_csv(out / "main.csv").columns) == list(tables.SUMMARY_COLUMNS)
    assert not math.isnan(pd.read_csv(out / "main.csv")["mean_pct"].iloc[0])
