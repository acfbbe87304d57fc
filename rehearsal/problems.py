"""Simple arithmetic problems in the natural-language LaTeX style of the paper benchmarks.

Each problem is a short expression of one or two operations (``+``, ``-``, ``\\cdot`` /
``\\times``, parentheses) on small integers, phrased like the benchmark it imitates
(``"What is $12+7\\cdot 3$?"``, ``"Compute $45-18$."``, ``"Find the value of
$(8+5)\\times 6$."``), with an integer answer in ``[0, 999]`` and a worked evaluation
(``"12+7\\cdot 3=12+21=33"``) that the tiny rehearsal model is trained to write. Everything is
deterministic given a ``random.Random``.
"""

from __future__ import annotations

import dataclasses
import random

# Question phrasings per benchmark style ({e} is the LaTeX expression, without $).
PHRASINGS = {
    "math500": ("What is ${e}$?", "Compute ${e}$.", "Evaluate ${e}$.", "Find the value of ${e}$.", "Simplify ${e}$."),
    "aime": ("Find the value of ${e}$.", "Let $N={e}$. Find $N$.", "Compute the integer $N$ such that $N={e}$."),
    "amc": ("What is the value of ${e}$?", "What is ${e}$?", "Compute ${e}$."),
    "dapo": ("Calculate ${e}$.", "What is the value of ${e}$?", "Compute ${e}$.", "Find ${e}$."),
}
STYLES = tuple(PHRASINGS)
# Operand ranges per style: competition-like suites use larger numbers.
OPERANDS = {"math500": (1, 12), "aime": (2, 20), "amc": (1, 15), "dapo": (1, 15)}


@dataclasses.dataclass(frozen=True)
class Problem:
    text: str  # the problem statement
    answer: int
    steps: str  # worked evaluation, LaTeX without $: "12+7\cdot 3=12+21=33"
    operations: int  # 1 or 2
    equations: tuple[str, ...] = ()  # one per operation: ("7\cdot 3=21", "12+21=33")

    def solution(self) -> str:
        """A MATH-style worked solution ending in a boxed answer (datasets' ``solution`` columns)."""
        return f"We have ${self.steps}$, so the answer is $\\boxed{{{self.answer}}}$."


def _times(rng: random.Random) -> str:
    return "\\cdot " if rng.random() < 0.7 else "\\times "


def expression(rng: random.Random, lo: int, hi: int, operations: int) -> tuple[str, int, str, tuple[str, ...]]:
    """(LaTeX expression, value, worked chain, one equation per operation); operations in {1, 2}, value in [0, 999].

    For ``12+7\\cdot 3``: chain ``12+7\\cdot 3=12+21=33``, equations ``(7\\cdot 3=21, 12+21=33)``.
    """
    while True:
        a, b, c = (rng.randint(lo, hi) for _ in range(3))
        small = rng.randint(2, 9)
        t = _times(rng)
        if operations == 1:
            shape = rng.choice(("add", "sub", "mul"))
            if shape == "add":
                e, v = f"{a}+{b}", a + b
            elif shape == "sub":
                a, b = max(a, b), min(a, b)
                e, v = f"{a}-{b}", a - b
            else:
                e, v = f"{a}{t}{small}", a * small
            s, parts = f"{e}={v}", (f"{e}={v}",)
        else:
            shape = rng.choice(("add_mul", "mul_sub", "paren_mul", "add_sub"))
            if shape == "add_mul":  # a + b*c: multiplication first
                e, mid, v = f"{a}+{b}{t}{small}", f"{a}+{b * small}", a + b * small
                parts = (f"{b}{t}{small}={b * small}", f"{mid}={v}")
            elif shape == "mul_sub":
                e, mid, v = f"{b}{t}{small}-{a}", f"{b * small}-{a}", b * small - a
                parts = (f"{b}{t}{small}={b * small}", f"{mid}={v}")
            elif shape == "paren_mul":
                e, mid, v = f"({a}+{b}){t}{small}", f"{a + b}{t}{small}", (a + b) * small
                parts = (f"{a}+{b}={a + b}", f"{mid}={v}")
            else:
                e, mid, v = f"{a}+{b}-{c}", f"{a + b}-{c}", a + b - c
                parts = (f"{a}+{b}={a + b}", f"{mid}={v}")
            s = f"{e}={mid}={v}"
        if 0 <= v <= 999:
            return e, v, s, parts


def make_problem(rng: random.Random, style: str, operations: int | None = None) -> Problem:
    """One problem phrased in ``style`` (``math500``, ``aime``, ``amc``, ``dapo``)."""
    if style not in PHRASINGS:
        raise ValueError(f"unknown style {style!r} (known: {', '.join(STYLES)})")
    ops = operations if operations is not None else rng.choice((1, 2))
    lo, hi = OPERANDS[style]
    e, v, s, parts = expression(rng, lo, hi, ops)
    text = rng.choice(PHRASINGS[style]).format(e=e)
    return Problem(text=text, answer=v, steps=s, operations=ops, equations=parts)


def unique_problems(rng: random.Random, style: str, n: int, exclude: set[str] | None = None,
                    operations: list[int] | None = None) -> list[Problem]:
    """``n`` problems with distinct texts (none in ``exclude``); ``operations`` cycles per problem if given."""
    seen = set(exclude or ())
    out: list[Problem] = []
    while len(out) < n:
        ops = operations[len(out) % len(operations)] if operations else None
        p = make_problem(rng, style, ops)
        if p.text not in seen:
            seen.add(p.text)
            out.append(p)
    return out


def worked(p: Problem) -> str:
    """The reasoning part of a response: ``We compute $45-18=27$.`` or ``First, $..$. Then $..$.``"""
    if len(p.equations) == 2:
        return f"First, ${p.equations[0]}$. Then ${p.equations[1]}$."
    return f"We compute ${p.steps}$."


def answer_line_response(p: Problem) -> str:
    """What a model should write for DAPO's ``Answer:`` template."""
    return f"{worked(p)}\nAnswer: {p.answer}"


def boxed_response(p: Problem) -> str:
    """What a model should write for the Qwen-Math ``\\boxed{}`` template."""
    return f"{worked(p)} The final answer is $\\boxed{{{p.answer}}}$."
