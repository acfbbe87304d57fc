"""The papers' reported numbers shipped as package data (pipeline/reference, pipeline.report.reference)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pipeline.errors import PipelineError
from pipeline.report import reference

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ["cheng2025_curves", "cheng2025_table2", "cheng2025_table3", "cui2025_clipcov_table", "zhang2025_aer_claims"]


def test_every_reference_file_is_shipped_and_listed_in_the_readme():
    assert reference.available() == SHIPPED
    readme = (ROOT / "pipeline" / "reference" / "README.md").read_text()
    for name in SHIPPED:
        assert f"`{name}.csv`" in readme
    for arxiv in ("2506.14758", "2505.22617", "2510.10959"):
        assert arxiv in readme
    # every file keeps its citation header
    for name in SHIPPED:
        assert reference.citation(name), name


def test_table2_values_and_comment_lines_skipped():
    frame = reference.load_reported("cheng2025_table2")
    assert list(frame.columns)[:3] == ["model", "method", "aime25_pass256"]
    assert len(frame) == 12
    row = frame[(frame["model"] == "Qwen2.5-7B") & (frame["method"] == "grpo_entropy_adv")].iloc[0]
    assert row["aime25_pass256"] == pytest.approx(53.3)
    assert row["math500_pass1"] == pytest.approx(58.5)
    math_base = frame[(frame["model"] == "Qwen2.5-Math-7B") & (frame["method"] == "base")].iloc[0]
    assert math_base["amc23_pass128"] == pytest.approx(90.0)
    # not-reported cells are NaN, not strings
    ref = frame[frame["model"] == "GPG-7B"].iloc[0]
    assert ref["aime25_pass256"] != ref["aime25_pass256"]
    assert not any(str(c).startswith("#") for c in frame.columns)


def test_table3_and_other_files_load():
    t3 = reference.load_reported("cheng2025_table3")
    assert set(t3["method"]) == {"grpo_entropy_reg", "grpo_entropy_adv"}
    assert t3.loc[t3["method"] == "grpo_entropy_reg", "aime25_pass1"].iloc[0] == pytest.approx(9.3)
    cui = reference.load_reported("cui2025_clipcov_table")
    assert cui.loc[(cui["model"] == "Qwen2.5-7B") & (cui["method"] == "grpo_clip_cov"), "avg"].iloc[0] == pytest.approx(40.4)
    curves = reference.load_reported("cheng2025_curves")
    assert list(curves.columns) == ["method", "quantity", "step", "value"]


def test_citation_lines():
    lines = reference.citation("cheng2025_table2")
    assert re.search(r"Cheng et al\. 2025.*2506\.14758", lines[0])
    assert all(not line.startswith("#") for line in lines)


def test_csv_path_form(tmp_path):
    path = tmp_path / "mine.csv"
    path.write_text("# My paper, Table 9.\n# percent\nmodel,method,x_pass1\nM,grpo,12.5\n\nM,base,3\n")
    frame = reference.load_reported(str(path))
    assert frame["x_pass1"].tolist() == [12.5, 3.0]
    assert reference.citation(str(path)) == ["My paper, Table 9.", "percent"]


def test_unknown_names_are_errors(tmp_path):
    with pytest.raises(PipelineError, match="cheng2025_table2"):  # lists the known names
        reference.load_reported("cheng2025_table9")
    with pytest.raises(PipelineError, match="does not exist"):
        reference.load_reported(str(tmp_path / "nope.csv"))
