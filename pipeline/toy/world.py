"""The embedded toy world: procedurally generated arithmetic with verifiable answers.

A problem is a chain of ``d`` operations (the difficulty level, 1-5) on 1-2 digit
operands, written with explicit parentheses so the order is unambiguous::

    ((12+7)*3)-5

A solution writes one step line per operation and ends with a DAPO-style answer line,
so the same ``Answer:`` grader serves the toy world and the real benchmarks::

    12+7=19
    19*3=57
    57-5=52
    Answer: 52

Some SFT traces contain a slip followed by a reflective correction
(``wait, 19*3=57``) and some end with a verification line (``check: 52+5=57``), so the
exploration analysis (pivotal tokens, reflective actions) has real behaviour to find. A
few are bare guesses (``Answer: 40``, no working): a behaviour RL learns to drop.
Intermediate values stay in [0, max_value] (99 by default: every number has at most
two digits, which a tiny model can learn to add in about a minute of CPU).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

OPERATORS = ("+", "-", "*")
MAX_VALUE = 99  # default bound on every intermediate value (two-digit numbers)


@dataclass(frozen=True)
class Problem:
    id: str
    problem: str
    answer: str
    difficulty: int
    source: str
    operands: tuple[int, ...]
    operators: tuple[str, ...]


def apply(a: int, op: str, b: int) -> int:
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    raise ValueError(f"unknown operator {op!r}")


TWO_DIGIT_PROB = 0.3  # default share of two-digit operands


def _operand(rng: random.Random, two_digit_prob: float) -> int:
    return rng.randint(10, 99) if rng.random() < two_digit_prob else rng.randint(1, 9)


def random_chain(
    rng: random.Random, difficulty: int, max_value: int = MAX_VALUE, two_digit_prob: float = TWO_DIGIT_PROB
) -> tuple[tuple[int, ...], tuple[str, ...]]:
    """Operands and operators of a chain whose intermediate values stay in [0, max_value]."""
    if not 1 <= difficulty <= 5:
        raise ValueError(f"difficulty must be in 1..5, got {difficulty}")
    value = _operand(rng, two_digit_prob)
    operands, operators = [value], []
    while len(operators) < difficulty:
        op = rng.choice(OPERATORS)
        # Multiplication by a single digit keeps products learnable for a tiny model.
        b = rng.randint(2, 9) if op == "*" else _operand(rng, two_digit_prob)
        result = apply(value, op, b)
        if 0 <= result <= max_value:
            operands.append(b)
            operators.append(op)
            value = result
    return tuple(operands), tuple(operators)


def render_problem(operands: tuple[int, ...], operators: tuple[str, ...]) -> str:
    """Left-to-right chain with explicit parentheses: ((a+b)*c)-d."""
    text = str(operands[0])
    for i, (op, b) in enumerate(zip(operators, operands[1:])):
        text = f"{text}{op}{b}"
        if i < len(operators) - 1:
            text = f"({text})"
    return text


def evaluate(operands: tuple[int, ...], operators: tuple[str, ...]) -> int:
    value = operands[0]
    for op, b in zip(operators, operands[1:]):
        value = apply(value, op, b)
    return value


def make_problem(
    rng: random.Random, difficulty: int, pid: str, source: str,
    max_value: int = MAX_VALUE, two_digit_prob: float = TWO_DIGIT_PROB,
) -> Problem:
    operands, operators = random_chain(rng, difficulty, max_value, two_digit_prob)
    return Problem(
        id=pid,
        problem=render_problem(operands, operators),
        answer=str(evaluate(operands, operators)),
        difficulty=difficulty,
        source=source,
        operands=operands,
        operators=operators,
    )


def _slip(rng: random.Random, true_value: int) -> int:
    """A plausible arithmetic slip: off by a small amount or one digit changed."""
    while True:
        wrong = true_value + rng.choice([-10, -2, -1, 1, 2, 10])
        if wrong >= 0 and wrong != true_value:
            return wrong


def solution_trace(
    problem: Problem,
    rng: random.Random,
    slip_prob: float = 0.0,
    check_prob: float = 0.0,
    shortcut_prob: float = 0.0,
    max_value: int = MAX_VALUE,
) -> str:
    """A worked solution: correct steps, optionally a corrected slip and a final check.

    With ``shortcut_prob`` the trace is instead a bare guess (``Answer: N`` with no working,
    N uniform in [0, max_value]) — the kind of low-effort answer real corpora contain. A
    base model imitates it now and then; RL on outcome reward learns to stop guessing and
    to work the problem out, which is where the toy's Pass@1 gains come from (as in the
    papers, RL mostly re-weights behaviours the base model already has).
    """
    if rng.random() < shortcut_prob:
        return f"Answer: {rng.randint(0, max_value)}"
    lines = []
    value = problem.operands[0]
    for op, b in zip(problem.operators, problem.operands[1:]):
        result = apply(value, op, b)
        if rng.random() < slip_prob:
            lines.append(f"{value}{op}{b}={_slip(rng, result)}")
            lines.append(f"wait, {value}{op}{b}={result}")
        else:
            lines.append(f"{value}{op}{b}={result}")
        value = result
    if problem.operators and rng.random() < check_prob:
        # Verify the last step by its inverse operation.
        last_op, last_b = problem.operators[-1], problem.operands[-1]
        before = evaluate(problem.operands[:-1], problem.operators[:-1])
        if last_op == "+":
            lines.append(f"check: {value}-{last_b}={before}")
        elif last_op == "-":
            lines.append(f"check: {value}+{last_b}={before}")
        else:
            lines.append(f"check: {value}/{last_b}={before}")
    lines.append(f"Answer: {value}")
    return "\n".join(lines)


def generate_problems(
    seed: int,
    difficulties: list[int],
    count: int,
    source: str,
    weights: list[float] | None = None,
    exclude: set[str] | None = None,
    max_value: int = MAX_VALUE,
    two_digit_prob: float = TWO_DIGIT_PROB,
) -> list[Problem]:
    """``count`` distinct problems whose text is not in ``exclude``; difficulty drawn by ``weights``."""
    rng = random.Random(seed)
    seen = set(exclude or ())
    problems: list[Problem] = []
    attempts = 0
    while len(problems) < count:
        attempts += 1
        if attempts > 200 * count + 1000:
            raise ValueError(f"could not draw {count} distinct problems for {source}")
        d = rng.choices(difficulties, weights=weights)[0]
        p = make_problem(rng, d, f"{source}-{len(problems):05d}", source, max_value, two_digit_prob)
        if p.problem in seen:
            continue
        seen.add(p.problem)
        problems.append(p)
    return problems
