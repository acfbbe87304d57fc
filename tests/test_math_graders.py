"""Boxed-answer graders: Math-Verify equivalences, strict boxed matching, and hostile
responses through the real crash/hang-proof ``grade_many`` worker pool."""

from __future__ import annotations

import time

import pytest

from pipeline.eval.grading import grade_many
from pipeline.eval.math_graders import boxed_strict, extract_last_boxed, math_verify_grader

MV = "pipeline.eval.math_graders:math_verify_grader"
STRICT = "pipeline.eval.math_graders:boxed_strict"


# --------------------------------------------------------------------------- extraction


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        (r"so the answer is \boxed{42}.", "42"),
        (r"\boxed{1} then \boxed{\frac{1}{2}}", r"\frac{1}{2}"),  # the last box
        (r"\boxed {7}", "7"),
        (r"\boxed{\{1, 2\}}", r"\{1, 2\}"),  # escaped braces are content
        (r"\boxed{\frac{\sqrt{3}}{2}} done", r"\frac{\sqrt{3}}{2}"),
        (r"\boxed{1} and finally \boxed{2", None),  # the last box is unclosed: no fallback to an earlier one
        ("no box at all", None),
        (r"\boxed 5", None),
        ("", None),
    ],
)
def test_extract_last_boxed(response, expected):
    assert extract_last_boxed(response) == expected


# --------------------------------------------------------------------------- Math-Verify


@pytest.mark.parametrize(
    ("response", "gold"),
    [
        (r"\boxed{0.5}", r"\frac{1}{2}"),
        (r"\boxed{\frac{1}{2}}", "0.5"),
        (r"\boxed{\dfrac12}", r"\frac{1}{2}"),
        (r"\boxed{\tfrac{1}{2}}", "1/2"),
        (r"\boxed{0.50}", r"\frac{1}{2}"),
        (r"\boxed{\sqrt{8}}", r"2\sqrt{2}"),
        (r"\boxed{2\sqrt{2}}", r"\sqrt{8}"),
        (r"\boxed{\frac{\sqrt{3}}{2}}", r"\dfrac{\sqrt3}{2}"),
        (r"\boxed{[1, 2)}", "[1,2)"),
        (r"\boxed{\{2, 1\}}", r"\{1,2\}"),
        (r"\boxed{336}", r"336^\circ"),
        (r"\boxed{x = 3}", "3"),
        (r"\boxed{1,000}", "1000"),
        (r"Thus the answer is \boxed{\frac{\pi}{2}}.", r"\pi/2"),
        (r"\boxed{\text{(B)}}", "B"),
    ],
)
def test_math_verify_equivalent(response, gold):
    assert math_verify_grader(response, gold) is True


@pytest.mark.parametrize(
    ("response", "gold"),
    [
        (r"\boxed{3}", "4"),
        (r"\boxed{0.333}", r"\frac{1}{3}"),
        (r"\boxed{(1, 2]}", "[1,2]"),
        (r"\boxed{\{1, 2\}}", r"\{1,2,3\}"),
        (r"\boxed{2\sqrt{3}}", r"\sqrt{8}"),
        (r"\boxed{\frac{}{}}", "1"),
        ("The answer is 42.", "42"),  # no box: not graded from free text
        (r"\boxed{42", "42"),  # unclosed box
        (r"\boxed{}", "0"),
        (r"\boxed{7}", ""),  # no gold
    ],
)
def test_math_verify_not_equivalent(response, gold):
    assert math_verify_grader(response, gold) is False


def test_math_verify_takes_the_gold_first():
    # Math-Verify is asymmetric: a relation as GOLD matches an interval prediction, not the reverse.
    assert math_verify_grader(r"\boxed{(1,2)}", "1<x<2") is True
    assert math_verify_grader(r"\boxed{1<x<2}", "(1,2)") is False


def test_math_verify_uses_the_last_box():
    assert math_verify_grader(r"first \boxed{3}, corrected: \boxed{4}", "4") is True
    assert math_verify_grader(r"first \boxed{4}, corrected: \boxed{3}", "4") is False


# --------------------------------------------------------------------------- boxed_strict


@pytest.mark.parametrize(
    ("response", "gold", "expected"),
    [
        (r"\boxed{42}", "42", True),
        (r"\boxed{42.0}", "42", True),  # numbers compare by value (answer_line's normaliser)
        (r"\boxed{\frac{1}{2}}", "1/2", True),
        (r"\boxed{\dfrac{1}{2}}", r"\frac12", True),
        (r"\boxed{12^\circ}", "12", True),
        (r"\boxed{1,000}", "1000", True),
        (r"\boxed{\text{5 cm}}", "5", True),
        (r"\boxed{0.5}", r"\frac{1}{2}", False),  # no symbolic equivalence in the strict grader
        (r"\boxed{\sqrt{8}}", r"2\sqrt{2}", False),
        (r"\boxed{41}", "42", False),
        ("Answer: 42", "42", False),  # boxed only
        (r"\boxed{4} \boxed{42", "42", False),
    ],
)
def test_boxed_strict(response, gold, expected):
    assert boxed_strict(response, gold) is expected


# --------------------------------------------------------------------------- hostile inputs in the worker pool

NESTED_FRAC = "\\frac{" * 1000 + "1" + "}{2}" * 1000
HOSTILE = [
    # (response, gold, must be correct)
    (r"warm-up: \boxed{\frac{1}{2}}", "1/2", "both"),
    ("x" * 1_000_000 + r" \boxed{42}", "42", "both"),  # megabyte-long output, answer at the end
    ("\\frac{" * 200_000, "1", None),  # megabyte of openers, no box
    (r"\boxed{" + "{" * 300_000, "1", None),  # unbalanced braces
    (r"\boxed{" + NESTED_FRAC + "}", "1", None),  # 1000 nested \frac
    ("\ud800\udfff\x00\x07\x1b[31m\u202e\ufffe text \\boxed{7}", "7", "both"),  # surrogates, control chars
    ("\\boxed{7\ud800\x00}", "7", None),
    ("\\boxed{\x00\x01\x02}", "\x00", None),
    (r"\boxed{\sqrt{8}}", r"2\sqrt{2}", "math_verify"),  # the pool still grades normally afterwards
    (r"\boxed{13}", "12", None),
]


@pytest.mark.parametrize("grader", [MV, STRICT])
def test_hostile_inputs_get_verdicts_within_the_timeout(grader):
    responses = [r for r, _, _ in HOSTILE]
    answers = [a for _, a, _ in HOSTILE]
    timeout_s = 2.0
    t0 = time.monotonic()
    results = grade_many(responses, answers, grader=grader, timeout_s=timeout_s, workers=2)
    elapsed = time.monotonic() - t0
    assert len(results) == len(HOSTILE)
    for (response, _, must), res in zip(HOSTILE, results):
        assert res.status in ("ok", "timeout", "error")
        assert isinstance(res.correct, bool)
        should_pass = must == "both" or (must == "math_verify" and grader == MV)
        if should_pass:
            assert (res.correct, res.status) == (True, "ok"), (response[:60], res)
        else:
            assert res.correct is False, (response[:60], res)
    # Each sample is bounded by its timeout (+ the pool's grace); with 2 workers the batch
    # is far below the serial bound even when some samples time out.
    assert elapsed < len(HOSTILE) * (timeout_s + 1.0) + 15.0
    if grader == STRICT:
        assert all(r.status == "ok" for r in results)  # the strict grader is linear: nothing times out


def test_deeply_nested_input_times_out_and_the_pool_recovers():
    responses = [r"\boxed{" + NESTED_FRAC + "}", r"\boxed{0.5}", r"\boxed{" + NESTED_FRAC + "}", r"\boxed{3}"]
    answers = ["1", r"\frac12", "1", "3"]
    results = grade_many(responses, answers, grader=MV, timeout_s=1.0, workers=1)
    assert [r.correct for r in results] == [False, True, False, True]
    assert results[1].status == results[3].status == "ok"
    # Stopped by grade_many's own per-sample alarm inside the Math-Verify call (its timeouts are
    # disabled, so its signal.alarm(0) cannot cancel ours), not by the parent killing the worker.
    for res in (results[0], results[2]):
        assert res.status == "timeout" and "worker killed" not in res.message, res
