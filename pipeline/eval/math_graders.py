"""Boxed-answer graders for ``\\boxed{}`` prompts (Qwen2.5-Math style, docs/methods.md §8).

Both graders read only the LAST ``\\boxed{...}`` of a response (balanced braces, nesting
allowed, whitespace between ``\\boxed`` and ``{`` allowed). When the last ``\\boxed``
is not closed (a truncated response, unbalanced braces) the response has no boxed
answer: an earlier box is NOT used instead. No boxed answer -> incorrect.

``math_verify_grader``
    Hugging Face Math-Verify. The gold answer is parsed as ``$<answer>$`` (falling back
    to ``\\boxed{<answer>}`` when that parses to nothing), the prediction as
    ``\\boxed{<content of the last box>}``, and ``verify(gold, pred)`` is called with
    the GOLD FIRST: Math-Verify is not symmetric (assignments like ``x = 2`` and
    intervals are simplified on the gold side only).

    Timeouts: Math-Verify's own timeouts use ``signal.alarm``. That only works in a
    main thread, raises a ``TimeoutException`` derived from ``BaseException``, and —
    worse for us — its ``finally: signal.alarm(0)`` would cancel the per-sample
    ``setitimer`` alarm that ``pipeline.eval.grading.grade_many`` arms in its worker
    processes (alarm and ITIMER_REAL are the same timer). So both Math-Verify
    timeouts are disabled here (``parsing_timeout=None``, ``timeout_seconds=None``)
    and the hard per-sample timeout is ``grade_many``'s. Use ``grade_many`` (not
    ``grade``) for untrusted responses. Math-Verify's one-off warning that its timeout
    is disabled is filtered out of its loggers, since that is intended here.

``boxed_strict``
    The content of the last box compared with the gold answer by
    ``pipeline.eval.grading.answers_match`` — the very normaliser of the ``answer_line``
    grader (``normalize_answer``; numbers compare by value). No symbolic equivalence:
    ``\\frac{1}{2}`` matches ``1/2`` but not ``0.5``.
"""

from __future__ import annotations

import logging
import re

from pipeline.eval.grading import answers_match

__all__ = ["extract_last_boxed", "math_verify_grader", "boxed_strict"]

_BOXED_RE = re.compile(r"\\boxed\s*\{")


def extract_last_boxed(response: str) -> str | None:
    """Content of the last ``\\boxed{...}`` (balanced braces), or None if absent or unclosed.

    Linear in the length of the response: the last ``\\boxed`` is found from the end
    and only the text after it is scanned. Escaped braces (``\\{``, ``\\}``) inside the
    box are content, not delimiters.
    """
    if not isinstance(response, str):
        return None
    start = response.rfind("\\boxed")
    while start != -1:
        m = _BOXED_RE.match(response, start)
        if m:
            break
        start = response.rfind("\\boxed", 0, start)  # e.g. "\boxed" without a brace after it
    else:
        return None
    depth, i, n = 1, m.end(), len(response)
    while i < n:
        ch = response[i]
        if ch == "\\":
            i += 2  # skip the escaped character (\{, \}, \\)
            continue
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return response[m.end() : i].strip()
        i += 1
    return None


def boxed_strict(response: str, answer: str) -> bool:
    """Last boxed answer equals ``answer`` after ``answer_line``'s normalisation."""
    pred = extract_last_boxed(response)
    return pred is not None and answers_match(pred, answer)


# --------------------------------------------------------------------------- Math-Verify


class _DropDisabledTimeoutWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Timeout is disabled")


# Imported with this module, not on first use: grading workers import the grader's module
# before their timed loop, so a sample's timeout is not spent importing sympy/ANTLR.
try:
    import math_verify as _math_verify
except ImportError as _err:  # pragma: no cover - depends on the environment
    _math_verify = None
    _MATH_VERIFY_IMPORT_ERROR = str(_err)
else:
    for _name in ("math_verify.parser", "math_verify.grader"):
        logging.getLogger(_name).addFilter(_DropDisabledTimeoutWarning())


def _load_math_verify():
    if _math_verify is None:  # pragma: no cover - depends on the environment
        raise ImportError(
            "the math_verify grader needs the math-verify package: pip install 'math-verify[antlr4-13-2]' "
            f"({_MATH_VERIFY_IMPORT_ERROR})"
        )
    return _math_verify


def _parse(text: str):
    mv = _load_math_verify()
    return mv.parse(text, parsing_timeout=None, raise_on_error=False)


def parse_gold(answer: str) -> list:
    """Math-Verify's parse of a gold answer: ``$answer$``, else ``\\boxed{answer}``."""
    answer = str(answer).strip()
    if not answer:
        return []
    return _parse(f"${answer}$") or _parse(f"\\boxed{{{answer}}}")


def math_verify_grader(response: str, answer: str) -> bool:
    """Math-Verify equivalence of the last boxed answer with the gold answer (gold first)."""
    pred_text = extract_last_boxed(response)
    if not pred_text:
        return False
    gold = parse_gold(answer)
    if not gold:
        return False
    pred = _parse(f"\\boxed{{{pred_text}}}")
    if not pred:
        return False
    mv = _load_math_verify()
    return bool(mv.verify(gold, pred, timeout_seconds=None, raise_on_error=False))
