"""The normalised problem schema shared by the toy world and real benchmarks.

``id`` (str, unique), ``problem`` (str), ``answer`` (str), ``difficulty`` (int; -1 when a
benchmark has none), ``source`` (str).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from pipeline.errors import PipelineError

COLUMNS = {"id": "string", "problem": "string", "answer": "string", "difficulty": "int64", "source": "string"}


def problems_frame(problems) -> pd.DataFrame:
    """A schema-conforming frame from objects with the schema's attributes."""
    frame = pd.DataFrame({col: [getattr(p, col) for p in problems] for col in COLUMNS})
    return frame.astype({c: ("int64" if t == "int64" else "str") for c, t in COLUMNS.items()})


def read_problems(path: str | Path) -> pd.DataFrame:
    """Read a problem file, checking the schema; PipelineError names the file and the column."""
    path = Path(path)
    if not path.exists():
        raise PipelineError(f"problem file {path} does not exist")
    try:
        frame = pd.read_parquet(path)
    except Exception as err:  # pyarrow raises several types for a corrupt file
        raise PipelineError(f"problem file {path} is not readable Parquet ({err})") from None
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise PipelineError(
            f"problem file {path} lacks column(s) {', '.join(missing)}; expected schema: "
            + ", ".join(f"{c} ({t})" for c, t in COLUMNS.items())
        )
    if frame["id"].duplicated().any():
        dup = frame.loc[frame["id"].duplicated(), "id"].iloc[0]
        raise PipelineError(f"problem file {path} has duplicate id {dup!r}")
    if frame["answer"].isna().any() or frame["problem"].isna().any():
        raise PipelineError(f"problem file {path} has empty problem or answer values")
    return frame
