"""The papers' reported numbers, shipped as package data in ``pipeline/reference/``.

Each ``<name>.csv`` there starts with ``#`` comment lines (citation, units); the rest is
an ordinary CSV. ``load_reported(name)`` returns the data as a DataFrame, ``citation(name)``
the comment lines. ``name`` is a file stem (``cheng2025_table2``) or, for tests and
private copies, a path to a CSV file of the same form. See ``pipeline/reference/README.md``
for the full citations.
"""

from __future__ import annotations

import io
from importlib import resources
from pathlib import Path

import pandas as pd

from pipeline.errors import PipelineError

PACKAGE = "pipeline"
FOLDER = "reference"


def _folder():
    return resources.files(PACKAGE).joinpath(FOLDER)


def available() -> list[str]:
    """Stems of the reference CSVs shipped with the package, sorted."""
    return sorted(p.name[: -len(".csv")] for p in _folder().iterdir() if p.name.endswith(".csv"))


def _is_path(name: str) -> bool:
    return name.endswith(".csv") or "/" in name or "\\" in name


def _read_text(name: str) -> str:
    name = str(name)
    if _is_path(name):
        path = Path(name)
        if not path.is_file():
            raise PipelineError(f"reference file {path} does not exist")
        return path.read_text(encoding="utf-8")
    if name not in available():
        raise PipelineError(f"no reported numbers named {name!r}; known: {', '.join(available())}")
    return _folder().joinpath(f"{name}.csv").read_text(encoding="utf-8")


def _split(text: str) -> tuple[list[str], str]:
    comments, data = [], []
    for line in text.splitlines():
        if line.lstrip().startswith("#"):
            comments.append(line.lstrip()[1:].strip())
        elif line.strip():
            data.append(line)
    return comments, "\n".join(data) + "\n"


def load_reported(name: str) -> pd.DataFrame:
    """The reported numbers ``name`` (a shipped stem or a CSV path); comment lines skipped."""
    _, data = _split(_read_text(name))
    try:
        frame = pd.read_csv(io.StringIO(data))
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise PipelineError(f"reported numbers {name!r}: not a readable CSV ({err})") from err
    if frame.columns.empty:
        raise PipelineError(f"reported numbers {name!r}: no header row")
    return frame


def citation(name: str) -> list[str]:
    """The ``#`` header lines of ``name`` without the ``#`` (citation and units)."""
    comments, _ = _split(_read_text(name))
    return comments
