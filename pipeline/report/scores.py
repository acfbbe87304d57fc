"""What every report stage shares: the score files, the row order, number and LaTeX formatting,
and the JSON arguments the rules pass.

The report stages (``tables``, ``compare``, ``crossing``, ``curves``, ``figures``, ``claims``,
``report``) each import from here, never from one another.
"""

from __future__ import annotations

import json
from pathlib import Path

from pipeline.errors import PipelineError
from pipeline.io import read_json

BASE = "base"


def load_score_items(paths: list[Path]) -> list[tuple[str, object]]:
    """(path, parsed JSON) for each Pass@k file; a missing or unreadable file is a PipelineError."""
    items = []
    for path in paths:
        try:
            items.append((str(path), read_json(path)))
        except FileNotFoundError as err:
            raise PipelineError(f"Pass@k file {path} does not exist") from err
        except json.JSONDecodeError as err:
            raise PipelineError(f"Pass@k file {path} is not valid JSON ({err})") from err
    return items


def parse_json_arg(text: str | None, flag: str, what: str, empty=None):
    """A JSON-object command-line argument (``--baselines``, ``--suite-map``, ...): ``empty``
    when absent or blank; a PipelineError naming ``flag`` when it is not a JSON object
    (``what`` says what the object maps)."""
    if text is None or not text.strip():
        return {} if empty is None else empty
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as err:
        raise PipelineError(f"{flag} is not valid JSON ({err})") from err
    if not isinstance(obj, dict):
        raise PipelineError(f"{flag} must be a JSON object {what}")
    return obj


def row_order(methods: list[str]) -> list[str]:
    """``base`` first, then the given methods without duplicates."""
    out = [BASE]
    for m in methods:
        if m not in out:
            out.append(m)
    return out


def parse_baselines(text: str | None) -> dict[str, str]:
    """``--baselines`` JSON: method -> baseline method (both strings, not equal)."""
    obj = parse_json_arg(text, "--baselines", "mapping a method to its baseline method")
    for method, baseline in obj.items():
        if not isinstance(baseline, str) or not baseline or baseline == method:
            raise PipelineError(f"--baselines: method {method!r} needs a baseline method other than itself, got {baseline!r}")
    return {str(k): str(v) for k, v in obj.items()}


def parse_reported(specs: list[str] | None) -> list[tuple[str, str]]:
    """``NAME:MODEL`` strings -> [(name, model)] (split at the last ':')."""
    out = []
    for spec in specs or []:
        name, sep, model = str(spec).rpartition(":")
        if not sep or not name or not model:
            raise PipelineError(f"--reported {spec!r}: expected NAME:MODEL, e.g. cheng2025_table2:Qwen2.5-7B")
        out.append((name, model))
    return out


def signed(v: float) -> str:
    """``+1.3`` / ``-0.4`` / ``0.0`` (one decimal; a value that rounds to zero has no sign)."""
    r = round(float(v), 1)
    if r == 0:
        return "0.0"
    return f"{r:+.1f}"


_LATEX_ESCAPES = {"\\": r"\textbackslash{}", "_": r"\_", "%": r"\%", "&": r"\&", "#": r"\#", "$": r"\$", "{": r"\{", "}": r"\}"}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_ESCAPES.get(ch, ch) for ch in str(text))


def curve_points(items: list[tuple[str, dict]]):
    """Long frame ``method, seed, suite, k, passk, majk`` from score JSON objects: Pass@k and
    maj@k (fractions; majk NaN where the score file has none) at every k of each file's grid."""
    import math

    import pandas as pd

    rows, seen = [], {}
    for source, obj in items:
        if not isinstance(obj, dict):
            raise PipelineError(f"{source}: expected a JSON object written by 'score'")
        for key in ("method", "suite", "pass_at_k"):
            if key not in obj:
                raise PipelineError(f"{source}: missing key {key!r}")
        seed = -1 if obj.get("seed") is None else int(obj["seed"])
        ident = (str(obj["method"]), seed, str(obj["suite"]))
        if ident in seen:
            raise PipelineError(f"two Pass@k files for the same method, seed and suite: {seen[ident]}, {source}")
        seen[ident] = source
        majority = obj.get("maj_at_k") or {}
        if not isinstance(majority, dict):
            raise PipelineError(f"{source}: maj_at_k must be an object keyed by k, got {type(majority).__name__}")
        for k, value in obj["pass_at_k"].items():
            try:
                k_int = int(k)
            except ValueError as err:
                raise PipelineError(f"{source}: pass_at_k key {k!r} is not an integer k") from err
            maj = majority.get(k)
            rows.append({"method": ident[0], "seed": seed, "suite": ident[2], "k": k_int, "passk": float(value),
                         "majk": math.nan if maj is None else float(maj)})
    return pd.DataFrame(rows, columns=["method", "seed", "suite", "k", "passk", "majk"])
