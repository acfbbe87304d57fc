"""Paired bootstrap of a method against its baseline (pipeline.report.compare) on known cases."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.errors import PipelineError
from pipeline.eval.passk import pass_at_k
from pipeline.eval.score import build_summary
from pipeline.report import compare


def score_obj(model: str, suite: str, counts, n: int, k_max: int, ids=None) -> dict:
    """A Pass@k JSON object as the score stage writes it, from per-problem correct counts."""
    ids = ids or [f"{suite}-{i}" for i in range(len(counts))]
    problems = pd.DataFrame({"id": ids, "difficulty": [1] * len(ids)})
    verdicts = pd.DataFrame(
        {
            "problem_id": np.repeat(ids, n),
            "correct": np.concatenate([[True] * c + [False] * (n - c) for c in counts]),
            "finish_reason": "stop",
            "grader_status": "ok",
        }
    )
    return build_summary(problems=problems, verdicts=verdicts, n=n, model=model, suite=suite, k_max=k_max,
                         grader="answer_line", n_boot=0, seed=0)


def frame_of(objs: list[dict]) -> pd.DataFrame:
    return compare.per_problem_frame([(f"f{i}.json", o) for i, o in enumerate(objs)])


def run_stage(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    compare.add_arguments(parser)
    return compare.run(parser.parse_args(argv))


def test_identical_inputs_give_zero_difference_and_p_one():
    rng = np.random.default_rng(0)
    counts = rng.integers(0, 9, size=40).tolist()
    frame = frame_of([score_obj("grpo/seed0", "s", counts, 8, 8), score_obj("grpo_entropy_adv/seed0", "s", counts, 8, 8)])
    table = compare.compare(frame, {"grpo_entropy_adv": "grpo"}, ["s"], n_boot=2000, seed=3)
    assert list(table["metric"]) == ["pass@K", "pass@1"]
    for r in table.itertuples():
        assert r.diff_pp == 0.0
        assert r.ci_lo <= 0.0 <= r.ci_hi
        assert r.p_value == 1.0
        assert r.n_problems == 40 and r.n_seeds == 1 and r.n_seeds_baseline == 1 and r.n_boot == 2000


def test_better_on_every_problem_gives_tiny_p_and_ci_above_zero():
    base_counts = [1, 2, 0, 3, 1, 0, 2, 1, 0, 4, 2, 1]
    better = [c + 2 for c in base_counts]
    frame = frame_of([score_obj("grpo/seed0", "s", base_counts, 8, 4), score_obj("adv/seed0", "s", better, 8, 4)])
    table = compare.compare(frame, {"adv": "grpo"}, ["s"], n_boot=5000, seed=0).set_index("metric")
    p1 = table.loc["pass@1"]
    assert p1["diff_pp"] == pytest.approx(100 * 2 / 8)  # two more correct of 8 on every problem
    assert p1["ci_lo"] > 0 and p1["ci_hi"] >= p1["diff_pp"] >= p1["ci_lo"]
    assert p1["p_value"] == 0.0  # no resample has a difference <= 0
    pk = table.loc["pass@K"]
    expected = 100 * np.mean(pass_at_k(8, np.array(better), 4) - pass_at_k(8, np.array(base_counts), 4))
    assert pk["k"] == 4 and pk["diff_pp"] == pytest.approx(expected)
    assert pk["ci_lo"] > 0 and pk["p_value"] == 0.0
    assert compare.p_text(0.0, 5000) == "< 0.0004"
    # and the mirror image: worse everywhere
    worse = compare.compare(frame, {"grpo": "adv"}, ["s"], n_boot=5000, seed=0).set_index("metric").loc["pass@1"]
    assert worse["diff_pp"] == pytest.approx(-25.0) and worse["ci_hi"] < 0 and worse["p_value"] == 0.0


def test_p_value_definition_on_hand_made_resamples():
    # d = a - b = [1, -0.5]; observed mean 0.25 > 0
    a, b = np.array([1.0, 0.0]), np.array([0.0, 0.5])
    idx = np.array([[0, 0], [1, 1], [0, 1], [1, 0]])  # resample means: 1, -0.5, 0.25, 0.25
    res = compare.paired_bootstrap(a, b, idx=idx)
    assert res["diff"] == pytest.approx(0.25)
    assert res["p_value"] == pytest.approx(2 * 1 / 4)  # one of four resamples has d* <= 0
    assert (res["ci_lo"], res["ci_hi"]) == pytest.approx(tuple(np.quantile([1, -0.5, 0.25, 0.25], [0.025, 0.975])))
    # negative observed difference: count resamples with d* >= 0 (means -1, 0.5, -0.25, -0.25: one of four)
    res = compare.paired_bootstrap(b, a, idx=idx)
    assert res["diff"] == pytest.approx(-0.25) and res["p_value"] == pytest.approx(0.5)
    # three of four resamples against the observed sign: 2 * 3/4 = 1.5, capped at 1
    res = compare.paired_bootstrap(a, b, idx=np.array([[1, 1], [1, 1], [1, 1], [0, 0]]))
    assert res["diff"] == pytest.approx(0.25) and res["p_value"] == 1.0
    # ties count against the observed sign: d* = 0 in two of four resamples
    res = compare.paired_bootstrap(np.array([1.0, 0.0, 0.0]), np.zeros(3),
                                   idx=np.array([[0, 1, 2], [1, 1, 2], [2, 2, 1], [0, 0, 0]]))
    assert res["p_value"] == pytest.approx(2 * 2 / 4)


def test_noisy_case_is_reproducible_and_seed_dependent():
    rng = np.random.default_rng(1)
    base = rng.integers(0, 17, size=60)
    other = np.clip(base + rng.integers(-3, 5, size=60), 0, 16)
    frame = frame_of([score_obj("grpo/seed0", "s", base.tolist(), 16, 16),
                      score_obj("adv/seed0", "s", other.tolist(), 16, 16)])
    t1 = compare.compare(frame, {"adv": "grpo"}, ["s"], n_boot=3000, seed=7)
    t2 = compare.compare(frame, {"adv": "grpo"}, ["s"], n_boot=3000, seed=7)
    t3 = compare.compare(frame, {"adv": "grpo"}, ["s"], n_boot=3000, seed=8)
    pd.testing.assert_frame_equal(t1, t2)
    assert not np.allclose(t1[["ci_lo", "ci_hi"]].to_numpy(), t3[["ci_lo", "ci_hi"]].to_numpy())
    assert (t1["diff_pp"].to_numpy() == t3["diff_pp"].to_numpy()).all()  # the observed value does not depend on it
    p1 = t1.set_index("metric").loc["pass@1"]
    d = (other - base) / 16
    assert p1["diff_pp"] == pytest.approx(100 * d.mean())
    # the percentile CI is close to mean ± 1.96 standard errors here
    se = 100 * d.std(ddof=0) / np.sqrt(len(d))
    assert p1["ci_lo"] == pytest.approx(p1["diff_pp"] - 1.96 * se, abs=0.5 * se)
    assert p1["ci_hi"] == pytest.approx(p1["diff_pp"] + 1.96 * se, abs=0.5 * se)


def test_seeds_are_averaged_per_problem_and_problems_aligned_by_id():
    ids = ["a", "b", "c"]
    objs = [
        score_obj("grpo/seed0", "s", [2, 0, 4], 4, 2, ids),
        score_obj("adv/seed0", "s", [4, 1, 0], 4, 2, ids),
        # same problems, another order
        score_obj("adv/seed1", "s", [0, 2, 3], 4, 2, ["c", "a", "b"]),
    ]
    frame = frame_of(objs)
    values, n = compare.seed_mean_values(frame, "adv", "s", 1)
    assert n == 2
    assert values.to_dict() == pytest.approx({"a": (1.0 + 0.5) / 2, "b": (0.25 + 0.75) / 2, "c": (0.0 + 0.0) / 2})
    table = compare.compare(frame, {"adv": "grpo"}, ["s"], n_boot=100).set_index("metric")
    assert table.loc["pass@1", "n_seeds"] == 2 and table.loc["pass@1", "n_seeds_baseline"] == 1
    assert table.loc["pass@1", "diff_pp"] == pytest.approx(100 * (np.mean([0.75, 0.5, 0.0]) - np.mean([0.5, 0.0, 1.0])))


def test_mismatched_problem_sets_are_errors():
    frame = frame_of([score_obj("grpo/seed0", "s", [1, 2], 4, 4, ["a", "b"]),
                      score_obj("adv/seed0", "s", [1, 2], 4, 4, ["a", "z"])])
    with pytest.raises(PipelineError, match="different problems"):
        compare.compare(frame, {"adv": "grpo"}, ["s"], n_boot=10)
    with pytest.raises(PipelineError, match="per-problem counts"):
        compare.per_problem_frame([("x.json", {"method": "grpo", "suite": "s", "k_max": 4})])


def write(tmp_path: Path, obj: dict) -> Path:
    p = tmp_path / f"{obj['model'].replace('/', '_')}_{obj['suite']}.json"
    p.write_text(json.dumps(obj))
    return p


def test_stage_writes_comparisons(tmp_path):
    paths = []
    for suite, k in (("toy-aime", 8), ("toy-math500", 4)):
        paths.append(write(tmp_path, score_obj("base", suite, [1, 0, 2, 5], 8, k)))
        paths.append(write(tmp_path, score_obj("grpo/seed0", suite, [2, 1, 2, 5], 8, k)))
        paths.append(write(tmp_path, score_obj("grpo_entropy_adv/seed0", suite, [4, 3, 5, 8], 8, k)))
    out = tmp_path / "tables"
    assert run_stage(["--passk", *map(str, paths), "--baselines", json.dumps({"grpo_entropy_adv": "grpo"}),
                      "--suites", "toy-aime", "toy-math500", "--bootstrap", "500", "--out-dir", str(out)]) == 0
    csv = pd.read_csv(out / "comparisons.csv")
    for col in ("method", "baseline", "suite", "metric", "diff_pp", "ci_lo", "ci_hi", "p_value", "n_problems", "n_seeds"):
        assert col in csv.columns
    assert len(csv) == 4 and set(csv["suite"]) == {"toy-aime", "toy-math500"}
    assert (csv["method"] == "grpo_entropy_adv").all() and (csv["baseline"] == "grpo").all()
    md = (out / "comparisons.md").read_text()
    assert "| grpo_entropy_adv | grpo | toy-aime | Pass@1 |" in md and "two-sided p" in md
    tex = (out / "comparisons.tex").read_text()
    assert "grpo\\_entropy\\_adv" in tex and "\\end{tabular}" in tex


def test_stage_without_any_pair_writes_an_empty_table(tmp_path):
    paths = [write(tmp_path, score_obj("grpo/seed0", "s", [1, 2], 4, 4))]
    out = tmp_path / "t"
    assert run_stage(["--passk", *map(str, paths), "--baselines", "{}", "--suites", "s", "--out-dir", str(out)]) == 0
    assert pd.read_csv(out / "comparisons.csv").empty
    assert "nothing to compare" in (out / "comparisons.md").read_text()


def test_stage_rejects_a_baseline_without_results(tmp_path):
    paths = [write(tmp_path, score_obj("grpo_entropy_adv/seed0", "s", [1, 2], 4, 4))]
    with pytest.raises(PipelineError, match="'grpo'"):
        run_stage(["--passk", *map(str, paths), "--baselines", json.dumps({"grpo_entropy_adv": "grpo"}),
                   "--suites", "s", "--out-dir", str(tmp_path / "t")])
