"""Graders, the crash/hang-proof batch grader, and the ``score`` stage end to end."""

from __future__ import annotations

import json
import sys
import time
from math import comb
from pathlib import Path

import pandas as pd
import pytest

TESTS_DIR = Path(__file__).resolve().parent
if str(TESTS_DIR) not in sys.path:  # worker processes inherit sys.path and import _hostile_graders from here
    sys.path.insert(0, str(TESTS_DIR))

import _hostile_graders as hostile  # noqa: E402

from pipeline.cli import main as cli_main  # noqa: E402
from pipeline.eval import grading  # noqa: E402
from pipeline.eval.grading import GRADER_VERSION, GRADERS, grade, grade_many, normalize_answer  # noqa: E402


# --------------------------------------------------------------------------- answer_line


@pytest.mark.parametrize(
    ("response", "answer", "expected"),
    [
        ("3+4=7\nAnswer: 7", "7", True),
        ("3+4=7\nAnswer: 8", "7", False),
        ("answer : 7", "7", True),  # case-insensitive, spaces around the colon
        ("ANSWER:7", "7", True),
        ("Answer: 7\n", "7", True),
        ("Answer: \\boxed{7}", "7", True),
        ("Answer: $7$", "7", True),
        ("Answer: $\\boxed{7}$.", "7", True),
        ("Answer: 7.", "7", True),
        ("Answer: \\text{7}", "7", True),
        ("Answer: **7**", "7", True),
        ("Answer: 60.0", "60", True),
        ("Answer: 60", "60.0", True),
        ("Answer: 60.5", "60", False),
        ("Answer: -5", "-5", True),
        ("Answer: \u22125", "-5", True),  # unicode minus
        ("Answer: 5", "-5", False),
        ("Answer: -5", "5", False),
        ("Answer: +5", "5", True),
        ("Answer: 12 degrees", "12", True),
        ("Answer: 12^\\circ", "12", True),
        ("Answer: 12^{\\circ}", "12^\\circ", True),
        ("Answer: 1,000", "1000", True),
        ("Answer: 1{,}000", "1000", True),
        ("Answer: 1,2", "12", False),  # a list, not a thousands separator
        ("Answer: x = 7", "7", True),
        ("Answer: \\frac{1}{2}", "\\dfrac{1}{2}", True),
        ("Answer: 12345678901234567891", "12345678901234567890", False),  # compared exactly, not as floats
    ],
)
def test_answer_line_well_formed(response, answer, expected):
    assert grade(response, answer, "answer_line") is expected


@pytest.mark.parametrize(
    "response",
    [
        "The sum is 7.",  # no Answer line
        "Answer:",  # nothing after the colon
        "Answer:   ",
        "Answer: $$",
        "",
        "7",
    ],
)
def test_answer_line_malformed_is_wrong(response):
    assert grade(response, "7", "answer_line") is False


def test_truncated_response_with_answer_only_in_the_middle():
    # The model wrote an answer early, then rambled until the length limit cut it off.
    response = "Answer: 7\n" + "wait, let me re-check 3+4 " * 40 + "so the ans"
    assert grade(response, "7", "answer_line") is False


def test_adversarial_megabyte_junk():
    junk = "x" * 1_000_000
    t0 = time.perf_counter()
    assert grade(junk, "7", "answer_line") is False
    assert grade(junk + "\nAnswer: 7", "7", "answer_line") is True
    assert grade("Answer: 7\n" + junk, "7", "answer_line") is False
    assert time.perf_counter() - t0 < 1.0


def test_answer_outside_last_300_chars_is_ignored():
    tail = "\n" + "z" * 300
    assert grade("Answer: 7" + tail, "7", "answer_line") is False
    assert grade("Answer: 7" + tail[:-20], "7", "answer_line") is True


def test_multiple_answer_lines_last_wins():
    assert grade("Answer: 8\nhmm, wait\nAnswer: 7", "7", "answer_line") is True
    assert grade("Answer: 7\nhmm, wait\nAnswer: 8", "7", "answer_line") is False


def test_unicode_junk():
    junk = "∑∫√ 🤖🤖 \u200b\u202e ünïcödé \x00\x01 " * 50
    assert grade(junk, "7", "answer_line") is False
    assert grade(junk + "\nAnswer: 7", "7", "answer_line") is True
    assert grade("Answer: 🤖", "7", "answer_line") is False


def test_normalize_answer_examples():
    assert normalize_answer(" $\\boxed{\\text{42}}$. ") == "42"
    assert normalize_answer("90^\\circ") == "90"
    assert normalize_answer("12 square units") == "12"
    assert normalize_answer("+3") == "3"
    assert normalize_answer("1,234,567") == "1234567"


def test_unknown_grader_is_named():
    with pytest.raises(ValueError, match="no_such_grader"):
        grade("Answer: 7", "7", "no_such_grader")
    with pytest.raises(ValueError, match="no_such_module"):
        grade("Answer: 7", "7", "no_such_module:fn")
    with pytest.raises(ValueError, match="no_such_grader"):
        grade_many(["Answer: 7"], ["7"], "no_such_grader")


def test_grader_version_is_a_string():
    assert isinstance(GRADER_VERSION, str) and GRADER_VERSION


# --------------------------------------------------------------------------- grade_many


def test_grade_many_matches_grade_and_is_fast():
    n = 30_000
    responses = [f"{i}+1={i + 1}\nAnswer: {i + 1}" for i in range(n)]
    answers = [str(i + 1) if i % 3 else "0" for i in range(n)]
    t0 = time.perf_counter()
    results = grade_many(responses, answers, "answer_line", timeout_s=5.0, workers=1)
    elapsed = time.perf_counter() - t0
    assert len(results) == n
    assert all(r.status == "ok" for r in results)
    assert [r.correct for r in results] == [bool(i % 3) for i in range(n)]
    assert elapsed < 8.0, elapsed


def test_grade_many_empty_and_argument_errors():
    assert grade_many([], [], "answer_line") == []
    with pytest.raises(ValueError):
        grade_many(["a"], [], "answer_line")
    with pytest.raises(ValueError):
        grade_many(["a"], ["b"], "answer_line", timeout_s=0)
    with pytest.raises(ValueError):
        grade_many(["a"], ["b"], "answer_line", workers=0)


def test_grade_many_survives_hostile_graders(monkeypatch, caplog):
    """Hangs (cooperative and not), swallowed alarms, exceptions and worker suicide."""
    monkeypatch.setitem(GRADERS, "hostile_test", hostile.hostile)  # registered by name; workers import it by path
    sentinels = {
        5: (hostile.HANG, "timeout"),
        17: (hostile.EXIT, "error"),
        18: (hostile.EXIT, "error"),
        40: (hostile.RAISE, "error"),
        55: (hostile.HANG_HARD, "timeout"),
        70: (hostile.STUBBORN, "timeout"),
    }
    responses, answers = [], []
    for i in range(90):
        if i in sentinels:
            responses.append(f"{sentinels[i][0]}\nAnswer: {i}")
        else:
            responses.append(f"Answer: {i}")
        answers.append(str(i) if i % 2 == 0 else str(i + 1))
    t0 = time.perf_counter()
    results = grade_many(responses, answers, "hostile_test", timeout_s=0.5, workers=2, chunk_size=16)
    elapsed = time.perf_counter() - t0
    assert elapsed < 20.0, elapsed
    for i, res in enumerate(results):
        if i in sentinels:
            assert res.correct is False, i
            assert res.status == sentinels[i][1], (i, res)
        else:
            assert res.status == "ok", (i, res)
            assert res.correct is (i % 2 == 0), i
    assert "sample 17" in caplog.text and "sample 55" in caplog.text


def test_grade_many_module_function_spec():
    results = grade_many(
        ["Answer: 1", f"{hostile.EXIT}", "Answer: 3"], ["1", "2", "4"], "_hostile_graders:hostile", timeout_s=1.0
    )
    assert [(r.correct, r.status) for r in results] == [(True, "ok"), (False, "error"), (False, "ok")]


def test_local_function_cannot_be_sent_to_workers(monkeypatch):
    monkeypatch.setitem(GRADERS, "local_fn", lambda r, a: True)
    assert grade("x", "y", "local_fn") is True  # fine in-process
    with pytest.raises(ValueError, match="module-level"):
        grading.grade_many(["x"], ["y"], "local_fn")


# --------------------------------------------------------------------------- score stage


def _write_inputs(tmp_path: Path, n: int = 4):
    problems = pd.DataFrame(
        {
            "id": ["p0", "p1", "p2"],
            "problem": ["1+1", "2*3", "9-10"],
            "answer": ["2", "6", "-1"],
            "difficulty": [1, 1, 2],
            "source": ["toy"] * 3,
        }
    )
    rows = []
    plan = {  # per problem: list of (text, finish_reason)
        "p0": [("1+1=2\nAnswer: 2", "stop")] * 2 + [("Answer: 3", "stop")] * (n - 2),
        "p1": [("2*3=6\nAnswer: 6", "length")] + [("Answer: 5", "stop")] * (n - 1),  # truncated -> wrong
        "p2": [("Answer: -1", "stop")] * n,
    }
    for pid, items in plan.items():
        for j, (text, reason) in enumerate(items):
            rows.append({"problem_id": pid, "sample_index": j, "text": text, "num_tokens": 5, "finish_reason": reason})
    samples = pd.DataFrame(rows).sample(frac=1.0, random_state=0)  # order must not matter
    problems.to_parquet(tmp_path / "problems.parquet", index=False)
    samples.to_parquet(tmp_path / "samples.parquet", index=False)
    return problems, samples


def _score_argv(tmp_path: Path, k_max: int = 4, model: str = "grpo_entropy_adv/seed3", **paths) -> list[str]:
    return [
        "score",
        "--problems", str(paths.get("problems", tmp_path / "problems.parquet")),
        "--samples", str(paths.get("samples", tmp_path / "samples.parquet")),
        "--model", model,
        "--suite", "toy-mini",
        "--k-max", str(k_max),
        "--grader", "answer_line",
        "--timeout-s", "5",
        "--workers", "1",
        "--bootstrap", "200",
        "--seed", "0",
        "--out-verdicts", str(tmp_path / "out" / "verdicts.parquet"),
        "--out-passk", str(tmp_path / "out" / "passk.json"),
    ]


def test_score_stage_end_to_end(tmp_path):
    _write_inputs(tmp_path, n=4)
    assert cli_main(_score_argv(tmp_path)) == 0
    verdicts = pd.read_parquet(tmp_path / "out" / "verdicts.parquet")
    assert list(verdicts.columns) == ["problem_id", "sample_index", "correct", "finish_reason", "grader_status"]
    assert list(verdicts["problem_id"]) == ["p0"] * 4 + ["p1"] * 4 + ["p2"] * 4
    assert list(verdicts["sample_index"]) == [0, 1, 2, 3] * 3
    truncated = verdicts[(verdicts["problem_id"] == "p1") & (verdicts["sample_index"] == 0)].iloc[0]
    assert not truncated["correct"] and truncated["finish_reason"] == "length" and truncated["grader_status"] == "truncated"

    out = json.loads((tmp_path / "out" / "passk.json").read_text())
    assert out["model"] == "grpo_entropy_adv/seed3"
    assert out["method"] == "grpo_entropy_adv" and out["seed"] == 3
    assert out["suite"] == "toy-mini" and out["k_max"] == 4
    assert out["n_samples"] == 4 and out["n_problems"] == 3
    assert out["ks"] == [1, 2, 4]
    assert out["per_problem"] == {"problem_id": ["p0", "p1", "p2"], "n": [4, 4, 4], "c": [2, 0, 4], "difficulty": [1, 1, 2]}
    expected = {k: (1 - comb(2, k) / comb(4, k) + 0 + 1) / 3 for k in (1, 2, 4)}
    for k, v in expected.items():
        assert out["pass_at_k"][str(k)] == pytest.approx(v)
        lo, hi = out["pass_at_k_ci"][str(k)]
        assert lo <= v + 1e-12 and v - 1e-12 <= hi
    assert out["pass1"] == pytest.approx(6 / 12)
    assert out["n_truncated"] == 1 and out["n_grader_failures"] == 0
    assert out["grader"] == "answer_line" and out["grader_version"] == GRADER_VERSION


def test_score_base_model_and_deterministic(tmp_path):
    _write_inputs(tmp_path, n=4)
    assert cli_main(_score_argv(tmp_path, model="base")) == 0
    first = (tmp_path / "out" / "passk.json").read_text()
    out = json.loads(first)
    assert out["method"] == "base" and out["seed"] is None
    assert cli_main(_score_argv(tmp_path, model="base")) == 0
    assert (tmp_path / "out" / "passk.json").read_text() == first


def test_score_rejects_k_max_above_n(tmp_path, capsys):
    _write_inputs(tmp_path, n=4)
    assert cli_main(_score_argv(tmp_path, k_max=8)) == 2
    err = capsys.readouterr().err
    assert "--k-max 8" in err and "4 samples" in err
    assert not (tmp_path / "out" / "passk.json").exists()


def test_score_input_validation(tmp_path, capsys):
    problems, samples = _write_inputs(tmp_path, n=4)
    samples.drop(columns="finish_reason").to_parquet(tmp_path / "no_reason.parquet", index=False)
    assert cli_main(_score_argv(tmp_path, samples=tmp_path / "no_reason.parquet")) == 2
    err = capsys.readouterr().err
    assert "no_reason.parquet" in err and "finish_reason" in err

    problems.drop(columns="answer").to_parquet(tmp_path / "no_answer.parquet", index=False)
    assert cli_main(_score_argv(tmp_path, problems=tmp_path / "no_answer.parquet")) == 2
    err = capsys.readouterr().err
    assert "no_answer.parquet" in err and "'answer'" in err

    stray = pd.concat([samples, samples.iloc[:1].assign(problem_id="ghost")])
    stray.to_parquet(tmp_path / "stray.parquet", index=False)
    assert cli_main(_score_argv(tmp_path, samples=tmp_path / "stray.parquet")) == 2
    assert "ghost" in capsys.readouterr().err

    uneven = samples[~((samples["problem_id"] == "p2") & (samples["sample_index"] == 3))]
    uneven.to_parquet(tmp_path / "uneven.parquet", index=False)
    assert cli_main(_score_argv(tmp_path, samples=tmp_path / "uneven.parquet", k_max=2)) == 2
    assert "same number of samples" in capsys.readouterr().err

    assert cli_main(_score_argv(tmp_path, model="grpo-seed1")) == 2
    assert "grpo-seed1" in capsys.readouterr().err


def test_maj_at_k_by_hand(tmp_path):
    """p0 votes 2,2,3,3 (tie: half right), p1's only correct sample is truncated (no vote), p2 all right."""
    _write_inputs(tmp_path, n=4)
    assert cli_main(_score_argv(tmp_path)) == 0
    out = json.loads((tmp_path / "out" / "passk.json").read_text())
    assert out["maj_at_k"]["1"] == pytest.approx(out["pass1"])  # maj@1 = Pass@1 when answers agree with verdicts
    assert out["maj_at_k"]["4"] == pytest.approx((0.5 + 0.0 + 1.0) / 3)
    assert out["maj_at_k"]["2"] == pytest.approx(0.5, abs=0.05)  # p0's pairs: (1 + 0 + 4 * 0.5) / 6 = 0.5, drawn


def test_majority_tie_break_and_no_answer():
    import numpy as np

    from pipeline.eval.majority import answer_codes, maj_at_k

    codes, good = answer_codes(["7", None, "8", "7"], np.array([True, False, False, True]))
    assert codes.tolist() == [0, -1, 1, 0] and good.tolist() == [1.0, 0.0]
    assert maj_at_k(codes, good, 4, seed=0) == 1.0
    assert maj_at_k(np.array([-1, -1]), np.zeros(0), 2, seed=0) == 0.0
    codes, good = answer_codes(["7", "8"], np.array([True, False]))
    assert maj_at_k(codes, good, 2, seed=0) == 0.5


def test_verdict_cache_reuses_and_resumes(tmp_path, monkeypatch):
    """A rerun with the same cache grades nothing; an interrupted run's finished chunks are kept;
    a different grader (or an edited one) does not reuse them."""
    from pipeline.eval import score

    _write_inputs(tmp_path, n=4)
    cache = tmp_path / "cache"
    argv = _score_argv(tmp_path) + ["--verdict-cache", str(cache), "--chunk-size", "1"]
    graded = []
    real = score.GraderPool.grade

    def counting(self, responses, answers, chunk_size=None):
        graded.extend(responses)
        return real(self, responses, answers, chunk_size)

    monkeypatch.setattr(score.GraderPool, "grade", counting)
    assert cli_main(argv) == 0
    first = (tmp_path / "out" / "passk.json").read_text()
    # 12 samples, 1 truncated, 4 distinct (answer, text) among the rest: graded once each, a part per chunk
    assert len(graded) == 4 and len(list(cache.glob("part-*.parquet"))) == 4
    graded.clear()
    assert cli_main(argv) == 0
    assert graded == [] and (tmp_path / "out" / "passk.json").read_text() == first

    # interrupted after its first chunk: the next run grades only the rest
    for part in sorted(cache.glob("part-*.parquet"))[1:]:
        part.unlink()
    assert cli_main(argv) == 0
    assert len(graded) == 3 and (tmp_path / "out" / "passk.json").read_text() == first

    # another grader identity: nothing reused
    graded.clear()
    mod = tmp_path / "my_grader_mod.py"
    mod.write_text("def grade(response, answer):\n    return answer in response\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    other = [a if a != "answer_line" else "my_grader_mod:grade" for a in argv]
    assert cli_main(other) == 0
    assert len(graded) == 4
    graded.clear()
    assert cli_main(other) == 0 and graded == []
    mod.write_text("def grade(response, answer):\n    return answer in response  # edited\n")
    assert cli_main(other) == 0 and len(graded) == 4
