"""Paper-scale datasets (docs/methods.md §8) loaded through ``datasets.load_dataset``, mapped to the
normalised problem schema of :mod:`pipeline.data.schema`.

``BENCHMARKS`` describes each dataset: hub id, config(s), split, where the problem and the
answer live, its own id column, its quirks, its row counts and the commit the paper
configs pin (``known_revision``). ``load_benchmark(name, ...)`` returns a DataFrame with
exactly the schema's columns (``id``, ``problem``, ``answer``, ``difficulty``,
``source``; dtypes as ``problems_frame`` makes them), checks the row counts
(``PipelineError`` naming the dataset, expected vs got) and records where the rows came
from in ``frame.attrs["provenance"]`` (``provenance(frame)``; the data stage writes it
into its report).

Benchmarks (the paper's evaluation suites and training set, plus alternatives):

* ``aime24`` ``HuggingFaceH4/aime_2024`` (train, 30) - ``aime25`` ``opencompass/AIME2025``
  configs ``AIME2025-I`` + ``AIME2025-II`` (test, 15 + 15) - ``amc23``
  ``AI-MO/aimo-validation-amc`` (train, all 83 rows: 43 AMC 12 2022 + 40 AMC 12 2023;
  Cheng et al.'s AMC23 Pass@128 values are multiples of 1/83) - ``math500``
  ``HuggingFaceH4/MATH-500`` (test, 500) - ``dapo17k``
  ``BytedTsinghua-SIA/DAPO-Math-17k`` (train, 1,791,700 rows, 17,398 distinct problems).
* Alternatives (not what Cheng et al. report on): ``aime24_mathai`` ``math-ai/aime24``
  (test, 30; the answer is the ``\boxed{}`` of its ``solution`` column),
  ``aime25_mathai`` ``math-ai/aime25`` (test, 30), ``amc23_mathai`` ``math-ai/amc23``
  (test, 40: AMC 12 2023 only, so its Pass@K is not comparable with the paper's 83-row
  AMC23).

Where the data comes from (exactly one):

* the hub (default): ``load_dataset(hub_id, config, split=..., revision=...)`` through
  :func:`hub_load_dataset`. Pinning is mandatory: ``revision`` (a commit hash) must be
  given (the paper configs pin ``known_revision``); a hub load without one raises, naming
  the known commit.
* ``data_files``: local json/jsonl/parquet/csv files in the dataset's OWN column layout
  (e.g. a download of the hub repository's data files), read with the ``datasets``
  builder named by their extension. Several files are concatenated in the order given
  (AIME 2025: the ``AIME2025-I`` file, then the ``AIME2025-II`` file).
* ``path``: a local directory, either written by ``save_to_disk`` (a ``Dataset`` — for
  AIME 2025 both configs' rows, I then II — or a ``DatasetDict`` holding the spec's split)
  or a script-free dataset directory (a clone of the hub repository, or a mirror written
  by ``rehearsal.mirrors``) loaded with ``load_dataset(path, config, split=...)``.

Local loads need no revision (one given is recorded in the provenance, not checked);
every mapping, quirk and check below applies to all three.

Row counts: the spec's counts are asserted unless ``expected_rows`` is given (an exact
count or an inclusive ``[low, high]`` range, e.g. for a small local mirror); for
DAPO-Math-17k ``expected_rows`` is the number of distinct problems, and giving it also
turns off the check of the raw row count (1,791,700) and of the number of conflicting
problems (7, a warning when it differs).

Mapping and quirks:

* ids: ``<benchmark>-<own id>`` where the dataset has an id column (AIME 2024 and AMC
  ``id``, MATH-500 ``unique_id``, DAPO ``extra_info.index``, the math-ai sets ``id``),
  else ``<benchmark>-<row>`` (row position after de-duplication). Ids must be unique.
* answers are strings; numeric answers become canonical strings: ``8.0`` -> ``"8"``,
  ``0.5`` -> ``"0.5"`` (AMC stores its answers as floats).
* AIME 2025: the degree sign of the one answer written ``...^\\circ`` is removed.
* MATH-500: ``level`` -> ``difficulty`` (1-5); every other benchmark has ``-1``.
* problems and answers are stripped of surrounding whitespace.
* DAPO-Math-17k: problem = ``prompt[0]["content"]``, answer =
  ``reward_model["ground_truth"]``. DAPO's prompts embed its instruction
  (``DAPO_PREFIX`` before the problem, ``DAPO_SUFFIX`` after it); they are stripped where
  present so that training and evaluation problems are bare problem texts and the prompt
  template adds the instruction uniformly (``DAPO_TEMPLATE`` re-creates DAPO's prompt
  exactly). The ~1.79M rows are ~100x duplicates: rows are de-duplicated by the stripped
  problem text, keeping the first occurrence (its id, in order of first appearance).
  **Conflicting duplicates** (``CONFLICT_RULE``): a problem whose copies carry more than
  one distinct answer (canonical strings compared, numbers by value: ``7.0`` = ``7``; 7
  problems in the pinned revision) is
  DROPPED entirely — its reward would be wrong for some share of its copies whichever
  answer were kept, and a majority is not defined for an even split. The dropped problems
  (id, answers and how many rows carry each) are logged and listed in the provenance;
  the pinned revision yields 17,398 - 7 = 17,391 training problems.

``decontamination_report`` / ``check_decontamination`` compare training problems with the
evaluation suites by normalised text.
"""

from __future__ import annotations

import dataclasses
import logging
import numbers
import os
import re
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd

from pipeline.data.schema import problems_frame
from pipeline.errors import PipelineError

log = logging.getLogger(__name__)

DAPO_PREFIX = (
    "Solve the following math problem step by step. The last line of your response should be of the form "
    "Answer: $Answer (without quotes) where $Answer is the answer to the problem.\n\n"
)
DAPO_SUFFIX = '\n\nRemember to put your answer on its own line after "Answer:".'
# A prompt template (``str.format`` with ``{problem}``) that rebuilds DAPO's prompt from a bare problem.
DAPO_TEMPLATE = DAPO_PREFIX + "{problem}" + DAPO_SUFFIX

# What the de-duplication does with a problem whose copies disagree on the answer.
CONFLICT_RULE = "drop"

_BUILDERS = {".json": "json", ".jsonl": "json", ".parquet": "parquet", ".csv": "csv"}
_DEGREE_RE = re.compile(r"\s*(?:\^\s*\{\s*\\circ\s*\}|\^\s*\\circ|\\circ|\\degree|°)\s*$")
_LEVEL_RE = re.compile(r"(-?\d+)")
_COMMIT_RE = re.compile(r"[0-9a-f]{40}")
_BOXED_RE = re.compile(r"\\boxed\s*\{")

ExpectedRows = int | tuple[int, int]


@dataclasses.dataclass(frozen=True)
class BenchmarkSpec:
    """How one dataset maps to the problem schema.

    Field paths use dots: ``"prompt.0.content"`` is ``row["prompt"][0]["content"]``.
    ``known_revision`` is the commit of the hub repository the paper configs pin (docs/methods.md §8;
    pinned by several independent public projects); the loader never uses it implicitly:
    a hub load takes the config's ``revision``. ``expected_rows`` is the row count after
    de-duplication (the distinct problems) for ``dedup_problems`` datasets, whose raw
    rows are ``expected_raw_rows`` and whose problems with conflicting answers number
    ``expected_conflicts``.
    """

    name: str
    hub_id: str
    split: str
    problem_field: str
    answer_field: str
    expected_rows: ExpectedRows
    configs: tuple[str | None, ...] = (None,)
    id_field: str | None = None
    difficulty_field: str | None = None
    known_revision: str | None = None
    strip_degree_sign: bool = False
    strip_dapo_instruction: bool = False
    dedup_problems: bool = False
    answer_from_boxed: bool = False
    expected_raw_rows: int | None = None
    expected_conflicts: int | None = None


BENCHMARKS: dict[str, BenchmarkSpec] = {
    "aime24": BenchmarkSpec(
        name="aime24", hub_id="HuggingFaceH4/aime_2024", split="train",
        problem_field="problem", answer_field="answer", id_field="id", expected_rows=30,
        known_revision="2fe88a2f1091d5048c0f36abc874fb997b3dd99a",
    ),
    "aime25": BenchmarkSpec(
        name="aime25", hub_id="opencompass/AIME2025", configs=("AIME2025-I", "AIME2025-II"), split="test",
        problem_field="question", answer_field="answer", expected_rows=30, strip_degree_sign=True,
        known_revision="a6ad95f611d72cf628a80b58bd0432ef6638f958",
    ),
    "amc23": BenchmarkSpec(
        name="amc23", hub_id="AI-MO/aimo-validation-amc", split="train",
        problem_field="problem", answer_field="answer", id_field="id", expected_rows=83,
        known_revision="69d78a4a2c840e82d69af6bc742bda09005f6316",
    ),
    "math500": BenchmarkSpec(
        name="math500", hub_id="HuggingFaceH4/MATH-500", split="test",
        problem_field="problem", answer_field="answer", id_field="unique_id", difficulty_field="level",
        expected_rows=500, known_revision="6e4ed1a2a79af7d8630a6b768ec859cb5af4d3be",
    ),
    "dapo17k": BenchmarkSpec(
        name="dapo17k", hub_id="BytedTsinghua-SIA/DAPO-Math-17k", split="train",
        problem_field="prompt.0.content", answer_field="reward_model.ground_truth", id_field="extra_info.index",
        expected_rows=17_398, expected_raw_rows=1_791_700, expected_conflicts=7,
        strip_dapo_instruction=True, dedup_problems=True,
        known_revision="65877096c24ffa7abc4e4fa5edb95cf3413a5674",
    ),
    # Alternatives: other public copies, not the sets Cheng et al. report on.
    "aime24_mathai": BenchmarkSpec(
        name="aime24_mathai", hub_id="math-ai/aime24", split="test",
        problem_field="problem", answer_field="solution", answer_from_boxed=True, id_field="id", expected_rows=30,
        known_revision="83a7f387baaa524a8bda0022eac0541582297103",
    ),
    "aime25_mathai": BenchmarkSpec(
        name="aime25_mathai", hub_id="math-ai/aime25", split="test",
        problem_field="problem", answer_field="answer", id_field="id", expected_rows=30, strip_degree_sign=True,
        known_revision="563bb8404243c5f09de6ec262f2db674fe5bce9b",
    ),
    "amc23_mathai": BenchmarkSpec(
        name="amc23_mathai", hub_id="math-ai/amc23", split="test",
        problem_field="question", answer_field="answer", id_field="id", expected_rows=40,
        known_revision="80815d37005feb82cd7f8fbc6901d5d3eff43057",
    ),
}

LOADER_CONFIG_KEYS = ("revision", "data_files", "path", "cache_dir", "expected_rows")
# benchmark "custom": your own data, no code change (README "Your own data")
CUSTOM_KEYS = ("name", "repo_id", "config", "split", "fields", "answer_from_boxed")
CUSTOM_FIELDS = ("problem", "answer", "id", "difficulty")


def custom_spec(cfg: Mapping[str, Any]) -> BenchmarkSpec:
    """A :class:`BenchmarkSpec` from a config entry with ``benchmark: custom``: a local file
    (``data_files``: parquet / jsonl / json / csv) or a hub repository (``repo_id`` at a pinned
    ``revision``, ``split``, optional ``config``), and ``fields`` mapping the problem schema to
    the data's own columns (dotted paths into nested records: ``prompt.0.content``)."""
    fields = dict(cfg.get("fields") or {})
    unknown = sorted(set(fields) - set(CUSTOM_FIELDS))
    if unknown:
        raise PipelineError(f"benchmark custom: unknown field(s) {', '.join(unknown)} (known: {', '.join(CUSTOM_FIELDS)})")
    for required in ("problem", "answer"):
        if not fields.get(required):
            raise PipelineError(f"benchmark custom: fields.{required} names the column that holds the {required}")
    name = cfg.get("name") or "custom"
    return BenchmarkSpec(
        name=name, hub_id=cfg.get("repo_id") or "local", split=cfg.get("split") or "train",
        configs=(cfg.get("config"),), problem_field=fields["problem"], answer_field=fields["answer"],
        id_field=fields.get("id"), difficulty_field=fields.get("difficulty"),
        answer_from_boxed=bool(cfg.get("answer_from_boxed", False)),
        expected_rows=(1, 10**9),  # any size unless the config gives expected_rows
    )


@dataclasses.dataclass(frozen=True)
class _HubProblem:
    id: str
    problem: str
    answer: str
    difficulty: int
    source: str


# --------------------------------------------------------------------------- loading


def load_benchmark(
    name: str,
    *,
    revision: str | None = None,
    data_files: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
    path: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    expected_rows: ExpectedRows | None = None,
    spec: BenchmarkSpec | None = None,
) -> pd.DataFrame:
    """The benchmark ``name`` of ``BENCHMARKS`` (or ``spec``, a custom one) as a
    schema-conforming DataFrame (see the module doc).

    ``expected_rows`` (an exact count or an inclusive ``(low, high)`` range) overrides the
    spec's row counts, e.g. for small local fixtures. ``frame.attrs["provenance"]`` says
    where the rows came from (hub id, configs, split, revision, local origin) and what the
    loader did (raw rows, distinct problems, dropped conflicting problems).
    """
    spec = spec or get_spec(name)
    if data_files is not None and path is not None:
        raise PipelineError(f"benchmark {name}: give data_files or path, not both")
    cache = str(cache_dir) if cache_dir is not None else None
    if data_files is not None:
        source = "data_files"
        origin, dataset = _load_data_files(spec, data_files, cache)
    elif path is not None:
        source = "path"
        origin, dataset = _load_local_path(spec, Path(path), cache)
    else:
        source = "hub"
        origin, dataset = _load_hub(spec, revision, cache)
    if source != "hub" and revision:
        log.info("benchmark %s: loaded from local %s %s; revision %s is recorded, not checked", name, source, origin, revision)
    provenance = {
        "benchmark": spec.name,
        "hub_id": spec.hub_id,
        "configs": [c for c in spec.configs if c is not None],
        "split": spec.split,
        "source": source,
        "revision": revision,
        "origin": origin,
    }
    if expected_rows is None:
        counts = {"rows": spec.expected_rows, "raw_rows": spec.expected_raw_rows, "conflicts": spec.expected_conflicts}
    else:
        counts = {"rows": _as_expected(name, expected_rows), "raw_rows": None, "conflicts": None}
    frame = _to_frame(spec, dataset, origin, counts, provenance)
    frame.attrs["provenance"] = provenance
    return frame


def load_benchmark_from_config(name: str, cfg: Mapping[str, Any] | None) -> pd.DataFrame:
    """``load_benchmark`` with keyword arguments from a config mapping (keys: ``LOADER_CONFIG_KEYS``).

    ``expected_rows`` may be an int or a two-element list ``[low, high]``.
    """
    cfg = dict(cfg or {})
    custom = {}
    if name == "custom":
        custom = {k: cfg.pop(k) for k in CUSTOM_KEYS if k in cfg}
    unknown = sorted(set(cfg) - set(LOADER_CONFIG_KEYS))
    if unknown:
        known = LOADER_CONFIG_KEYS + (CUSTOM_KEYS if name == "custom" else ())
        raise PipelineError(f"benchmark {name}: unknown loader key(s) {', '.join(unknown)} (known: {', '.join(known)})")
    spec = custom_spec(custom) if name == "custom" else None
    return load_benchmark(name, spec=spec, **{k: v for k, v in cfg.items() if v is not None})


def provenance(frame: pd.DataFrame) -> dict:
    """Where a loaded benchmark's rows came from (``frame.attrs["provenance"]``; ``{}`` if unknown)."""
    return dict(frame.attrs.get("provenance", {}))


def get_spec(name: str) -> BenchmarkSpec:
    try:
        return BENCHMARKS[name]
    except KeyError:
        raise PipelineError(f"unknown benchmark {name!r} (known: {', '.join(sorted(BENCHMARKS))})") from None


def _as_expected(name: str, value: Any) -> ExpectedRows:
    if isinstance(value, bool):
        raise PipelineError(f"benchmark {name}: expected_rows must be an int or [low, high], got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    ) and value[0] <= value[1]:
        return (int(value[0]), int(value[1]))
    raise PipelineError(f"benchmark {name}: expected_rows must be an int or [low, high], got {value!r}")


def hub_load_dataset(hub_id: str, config: str | None, *, split: str, revision: str, cache_dir: str | None):
    """The one call that reaches the hub: ``datasets.load_dataset`` of one config and split at ``revision``.

    Kept as a module-level function so that tests can stand a local repository in for the
    hub and check exactly what the loader asks for.
    """
    import datasets

    return datasets.load_dataset(hub_id, config, split=split, revision=revision, cache_dir=cache_dir)


def _load_hub(spec: BenchmarkSpec, revision: str | None, cache_dir: str | None):
    if not revision:
        known = f" (the paper configs pin {spec.known_revision})" if spec.known_revision else ""
        raise PipelineError(
            f"benchmark {spec.name}: loading {spec.hub_id} from the hub needs a pinned revision "
            f"(a commit hash of the dataset repository{known}): set revision for {spec.name} in the config, "
            "or give local data_files/path"
        )
    if not _COMMIT_RE.fullmatch(str(revision)):
        log.warning("benchmark %s: revision %r is not a commit hash; a branch or tag can move", spec.name, revision)
    elif spec.known_revision and revision != spec.known_revision:
        log.warning(
            "benchmark %s: revision %s differs from the commit the paper configs pin (%s); row counts may differ",
            spec.name, revision, spec.known_revision,
        )

    parts = []
    for config in spec.configs:
        where = f"{spec.hub_id}" + (f" config {config}" if config else "") + f" split {spec.split} @ {revision}"
        try:
            parts.append(hub_load_dataset(spec.hub_id, config, split=spec.split, revision=revision, cache_dir=cache_dir))
        except Exception as err:  # network, auth, missing revision/config: one line for the CLI
            raise PipelineError(f"benchmark {spec.name}: cannot load {where} ({type(err).__name__}: {err})") from err
    return f"{spec.hub_id}@{revision}", _concat(parts)


def _load_data_files(spec: BenchmarkSpec, data_files, cache_dir: str | None):
    files = [data_files] if isinstance(data_files, (str, os.PathLike)) else list(data_files)
    if not files:
        raise PipelineError(f"benchmark {spec.name}: data_files is empty")
    builders = set()
    for f in files:
        p = Path(f)
        if not p.is_file():
            raise PipelineError(f"benchmark {spec.name}: data file {p} does not exist")
        builder = _BUILDERS.get(p.suffix.lower())
        if builder is None:
            raise PipelineError(
                f"benchmark {spec.name}: data file {p} has an unsupported extension "
                f"(supported: {', '.join(sorted(_BUILDERS))})"
            )
        builders.add(builder)
    if len(builders) > 1:
        raise PipelineError(f"benchmark {spec.name}: data files mix formats ({', '.join(sorted(builders))})")
    import datasets

    paths = [str(Path(f)) for f in files]
    try:
        ds = datasets.load_dataset(builders.pop(), data_files=paths, split="train", cache_dir=cache_dir)
    except Exception as err:  # malformed files: one line naming them
        raise PipelineError(f"benchmark {spec.name}: cannot read {', '.join(paths)} ({type(err).__name__}: {err})") from err
    return ", ".join(paths), ds


def _load_local_path(spec: BenchmarkSpec, path: Path, cache_dir: str | None):
    if not path.is_dir():
        raise PipelineError(f"benchmark {spec.name}: local dataset directory {path} does not exist")
    import datasets

    try:
        if (path / "dataset_dict.json").is_file() or (path / "state.json").is_file():  # save_to_disk layouts
            loaded = datasets.load_from_disk(str(path))
            if isinstance(loaded, datasets.DatasetDict):
                if spec.split not in loaded:
                    raise PipelineError(
                        f"benchmark {spec.name}: {path} has splits {', '.join(loaded)}, not {spec.split!r}"
                    )
                loaded = loaded[spec.split]
            return str(path), loaded
        parts = [
            datasets.load_dataset(str(path), config, split=spec.split, cache_dir=cache_dir) for config in spec.configs
        ]
    except PipelineError:
        raise
    except Exception as err:
        raise PipelineError(f"benchmark {spec.name}: cannot load local dataset {path} ({type(err).__name__}: {err})") from err
    return str(path), _concat(parts)


def _concat(parts):
    if len(parts) == 1:
        return parts[0]
    import datasets

    return datasets.concatenate_datasets(parts)


# --------------------------------------------------------------------------- mapping


def _field(spec: BenchmarkSpec, table, field_path: str, origin: str):
    """The (chunked) arrow array at a dotted path: column, then list indices / struct fields."""
    import pyarrow as pa
    import pyarrow.compute as pc

    head, *rest = field_path.split(".")
    if head not in table.column_names:
        raise PipelineError(
            f"benchmark {spec.name} ({origin}): no column {head!r} (for {field_path!r}); "
            f"columns: {', '.join(table.column_names)}"
        )
    arr = table.column(head)
    walked = head
    for part in rest:
        typ = arr.type
        try:
            if part.isdigit() and (pa.types.is_list(typ) or pa.types.is_large_list(typ)):
                arr = pc.list_element(arr, int(part))
            elif pa.types.is_struct(typ) and typ.get_field_index(part) >= 0:
                arr = pc.struct_field(arr, part)
            else:
                raise PipelineError(
                    f"benchmark {spec.name} ({origin}): {walked!r} has type {typ}, which has no {part!r} "
                    f"(for {field_path!r})"
                )
        except PipelineError:
            raise
        except Exception as err:  # e.g. an empty prompt list
            raise PipelineError(f"benchmark {spec.name} ({origin}): cannot read {field_path!r} ({err})") from err
        walked += "." + part
    return arr


def canonical_answer(value: Any) -> str | None:
    """An answer as a string; numbers in canonical form (``8.0`` -> ``"8"``, ``0.5`` -> ``"0.5"``)."""
    if value is None:
        return None
    if isinstance(value, (bool, numbers.Integral)):
        return str(value)
    if isinstance(value, numbers.Real):
        value = float(value)
        if value != value or value in (float("inf"), float("-inf")):
            return None
        try:
            d = Decimal(repr(value))
        except InvalidOperation:  # pragma: no cover - repr of a finite float always parses
            return None
        if d == d.to_integral_value():
            return str(int(d))
        return format(d.normalize(), "f")
    return str(value).strip()


def strip_dapo_instruction(text: str) -> str:
    """A DAPO prompt without DAPO's instruction prefix/suffix (each removed only if present)."""
    return text.removeprefix(DAPO_PREFIX).removesuffix(DAPO_SUFFIX).strip()


def _difficulty(value: Any) -> int:
    if value is None or isinstance(value, bool):
        return -1
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        value = float(value)
        return int(value) if value == value and value.is_integer() else -1
    m = _LEVEL_RE.search(str(value))  # "Level 3"
    return int(m.group(1)) if m else -1


def last_boxed(text: Any) -> str | None:
    """The content of the last ``\boxed{...}`` of ``text`` (balanced braces), or None."""
    if not isinstance(text, str):
        return None
    matches = list(_BOXED_RE.finditer(text))
    for m in reversed(matches):
        depth, i = 1, m.end()
        while i < len(text):
            ch = text[i]
            if ch == "\\":
                i += 2
                continue
            depth += ch == "{"
            depth -= ch == "}"
            if depth == 0:
                return text[m.end() : i].strip()
            i += 1
    return None


def _check_count(spec: BenchmarkSpec, origin: str, got: int, expected: ExpectedRows, what: str = "rows") -> None:
    if isinstance(expected, tuple):
        low, high = expected
        if not low <= got <= high:
            raise PipelineError(
                f"benchmark {spec.name} ({origin}): expected between {low} and {high} {what}, got {got}"
            )
    elif got != expected:
        raise PipelineError(f"benchmark {spec.name} ({origin}): expected {expected} {what}, got {got}")


def _dedup(spec: BenchmarkSpec, frame: pd.DataFrame, origin: str, counts: dict, provenance: dict) -> pd.DataFrame:
    """Distinct problems (first occurrence), problems with conflicting answers dropped (``CONFLICT_RULE``)."""
    raw_rows = len(frame)
    canon = frame["answer"].map(_answer_key)
    first = ~frame["problem"].duplicated(keep="first")
    distinct = int(first.sum())
    log.info(
        "benchmark %s: %d rows -> %d distinct problems (%d duplicate rows)", spec.name, raw_rows, distinct,
        raw_rows - distinct,
    )
    if counts["rows"] is not None:
        _check_count(spec, origin, distinct, counts["rows"], what="distinct problems")
    n_answers = canon.groupby(frame["problem"], sort=False).nunique(dropna=False)
    conflicting = set(n_answers.index[n_answers > 1])
    dropped = []
    if conflicting:
        in_conflict = frame["problem"].isin(conflicting)
        sub = frame.loc[in_conflict].assign(_canon=canon[in_conflict].fillna("<missing>"))
        for problem, rows in sub.groupby("problem", sort=False):
            dropped.append({
                "id": None if "own_id" not in rows else _plain(rows["own_id"].iloc[0]),
                "problem": problem,
                "rows": int(len(rows)),
                "answers": {str(a): int(c) for a, c in rows["_canon"].value_counts(sort=True).items()},
            })
        examples = "; ".join(
            f"{d['id'] if d['id'] is not None else d['problem'][:40]!s}: {d['answers']}" for d in dropped[:5]
        )
        log.warning(
            "benchmark %s: %d problems (%d rows) carry conflicting answers and are dropped (rule %r): %s%s",
            spec.name, len(dropped), sum(d["rows"] for d in dropped), CONFLICT_RULE, examples,
            " ..." if len(dropped) > 5 else "",
        )
    if counts["conflicts"] is not None and len(dropped) != counts["conflicts"]:
        log.warning(
            "benchmark %s (%s): %d problems with conflicting answers, the pinned revision has %d",
            spec.name, origin, len(dropped), counts["conflicts"],
        )
    keep = first & ~frame["problem"].isin(conflicting)
    provenance.update(
        distinct_problems=distinct,
        conflict_rule=CONFLICT_RULE,
        conflicting_problems=dropped,
        dropped_conflicting=len(dropped),
    )
    return frame.loc[keep].reset_index(drop=True)


def _answer_key(value: Any) -> str | None:
    """What two copies' answers are compared by: the canonical string, numbers by value (``7.0`` = ``7``)."""
    text = canonical_answer(value)
    if text is None:
        return None
    try:
        number = Decimal(text)
    except InvalidOperation:
        return text
    if not number.is_finite():
        return text
    return str(int(number)) if number == number.to_integral_value() else format(number.normalize(), "f")


def _plain(value: Any) -> Any:
    """A numpy scalar as a plain Python value (for JSON provenance)."""
    return value.item() if hasattr(value, "item") else value


def _columns(spec: BenchmarkSpec, dataset, origin: str) -> tuple[pd.DataFrame, bool]:
    """The problem, answer (and id, difficulty) columns of the raw rows; whether the rows
    have their own ids."""
    import pyarrow as pa

    table = dataset.with_format("arrow")[:] if len(dataset) else dataset.data.table
    columns = {
        "problem": _field(spec, table, spec.problem_field, origin),
        "answer": _field(spec, table, spec.answer_field, origin),
    }
    own_ids = False
    if spec.id_field is not None:
        try:
            columns["own_id"] = _field(spec, table, spec.id_field, origin)
            own_ids = True
        except PipelineError as err:  # ids are not protocol-critical: fall back to row positions
            log.info("benchmark %s: no own id column (%s); ids are <benchmark>-<row>", spec.name, err)
    if spec.difficulty_field is not None:
        columns["difficulty"] = _field(spec, table, spec.difficulty_field, origin)
    return pa.table(columns).to_pandas(types_mapper=None), own_ids


def _clean_problems(spec: BenchmarkSpec, problems: pd.Series, origin: str) -> pd.Series:
    """Problem texts as strings, DAPO's instruction stripped where the benchmark has it."""
    if problems.isna().any():
        raise PipelineError(f"benchmark {spec.name} ({origin}): problem missing in row {int(problems.isna().idxmax())}")
    problems = problems.astype(str)
    if spec.strip_dapo_instruction:  # vectorised strip_dapo_instruction()
        with_prefix = int(problems.str.startswith(DAPO_PREFIX).sum())
        with_suffix = int(problems.str.endswith(DAPO_SUFFIX).sum())
        problems = problems.str.removeprefix(DAPO_PREFIX).str.removesuffix(DAPO_SUFFIX)
        log.info(
            "benchmark %s: DAPO instruction prefix stripped from %d/%d rows, suffix from %d", spec.name,
            with_prefix, len(problems), with_suffix,
        )
        if len(problems) and with_prefix == 0:
            log.warning("benchmark %s: no row starts with DAPO's instruction prefix; problems kept as given", spec.name)
    return problems.str.strip()


def _canonical_answers(spec: BenchmarkSpec, answers: pd.Series, origin: str, provenance: dict) -> pd.Series:
    """Canonical answer strings (a missing or non-finite one is an error); degree signs removed
    where the benchmark asks for it (the changed rows recorded in ``provenance``)."""
    answers = answers.map(canonical_answer)
    if answers.isna().any():
        raise PipelineError(
            f"benchmark {spec.name} ({origin}): answer missing or not finite in row {int(answers.isna().idxmax())}"
        )
    if spec.strip_degree_sign:
        stripped = answers.str.replace(_DEGREE_RE, "", regex=True)
        changed = [int(pos) for pos in stripped.index[stripped != answers]]
        for pos in changed:
            log.info("benchmark %s: row %d answer %r -> %r (degree sign removed)", spec.name, pos, answers[pos], stripped[pos])
        provenance["degree_sign_removed"] = changed
        answers = stripped
    return answers


def _problem_ids(spec: BenchmarkSpec, frame: pd.DataFrame, own_ids: bool, origin: str) -> list[str]:
    """``<benchmark>-<own id>`` (or ``<benchmark>-<row>``)."""
    if own_ids:
        if frame["own_id"].isna().any():
            raise PipelineError(
                f"benchmark {spec.name} ({origin}): {spec.id_field} missing in row {int(frame['own_id'].isna().idxmax())}"
            )
        ids = [f"{spec.name}-{v}" for v in frame["own_id"].tolist()]
    else:
        ids = [f"{spec.name}-{i}" for i in range(len(frame))]
    return ids


def _check_unique_ids(spec: BenchmarkSpec, ids: list[str], origin: str) -> None:
    seen: set[str] = set()
    for pid in ids:
        if pid in seen:
            raise PipelineError(f"benchmark {spec.name} ({origin}): duplicate id {pid!r}")
        seen.add(pid)


def _to_frame(spec: BenchmarkSpec, dataset, origin: str, counts: dict, provenance: dict) -> pd.DataFrame:
    """The normalised problems of one loaded benchmark: columns read, row counts asserted,
    problems and answers cleaned, deduplicated where the benchmark needs it, ids assigned."""
    frame, own_ids = _columns(spec, dataset, origin)
    raw_rows = len(frame)
    provenance["raw_rows"] = raw_rows
    if counts["raw_rows"] is not None:
        _check_count(spec, origin, raw_rows, counts["raw_rows"], what="rows")
    frame["problem"] = _clean_problems(spec, frame["problem"], origin)
    if spec.answer_from_boxed:
        boxed = frame["answer"].map(last_boxed)
        missing = boxed.isna() & frame["answer"].notna()
        if missing.any():
            row = int(missing.idxmax())
            raise PipelineError(
                f"benchmark {spec.name} ({origin}): no \\boxed{{}} answer in {spec.answer_field!r} of row {row}"
            )
        frame["answer"] = boxed
    if spec.dedup_problems:
        frame = _dedup(spec, frame, origin, counts, provenance)
    else:
        _check_count(spec, origin, len(frame), counts["rows"])
    answers = _canonical_answers(spec, frame["answer"], origin, provenance)
    ids = _problem_ids(spec, frame, own_ids, origin)
    difficulty = frame["difficulty"].map(_difficulty).tolist() if "difficulty" in frame else [-1] * len(frame)
    empty = [i for i, (p, a) in enumerate(zip(frame["problem"], answers)) if not p or not a]
    if empty:
        raise PipelineError(
            f"benchmark {spec.name} ({origin}): {len(empty)} rows with an empty problem or answer "
            f"(first: {ids[empty[0]]})"
        )
    _check_unique_ids(spec, ids, origin)
    out = problems_frame([
        _HubProblem(id=i, problem=p, answer=a, difficulty=int(d), source=spec.name)
        for i, p, a, d in zip(ids, frame["problem"].tolist(), answers.tolist(), difficulty)
    ])
    provenance["rows"] = len(out)
    log.info("benchmark %s (%s): %d problems", spec.name, origin, len(out))
    return out


# --------------------------------------------------------------------------- decontamination

_TEXT_DROP = ("\\,", "\\;", "\\!", "$")
_WS_RE = re.compile(r"\s+")


def normalize_problem_text(text: str) -> str:
    """Text used to compare problems: without ``\\,`` ``\\;`` ``\\!`` ``$``, lowercase, single spaces."""
    s = str(text)
    for token in _TEXT_DROP:
        s = s.replace(token, "")
    return _WS_RE.sub(" ", s.lower()).strip()


def decontamination_report(train: pd.DataFrame, evals: Mapping[str, pd.DataFrame]) -> dict:
    """Training problems whose normalised text equals an evaluation problem's, per suite.

    Returns a JSON-serialisable dict::

        {"train_problems": int, "total_overlap": int,
         "suites": {suite: {"problems": int, "overlap": int,
                            "eval_ids": [...], "train_ids": [...]}}}

    ``overlap`` counts the suite's problems found in the training set (``eval_ids``, in
    suite order); ``train_ids`` are the training problems matching them.
    """
    train_by_text: dict[str, list[str]] = {}
    for pid, text in zip(train["id"].astype(str), train["problem"]):
        train_by_text.setdefault(normalize_problem_text(text), []).append(pid)
    suites = {}
    for name, frame in evals.items():
        eval_ids, train_ids, seen = [], [], set()
        for pid, text in zip(frame["id"].astype(str), frame["problem"]):
            matches = train_by_text.get(normalize_problem_text(text))
            if matches:
                eval_ids.append(pid)
                train_ids.extend(m for m in matches if m not in seen)
                seen.update(matches)
        suites[name] = {"problems": int(len(frame)), "overlap": len(eval_ids), "eval_ids": eval_ids, "train_ids": train_ids}
    return {
        "train_problems": int(len(train)),
        "total_overlap": sum(s["overlap"] for s in suites.values()),
        "suites": suites,
    }


def check_decontamination(report: Mapping[str, Any], fail: bool) -> int:
    """Log the overlap of ``report``; raise PipelineError when ``fail`` and there is any. Returns the total."""
    total = int(report["total_overlap"])
    if total == 0:
        log.info("decontamination: no training problem appears in an evaluation suite")
        return 0
    parts = [
        f"{name}: {s['overlap']}/{s['problems']} (e.g. {', '.join(s['eval_ids'][:5])})"
        for name, s in report["suites"].items() if s["overlap"]
    ]
    message = f"training problems overlap evaluation suites on {total} problems: " + "; ".join(parts)
    if fail:
        raise PipelineError(message)
    log.warning("%s", message)
    return total
