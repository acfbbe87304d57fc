"""A cache of grader verdicts, so that a changed K, a new table or a rerun never regrades,
and an interrupted ``score`` job resumes where it stopped.

A verdict is keyed by ``sha256(grader identity, gold answer, response text)``; the grader
identity is its name, :data:`~pipeline.eval.grading.GRADER_VERSION`, the sha256 of the
source file that defines the grading function (a ``module:function`` grader included) and,
for Math-Verify, the installed ``math-verify`` version: editing a grader invalidates its
verdicts and nothing else. Only completed gradings are stored; a timeout or an error is
retried on the next run (it may come from a loaded machine, and a cached failure would be
frozen).

On disk: a directory of Parquet parts (``key, correct``), one per graded chunk, each
written atomically — a job killed mid-way keeps every chunk it finished.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import inspect
import logging
from pathlib import Path

import pandas as pd

from pipeline.eval.grading import GRADER_VERSION, resolve_grader
from pipeline.io import write_parquet

log = logging.getLogger(__name__)


def grader_identity(grader: str) -> str:
    """What a verdict depends on besides its inputs (see the module docstring)."""
    fn = resolve_grader(grader)
    parts = [grader, GRADER_VERSION]
    try:
        source = Path(inspect.getsourcefile(fn) or "")
        parts.append(hashlib.sha256(source.read_bytes()).hexdigest() if source.is_file() else "no-source")
    except TypeError:  # a builtin: nothing to hash
        parts.append("builtin")
    if getattr(fn, "__module__", "") == "pipeline.eval.math_graders":
        try:
            parts.append("math-verify==" + importlib.metadata.version("math-verify"))
        except importlib.metadata.PackageNotFoundError:
            parts.append("math-verify missing")
    return "|".join(parts)


def verdict_key(identity: str, answer: str, text: str) -> str:
    h = hashlib.sha256()
    for part in (identity, answer, text):
        data = part.encode("utf-8", "surrogatepass")
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()


class VerdictCache:
    """Verdicts already graded (``lookup``) and new ones (``add``: one Parquet part per call)."""

    def __init__(self, directory: str | Path | None):
        self.dir = Path(directory) if directory else None
        self.known: dict[str, bool] = {}
        self._parts = 0
        if self.dir is not None and self.dir.is_dir():
            for part in sorted(self.dir.glob("part-*.parquet")):
                try:
                    frame = pd.read_parquet(part)
                except Exception as err:  # noqa: BLE001 - a damaged part is regraded, not fatal
                    log.warning("verdict cache: ignoring unreadable part %s (%s)", part, err)
                    continue
                self.known.update(zip(frame["key"].astype(str), frame["correct"].astype(bool)))
                self._parts = max(self._parts, int(part.stem.split("-")[1]) + 1)

    def lookup(self, key: str) -> bool | None:
        return self.known.get(key)

    def add(self, keys: list[str], correct: list[bool]) -> None:
        if not keys:
            return
        self.known.update(zip(keys, correct))
        if self.dir is None:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        write_parquet(self.dir / f"part-{self._parts:06d}.parquet", pd.DataFrame({"key": keys, "correct": correct}))
        self._parts += 1
