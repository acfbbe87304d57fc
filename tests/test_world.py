import random
import re

import pytest

from pipeline.eval.grading import grade
from pipeline.toy.world import evaluate, generate_problems, make_problem, render_problem, solution_trace


def test_render_is_left_to_right_with_parentheses():
    assert render_problem((12,), ()) == "12"
    assert render_problem((12, 7), ("+",)) == "12+7"
    assert render_problem((12, 7, 3, 5), ("+", "*", "-")) == "((12+7)*3)-5"
    assert evaluate((12, 7, 3, 5), ("+", "*", "-")) == 52


@pytest.mark.parametrize("difficulty", [1, 2, 3, 4, 5])
def test_problems_have_d_operations_and_bounded_values(difficulty):
    rng = random.Random(difficulty)
    for _ in range(200):
        p = make_problem(rng, difficulty, "x", "t", max_value=99)
        assert len(p.operators) == difficulty
        value = p.operands[0]
        for op, b in zip(p.operators, p.operands[1:]):
            value = {"+": value + b, "-": value - b, "*": value * b}[op]
            assert 0 <= value <= 99
        assert p.answer == str(value)


def test_traces_are_correct_and_gradable_with_reflection():
    rng = random.Random(0)
    problems = generate_problems(1, [1, 2, 3, 4, 5], 300, "t")
    traces = [solution_trace(p, rng, slip_prob=0.3, check_prob=0.5) for p in problems]
    for p, t in zip(problems, traces):
        assert t.splitlines()[-1] == f"Answer: {p.answer}"
        assert grade(t, p.answer, "answer_line")
        # every step line that is not a slip is arithmetically right
        for line in t.splitlines():
            m = re.fullmatch(r"(?:wait, )?(\d+)([+\-*])(\d+)=(\d+)", line)
            if m and line.startswith("wait"):
                a, op, b, c = m.groups()
                assert evaluate((int(a), int(b)), (op,)) == int(c)
    assert any("wait, " in t for t in traces)
    assert any("check: " in t for t in traces)


def test_generation_is_deterministic_distinct_and_excludes():
    a = generate_problems(3, [2, 3], 50, "s")
    b = generate_problems(3, [2, 3], 50, "s")
    assert [p.problem for p in a] == [p.problem for p in b]
    assert len({p.problem for p in a}) == 50
    c = generate_problems(3, [2, 3], 50, "s", exclude={p.problem for p in a[:10]})
    assert not {p.problem for p in c} & {p.problem for p in a[:10]}
