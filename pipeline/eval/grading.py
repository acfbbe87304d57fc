"""Answer graders and a crash- and hang-proof batch grader.

``grade(response, answer, grader)`` checks one response. Graders are looked up by name
in ``GRADERS``; a ``"package.module:function"`` string names any importable function
``fn(response: str, answer: str) -> bool`` (worker processes import it themselves).

``answer_line`` is the DAPO-style verifier (docs/methods.md §8): only the last 300 characters of the
response are read, the LAST match of ``(?i)Answer\\s*:\\s*([^\\n]+)`` is the prediction,
both sides are normalised (``normalize_answer``) and must then match exactly; two
numbers are compared by value (``60`` == ``60.0``). Like DAPO's verifier the text after
the last ``=`` on the answer line is what counts (``Answer: x = 7`` -> ``7``). Unlike
DAPO's string replacements, commas are only dropped from well-formed thousands groups
(``1,000`` -> ``1000`` but ``1,2`` stays a list) and unit words are removed only as whole
trailing words.

``GraderPool`` grades in worker *processes* (spawn context, so it is safe whatever the
parent holds: threads, CUDA, ...); the score stage grades each file through one
(``grade_many``), the trainer every rollout's rewards through one pool for the whole run. Work goes out in chunks; inside a worker each sample
runs under a ``setitimer`` alarm in the worker's main thread, and the parent watches a
shared progress record: a sample that outlives its timeout (e.g. stuck in C code that
ignores the alarm) gets its worker killed, a sample that kills its worker is identified
from the same record; either way that sample is marked incorrect with status
``timeout``/``error``, a fresh worker replaces the old one and the rest of the chunk is
re-queued.
"""

from __future__ import annotations

import collections
import dataclasses
import importlib
import logging
import math
import multiprocessing
import multiprocessing.connection
import re
import signal
import time
from decimal import Decimal, InvalidOperation
from typing import Callable, Sequence

logger = logging.getLogger(__name__)

# Part of cache keys: bump whenever a grader's verdict on some input can change.
GRADER_VERSION = "grading-v1"

ANSWER_TAIL_CHARS = 300
ANSWER_LINE_RE = re.compile(r"(?i)Answer\s*:\s*([^\n]+)")

GraderFn = Callable[[str, str], bool]


# --------------------------------------------------------------------------- normalisation

_WRAPPER_COMMANDS = ("boxed", "fbox", "text", "textbf", "textrm", "textit", "mathrm", "mathbf", "mbox", "operatorname")
_WRAPPER_RE = re.compile(r"\\(?:" + "|".join(_WRAPPER_COMMANDS) + r")\s*\{")
_BOXED_NOBRACE_RE = re.compile(r"\\boxed\s+([^\s{}$]+)")
_LATEX_SPACING = (r"\left", r"\right", r"\!", r"\,", r"\;", r"\:", r"\ ", r"\quad", r"\qquad", "~")
_DEGREE_RE = re.compile(r"\^\s*\{\s*\\circ\s*\}|\^\s*\\circ|\\circ|°|\\degree")
_UNIT_WORDS = (
    "degrees", "degree", "units", "unit", "square", "sq", "cm", "mm", "km", "m", "meters", "meter",
    "inches", "inch", "feet", "foot", "ft", "miles", "mile", "mph", "hours", "hour", "minutes",
    "minute", "seconds", "second", "dollars", "dollar", "cents", "cent", "points", "ways",
    "students", "people", "days", "day", "years", "year", "pounds", "grams", "gm", "kg",
)
_TRAILING_UNIT_RE = re.compile(
    r"(?<=[0-9}.)])(?:\s+(?:" + "|".join(_UNIT_WORDS) + r")(?:\^?[23])?)+\s*$", re.IGNORECASE
)
_THOUSANDS_RE = re.compile(r"[+-]?\d{1,3}(?:,\d{3})+(?:\.\d+)?")
_NUMBER_RE = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_SIMPLE_FRAC_RE = re.compile(r"\\[dt]?frac\{([^{}]+)\}\{([^{}]+)\}")
_SHORT_FRAC_RE = re.compile(r"\\[dt]?frac(\d)(\d)")


def _unwrap_commands(s: str) -> str:
    """Replace ``\\cmd{content}`` by ``content`` for wrapper commands, with balanced braces."""
    for _ in range(32):  # nesting bound; each pass removes one wrapper
        m = _WRAPPER_RE.search(s)
        if not m:
            break
        depth, i = 1, m.end()
        while i < len(s) and depth:
            if s[i] == "{":
                depth += 1
            elif s[i] == "}":
                depth -= 1
            i += 1
        inner = s[m.end() : i - 1] if depth == 0 else s[m.end() :]
        s = s[: m.start()] + inner + s[i:]
    return _BOXED_NOBRACE_RE.sub(r"\1", s)


def normalize_answer(text: str) -> str:
    """Canonical form of a final answer (see the module docstring)."""
    s = str(text).replace("\u2212", "-").replace("\u2013", "-").strip()
    s = s.replace("\\$", "").replace("$", "")
    for token in (r"\(", r"\)", r"\[", r"\]"):
        s = s.replace(token, "")
    s = s.split("=")[-1]
    s = s.strip().strip("*").strip()  # markdown bold: "**7**"
    s = _unwrap_commands(s)
    s = _DEGREE_RE.sub("", s)
    for token in _LATEX_SPACING:
        s = s.replace(token, " " if token in (r"\quad", r"\qquad") else "")
    s = s.replace("{,}", ",").replace(r"\%", "%").replace(r"\dots", "").replace(r"\ldots", "")
    s = s.strip().rstrip(".").strip()
    s = _TRAILING_UNIT_RE.sub("", s).strip()  # "12 degrees", "12 square units", "5 cm^2"
    s = s.rstrip(".").strip()
    s = _SHORT_FRAC_RE.sub(r"\1/\2", s)
    s = _SIMPLE_FRAC_RE.sub(r"\1/\2", s)
    s = re.sub(r"\s+", "", s)
    if s.startswith("+"):
        s = s[1:]
    if _THOUSANDS_RE.fullmatch(s):
        s = s.replace(",", "")
    return s


def _as_number(s: str) -> Decimal | None:
    if not _NUMBER_RE.fullmatch(s):
        return None
    try:
        value = Decimal(s)
    except InvalidOperation:
        return None
    return value if value.is_finite() else None


def answers_match(pred: str, gold: str) -> bool:
    """Exact match of normalised answers; numbers compare by value."""
    p, g = normalize_answer(pred), normalize_answer(gold)
    if not p or not g:
        return False
    if p == g:
        return True
    pn, gn = _as_number(p), _as_number(g)
    return pn is not None and gn is not None and pn == gn


def extract_answer_line(response: str) -> str | None:
    """The last ``Answer: ...`` payload within the last 300 characters, or None."""
    matches = ANSWER_LINE_RE.findall(response[-ANSWER_TAIL_CHARS:])
    return matches[-1].strip() if matches else None


def grade_answer_line(response: str, answer: str) -> bool:
    pred = extract_answer_line(response)
    return pred is not None and answers_match(pred, answer)


GRADERS: dict[str, GraderFn | str] = {
    "answer_line": grade_answer_line,
    # Registered by import path: math-verify (sympy, ANTLR) is imported only where used.
    "math_verify": "pipeline.eval.math_graders:math_verify_grader",
    "boxed_strict": "pipeline.eval.math_graders:boxed_strict",
}


def resolve_grader(grader: str) -> GraderFn:
    """A registered grader by name, or ``"module:function"`` imported on demand."""
    if not isinstance(grader, str):
        raise ValueError(f"grader must be a name, got {grader!r}")
    fn = GRADERS.get(grader)
    if isinstance(fn, str):
        return resolve_grader(fn)
    if fn is not None:
        return fn
    if ":" in grader:
        module_name, _, attr = grader.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as err:
            raise ValueError(f"unknown grader {grader!r}: cannot import module {module_name!r} ({err})") from err
        fn = module
        for part in attr.split("."):
            fn = getattr(fn, part, None)
        if not callable(fn):
            raise ValueError(f"unknown grader {grader!r}: module {module_name!r} has no function {attr!r}")
        return fn
    known = ", ".join(sorted(GRADERS))
    raise ValueError(f"unknown grader {grader!r} (known: {known}; or give 'module:function')")


def worker_spec(grader: str) -> str:
    """The ``"module:function"`` a worker process imports to get ``grader``.

    Workers are fresh interpreters, so a grader registered in ``GRADERS`` at run time is
    passed by its import path; it must therefore be a module-level function.
    """
    fn = resolve_grader(grader)
    module, qualname = getattr(fn, "__module__", None), getattr(fn, "__qualname__", "")
    if not module or not qualname or "<" in qualname:
        raise ValueError(f"grader {grader!r} must be a module-level function to run in worker processes")
    return f"{module}:{qualname}"


def grade(response: str, answer: str, grader: str = "answer_line") -> bool:
    """Grade one response in-process (no timeout; use ``grade_many`` for untrusted work)."""
    return bool(resolve_grader(grader)(response, answer))


# --------------------------------------------------------------------------- batch grading

@dataclasses.dataclass(frozen=True, slots=True)
class GradeResult:
    correct: bool
    status: str  # "ok" | "timeout" | "error"
    message: str = ""


class _SampleTimeout(BaseException):
    """Raised by SIGALRM inside a worker; BaseException so graders' ``except Exception`` cannot eat it."""


def _on_alarm(signum, frame):  # pragma: no cover - runs in worker processes
    raise _SampleTimeout()


# Shared progress record of a worker: [position in chunk, time of last change, busy flag].
_POS, _STAMP, _BUSY = 0, 1, 2


def _worker_main(conn, progress, grader: str, timeout_s: float) -> None:  # pragma: no cover - worker process
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGALRM, _on_alarm)
    try:
        fn = resolve_grader(grader)
    except BaseException as err:  # noqa: BLE001 - reported to the parent
        conn.send(("fatal", f"{type(err).__name__}: {err}"))
        return
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        chunk_id, items = msg
        out = []
        for pos, (idx, response, answer) in enumerate(items):
            progress[_POS] = pos
            progress[_STAMP] = time.monotonic()
            progress[_BUSY] = 1.0
            correct, status, message = False, "ok", ""
            try:
                signal.setitimer(signal.ITIMER_REAL, timeout_s)
                try:
                    correct = bool(fn(response, answer))
                finally:
                    signal.setitimer(signal.ITIMER_REAL, 0)
            except _SampleTimeout:
                correct, status, message = False, "timeout", f"no verdict within {timeout_s:g}s"
            except BaseException as err:  # noqa: BLE001 - a grader failure is a verdict, not a crash
                correct, status, message = False, "error", f"{type(err).__name__}: {err}"[:500]
            progress[_BUSY] = 0.0
            progress[_STAMP] = time.monotonic()
            out.append((idx, correct, status, message))
        conn.send((chunk_id, out))


@dataclasses.dataclass
class _Worker:
    process: multiprocessing.process.BaseProcess
    conn: multiprocessing.connection.Connection
    progress: object
    chunk: list[int] | None = None
    chunk_id: int = -1
    sent_at: float = 0.0

    def ever_graded(self) -> bool:
        return self.progress[_STAMP] > 0.0


class GraderPool:
    """Worker processes that grade with a hard per-sample timeout, reusable across batches.

    ``grade(responses, answers)`` may be called many times (the trainer grades every
    rollout through one pool); workers start on first use and are replaced when a grader
    hangs or crashes one. A sample whose grader raises, outlives ``timeout_s`` or kills
    its worker is incorrect with status ``error``/``timeout``; it is logged and the
    others go on. Use as a context manager (or call :meth:`close`).
    """

    def __init__(self, grader: str = "answer_line", timeout_s: float = 5.0, workers: int = 1):
        if not (timeout_s > 0 and math.isfinite(timeout_s)):
            raise ValueError(f"timeout_s must be a positive number, got {timeout_s!r}")
        if int(workers) < 1:
            raise ValueError(f"workers must be >= 1, got {workers!r}")
        self.grader = grader
        self.spec = worker_spec(grader)  # unknown graders fail here, in the caller, with a clear message
        self.timeout_s = float(timeout_s)
        self.workers = int(workers)
        self.grace_s = max(1.0, 0.5 * timeout_s)
        self.stall_s = max(60.0, 4.0 * timeout_s)
        self._ctx = multiprocessing.get_context("spawn")
        self._pool: list[_Worker] = []
        self._failures_logged = 0

    def __enter__(self) -> "GraderPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ workers
    def _start_worker(self) -> _Worker:
        self._starts += 1
        if self._starts > self._max_starts:
            raise RuntimeError(f"grader {self.grader!r}: worker processes keep dying; gave up after {self._starts - 1} starts")
        parent_conn, child_conn = self._ctx.Pipe(duplex=True)
        progress = self._ctx.RawArray("d", 3)
        proc = self._ctx.Process(target=_worker_main, args=(child_conn, progress, self.spec, self.timeout_s), daemon=True)
        proc.start()
        child_conn.close()
        return _Worker(proc, parent_conn, progress)

    @staticmethod
    def _kill(w: _Worker) -> None:
        if w.process.is_alive():
            w.process.kill()
        w.process.join(timeout=5)
        w.conn.close()

    def close(self) -> None:
        """Stop the workers (politely, then by force)."""
        for w in self._pool:
            try:
                w.conn.send(None)
            except (OSError, ValueError):
                pass
        deadline = time.monotonic() + 2.0
        for w in self._pool:
            w.process.join(timeout=max(0.0, deadline - time.monotonic()))
            self._kill(w)
        self._pool = []

    # ------------------------------------------------------------------ grading
    def grade(self, responses: Sequence[str], answers: Sequence[str], chunk_size: int | None = None) -> list[GradeResult]:
        """Grade ``responses[i]`` against ``answers[i]``; one result per response, in order."""
        responses, answers = list(responses), list(answers)
        if len(responses) != len(answers):
            raise ValueError(f"{len(responses)} responses but {len(answers)} answers")
        total = len(responses)
        if total == 0:
            return []
        if chunk_size is None:
            chunk_size = max(1, min(512, math.ceil(total / (self.workers * 8))))
        chunk_size = max(1, int(chunk_size))
        self._results: list[GradeResult | None] = [None] * total
        self._remaining = total
        self._queue: collections.deque[list[int]] = collections.deque(
            list(range(i, min(i + chunk_size, total))) for i in range(0, total, chunk_size)
        )
        self._starts = len(self._pool)
        self._max_starts = self.workers + total + 16  # every restart settles >= 1 sample or splits a chunk
        self._startup_deaths = 0  # consecutive workers that died before grading anything
        self._next_chunk_id = 0
        try:
            while len(self._pool) < min(self.workers, total) or not self._pool:
                self._pool.append(self._start_worker())
            while self._remaining > 0:
                self._dispatch(responses, answers)
                busy = [w for w in self._pool if w.chunk is not None]
                if not busy:
                    if not self._queue:
                        raise RuntimeError("grade_many: internal error, samples left with no work queued")
                    continue
                waitables = [w.conn for w in busy] + [w.process.sentinel for w in busy]
                multiprocessing.connection.wait(waitables, timeout=min(0.2, self.grace_s))
                for slot in range(len(self._pool)):
                    self._collect(slot)
        except BaseException:
            self.close()  # a worker may hold a half-sent chunk: start clean next time
            raise
        return [r if r is not None else GradeResult(False, "error", "not graded") for r in self._results]

    def _record(self, idx: int, res: GradeResult) -> None:
        if self._results[idx] is None:
            self._remaining -= 1
        self._results[idx] = res
        if res.status != "ok":
            self._failures_logged += 1
            if self._failures_logged <= 20:
                logger.warning("grader %s: sample %d -> %s (%s); counted incorrect", self.grader, idx, res.status, res.message)
            elif self._failures_logged == 21:
                logger.warning("grader %s: further grading failures are not logged individually", self.grader)

    def _dispatch(self, responses: list[str], answers: list[str]) -> None:
        """Give every idle worker the next chunk of ungraded samples."""
        for w in self._pool:
            while w.chunk is None and self._queue:
                chunk = [i for i in self._queue.popleft() if self._results[i] is None]
                if not chunk:
                    continue
                w.chunk, w.chunk_id = chunk, self._next_chunk_id
                self._next_chunk_id += 1
                w.progress[_BUSY] = 0.0
                w.sent_at = time.monotonic()
                try:
                    w.conn.send((w.chunk_id, [(i, responses[i], answers[i]) for i in chunk]))
                except (OSError, ValueError):
                    pass  # a dead worker; handled by _collect from its sentinel

    def _collect(self, slot: int) -> None:
        """Take worker ``slot``'s verdicts, or replace it if it died, hung or stalled."""
        w = self._pool[slot]
        if w.chunk is None:
            return
        msg = None
        try:
            if w.conn.poll():
                msg = w.conn.recv()
        except (EOFError, OSError):
            msg = None
        if msg is not None:
            if msg[0] == "fatal":
                raise ValueError(f"grader {self.grader!r} could not be loaded in a worker process: {msg[1]}")
            chunk_id, out = msg
            if chunk_id == w.chunk_id:
                for idx, correct, status, message in out:
                    self._record(idx, GradeResult(bool(correct), status, message))
                w.chunk = None
            return
        now = time.monotonic()
        if not w.process.is_alive():
            code = w.process.exitcode
            self._startup_deaths = 0 if w.ever_graded() else self._startup_deaths + 1
            if self._startup_deaths >= 3:
                raise RuntimeError(
                    f"grader {self.grader!r}: worker processes die before grading anything (exit code {code}); "
                    "they are started with multiprocessing 'spawn', which re-imports the caller's main "
                    "module: is it importable and guarded by `if __name__ == '__main__':`?"
                )
            self._replace(slot, "error", f"grader crashed its worker process (exit code {code})")
        elif w.progress[_BUSY] == 1.0 and now - w.progress[_STAMP] > self.timeout_s + self.grace_s:
            self._replace(slot, "timeout", f"no verdict within {self.timeout_s:g}s; worker killed")
        elif w.progress[_BUSY] == 0.0 and now - max(w.progress[_STAMP], w.sent_at) > self.stall_s:
            self._replace(slot, "timeout", f"worker stalled for {self.stall_s:g}s outside a grader call; killed")

    def _replace(self, slot: int, status: str, reason: str) -> None:
        """Worker ``slot`` is gone or stuck: settle its culprit sample, re-queue the rest, start a new one."""
        w = self._pool[slot]
        chunk = w.chunk or []
        busy = w.progress[_BUSY] == 1.0
        pos = int(w.progress[_POS])
        if not w.ever_graded():  # died before touching a sample: no culprit, retry as is
            self._queue.appendleft(chunk)
        elif busy and 0 <= pos < len(chunk):
            self._record(chunk[pos], GradeResult(False, status, reason))
            rest = [i for i in chunk if self._results[i] is None]
            if rest:
                self._queue.appendleft(rest)
        elif len(chunk) > 1:  # died between samples: isolate each sample
            for i in reversed(chunk):
                if self._results[i] is None:
                    self._queue.appendleft([i])
        else:
            for i in chunk:
                self._record(i, GradeResult(False, status, reason))
        w.chunk = None
        self._kill(w)
        self._pool[slot] = self._start_worker()


def grade_many(
    responses: Sequence[str],
    answers: Sequence[str],
    grader: str = "answer_line",
    timeout_s: float = 5.0,
    workers: int = 1,
    chunk_size: int | None = None,
) -> list[GradeResult]:
    """Grade ``responses[i]`` against ``answers[i]`` in worker processes with a hard per-sample timeout
    (a :class:`GraderPool` for one batch)."""
    with GraderPool(grader, timeout_s, workers) as pool:
        return pool.grade(responses, answers, chunk_size)
