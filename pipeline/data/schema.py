"""The normalised problem schema shared by the toy world and real benchmarks.

``id`` (str, unique), ``problem`` (str), ``answer`` (str), ``difficulty`` (int; -1 when a
benchmark has none), ``source`` (str).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.errors import PipelineError

COLUMNS = {"id": "string", "problem": "string", "answer": "string", "difficulty": "int64", "source": "string"}
EXPECTED = "expected a Parquet file with columns " + ", ".join(f"{c} ({t})" for c, t in COLUMNS.items())


def problems_frame(problems) -> pd.DataFrame:
    """A schema-conforming frame from objects with the schema's attributes."""
    frame = pd.DataFrame({col: [getattr(p, col) for p in problems] for col in COLUMNS})
    return frame.astype({c: ("int64" if t == "int64" else "str") for c, t in COLUMNS.items()})


def _first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__


def read_problems(path: str | Path) -> pd.DataFrame:
    """Read a problem file, checking the schema.

    Every problem gives a one-line PipelineError naming the file, the column and (where
    there is one) the row: a missing or unreadable file, a missing column, no rows, an
    empty or duplicate id, an empty problem or answer, a non-integer difficulty.
    """
    path = Path(path)
    if not path.is_file():
        raise PipelineError(f"problem file {path} does not exist ({EXPECTED})")
    try:
        frame = pd.read_parquet(path)
    except Exception as err:  # noqa: BLE001 - pyarrow raises several types for a corrupt file
        raise PipelineError(f"problem file {path} is not readable Parquet ({_first_line(err)}); {EXPECTED}") from None
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise PipelineError(f"problem file {path} lacks column(s) {', '.join(missing)}; {EXPECTED}")
    if len(frame) == 0:
        raise PipelineError(f"problem file {path} has no rows")
    for col in ("id", "problem", "answer"):
        empty = frame[col].isna().to_numpy() | (frame[col].astype(str).str.strip() == "").to_numpy()
        if empty.any():
            row = int(np.flatnonzero(empty)[0])
            ident = "" if col == "id" else f" (id {str(frame['id'].iloc[row])!r})"
            raise PipelineError(f"problem file {path}: column {col!r} is null or empty in row {row}{ident}")
    ids = frame["id"].astype(str)
    if ids.duplicated().any():
        dup = ids[ids.duplicated()].iloc[0]
        raise PipelineError(f"problem file {path} has duplicate id {dup!r}; ids must be unique")
    difficulty = pd.to_numeric(frame["difficulty"], errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(difficulty) | (difficulty != np.round(difficulty))
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise PipelineError(
            f"problem file {path}: column 'difficulty' must hold integers (row {row}: {frame['difficulty'].iloc[row]!r})"
        )
    return frame
