"""Local mirrors of every paper-scale dataset, in the exact layout of its hub repository.

``write_mirrors(out, seed)`` writes one directory per repository under ``out`` (named like
the repository, ``out/HuggingFaceH4/MATH-500``) holding the same file names, splits,
configs, column names and dtypes as the real repository at the revision the paper configs
pin (``pipeline.data.hub.BENCHMARKS[...].known_revision``), and a manifest
``out/mirrors.json``. The rows are small and simple (arithmetic in the benchmarks' LaTeX
style, :mod:`rehearsal.problems`) but carry every quirk the loaders handle:

==================================  =========================================================
repository (benchmark)              layout and quirks
==================================  =========================================================
HuggingFaceH4/MATH-500 (math500)    ``test.jsonl``: problem, solution, answer (str), subject,
                                    level (int 1-5), unique_id ``test/<subject>/<n>.json``;
                                    one LaTeX answer (``\\frac{3}{2}``)
HuggingFaceH4/aime_2024 (aime24)    ``data/train-00000-of-00001.parquet`` (split train): id
                                    int64, problem, solution, answer (str), url, year (str)
opencompass/AIME2025 (aime25)       configs ``AIME2025-I`` / ``AIME2025-II`` -> ``aime2025-I.jsonl``
                                    / ``aime2025-II.jsonl`` (split test): question, answer (str);
                                    one answer in AIME2025-II carries a degree sign (``70^\\circ``)
AI-MO/aimo-validation-amc (amc23)   ``data/train-00000-of-00001.parquet``: id int64, problem,
                                    answer **float64**, url (half ``2022_AMC_12``, half
                                    ``2023_AMC_12``); one non-integer answer (9.5)
BytedTsinghua-SIA/DAPO-Math-17k     ``data/dapo-math-17k.parquet`` (split train): data_source,
(dapo17k)                           prompt list<struct<content, role>> (DAPO's instruction around
                                    the problem), ability, reward_model struct<ground_truth,
                                    style>, extra_info struct<index: uuid string>; every problem
                                    repeated 6-14 times (distinct uuids, shuffled), one problem
                                    whose copies carry two different answers, one problem that is
                                    also a MATH-500 problem (decontamination finds it)
math-ai/aime25 (aime25_mathai)      ``test.jsonl``: problem, answer (str), id (str)
math-ai/aime24 (aime24_mathai)      ``test-00000-of-00001.parquet``: id int64, problem, solution
                                    (the answer only as its last ``\\boxed{}``), url
math-ai/amc23 (amc23_mathai)        ``test-00000-of-00001.parquet``: id int64, question, answer
                                    float64, url (the 2023 half of the AMC mirror)
==================================  =========================================================

The manifest maps each repository to its directory and pinned revision, and each benchmark
to ``{"hub_id", "path", "expected_rows"}``; :func:`overlay` turns it into the loader keys a
config overlay may change (data location and row counts only). :class:`LocalHub` stands in
for the hub itself: it serves a mirror through ``datasets.load_dataset`` only when asked for
the pinned revision, and records every request (``pipeline.data.hub.hub_load_dataset`` is the
seam it replaces).

``python -m rehearsal.mirrors --out DIR [--seed 0]``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import uuid
from pathlib import Path
from typing import Any, Iterator

from pipeline.data.hub import BENCHMARKS, DAPO_PREFIX, DAPO_SUFFIX, DAPO_TEMPLATE
from rehearsal.problems import Problem, unique_problems

MANIFEST = "mirrors.json"

# Row counts of the mirrors (the real ones are in pipeline.data.hub.BENCHMARKS).
SIZES = {"math500": 40, "aime24": 16, "aime25_per_config": 8, "amc23_per_year": 12, "dapo17k": 40}

MATH_SUBJECTS = (
    ("Prealgebra", "prealgebra"), ("Algebra", "algebra"), ("Number Theory", "number_theory"),
    ("Counting & Probability", "counting_and_probability"), ("Geometry", "geometry"),
    ("Intermediate Algebra", "intermediate_algebra"), ("Precalculus", "precalculus"),
)


# --------------------------------------------------------------------------- writers


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def _write_parquet(path: Path, rows: list[dict], schema) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)


def _readme(path: Path, front_matter: str, body: str) -> None:
    """The dataset card (YAML front matter as on the hub); ``{nbytes}`` becomes the data files' size."""
    path.mkdir(parents=True, exist_ok=True)
    nbytes = sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and f.name != "README.md")
    front = front_matter.strip().replace("{nbytes}", str(nbytes))
    (path / "README.md").write_text(f"---\n{front}\n---\n\n{body.strip()}\n", encoding="utf-8")


# --------------------------------------------------------------------------- the mirrors


def _math500(root: Path, rng: random.Random, taken: set[str]) -> tuple[list[dict], list[Problem]]:
    problems = unique_problems(rng, "math500", SIZES["math500"] - 1, exclude=taken)
    rows = []
    for i, p in enumerate(problems):
        subject, folder = MATH_SUBJECTS[i % len(MATH_SUBJECTS)]
        rows.append({
            "problem": p.text, "solution": p.solution(), "answer": str(p.answer), "subject": subject,
            "level": 1 + i % 5, "unique_id": f"test/{folder}/{100 + 7 * i}.json",
        })
    # Quirk: a LaTeX answer, as most MATH-500 answers are.
    rows.insert(5, {
        "problem": "What is $\\frac{1}{2}+1$? Express your answer as a common fraction.",
        "solution": "We have $\\frac{1}{2}+1=\\frac{1}{2}+\\frac{2}{2}=\\frac{3}{2}$, so the answer is "
                    "$\\boxed{\\frac{3}{2}}$.",
        "answer": "\\frac{3}{2}", "subject": "Prealgebra", "level": 2, "unique_id": "test/prealgebra/1747.json",
    })
    _write_jsonl(root / "test.jsonl", rows)
    _readme(root, "", "# MATH-500\n\nThis dataset contains a subset of 500 problems from the MATH benchmark "
            "(rehearsal mirror: 40 arithmetic problems in the same layout).")
    return rows, problems


def _aime24(root: Path, problems: list[Problem]) -> list[dict]:
    import pyarrow as pa

    rows = [{
        "id": 60 + i, "problem": p.text, "solution": p.solution(), "answer": str(p.answer),
        "url": f"https://artofproblemsolving.com/wiki/index.php/2024_AIME_{'I' if i < 8 else 'II'}_Problems/Problem_{i % 8 + 1}",
        "year": "2024",
    } for i, p in enumerate(problems)]
    schema = pa.schema([("id", pa.int64()), ("problem", pa.string()), ("solution", pa.string()),
                        ("answer", pa.string()), ("url", pa.string()), ("year", pa.string())])
    _write_parquet(root / "data" / "train-00000-of-00001.parquet", rows, schema)
    _readme(root, """
dataset_info:
  features:
  - name: id
    dtype: int64
  - name: problem
    dtype: string
  - name: solution
    dtype: string
  - name: answer
    dtype: string
  - name: url
    dtype: string
  - name: year
    dtype: string
  splits:
  - name: train
    num_bytes: {nbytes}
    num_examples: %d
  download_size: {nbytes}
  dataset_size: {nbytes}
configs:
- config_name: default
  data_files:
  - split: train
    path: data/train-*
""" % len(rows), "# Dataset card for AIME 2024\n\nRehearsal mirror of the 2024 AIME I and II layout.")
    return rows


def _aime25(root: Path, problems: list[Problem]) -> dict[str, list[dict]]:
    n = SIZES["aime25_per_config"]
    part_i = [{"question": p.text, "answer": str(p.answer)} for p in problems[:n]]
    part_ii = [{"question": p.text, "answer": str(p.answer)} for p in problems[n : 2 * n - 1]]
    # Quirk: the one answer written with a degree sign.
    part_ii.insert(3, {
        "question": "In triangle $ABC$, $\\angle A=50^\\circ$ and $\\angle B=60^\\circ$. "
                    "Find the degree measure of $\\angle C$.",
        "answer": "70^\\circ",
    })
    _write_jsonl(root / "aime2025-I.jsonl", part_i)
    _write_jsonl(root / "aime2025-II.jsonl", part_ii)
    _readme(root, """
license: mit
task_categories:
- question-answering
language:
- en
size_categories:
- n<1K
configs:
- config_name: AIME2025-I
  data_files:
  - split: test
    path: aime2025-I.jsonl
- config_name: AIME2025-II
  data_files:
  - split: test
    path: aime2025-II.jsonl
""", "# AIME 2025 Dataset\n\nThis dataset contains problems from the American Invitational Mathematics "
     "Examination (AIME) 2025-I & II (rehearsal mirror).")
    return {"AIME2025-I": part_i, "AIME2025-II": part_ii}


def _aime25_mathai(root: Path, opencompass: dict[str, list[dict]]) -> list[dict]:
    rows = []
    for r in opencompass["AIME2025-I"] + opencompass["AIME2025-II"]:
        rows.append({"problem": r["question"], "answer": r["answer"].replace("^\\circ", ""), "id": str(len(rows))})
    _write_jsonl(root / "test.jsonl", rows)
    _readme(root, """
dataset_info:
  features:
  - name: problem
    dtype: string
  - name: answer
    dtype: string
  - name: id
    dtype: string
  splits:
  - name: test
    num_bytes: {nbytes}
    num_examples: %d
  download_size: {nbytes}
  dataset_size: {nbytes}
configs:
- config_name: default
  data_files:
  - split: test
    path: test.jsonl
license: apache-2.0
""" % len(rows), "# AIME 25\n\nAmerican Invitational Mathematics Examination (AIME) 2025 (rehearsal mirror).")
    return rows


def _aime24_mathai(root: Path, aime24_rows: list[dict]) -> list[dict]:
    import pyarrow as pa

    rows = [{"id": r["id"], "problem": r["problem"], "solution": r["solution"], "url": r["url"]} for r in aime24_rows]
    schema = pa.schema([("id", pa.int64()), ("problem", pa.string()), ("solution", pa.string()), ("url", pa.string())])
    _write_parquet(root / "test-00000-of-00001.parquet", rows, schema)
    _readme(root, "license: apache-2.0", "# AIME 24\n\nAIME 2024 (rehearsal mirror); the answer is the boxed "
            "expression at the end of `solution`.")
    return rows


def _amc(root: Path, problems: list[Problem]) -> list[dict]:
    import pyarrow as pa

    n = SIZES["amc23_per_year"]
    rows = []
    for i, p in enumerate(problems):
        year, contest = (2022, "A") if i < n else (2023, "B" if i % 2 else "A")
        rows.append({
            "id": i, "problem": p.text, "answer": float(p.answer),
            "url": f"https://artofproblemsolving.com/wiki/index.php/{year}_AMC_12{contest}_Problems/Problem_{i % n + 1}",
        })
    # Quirk: a non-integer float answer (2023 half).
    rows.append({"id": len(rows), "problem": "What is the value of $7.5+2$?", "answer": 9.5,
                 "url": f"https://artofproblemsolving.com/wiki/index.php/2023_AMC_12A_Problems/Problem_{n}"})
    schema = pa.schema([("id", pa.int64()), ("problem", pa.string()), ("answer", pa.float64()), ("url", pa.string())])
    _write_parquet(root / "data" / "train-00000-of-00001.parquet", rows, schema)
    _readme(root, """
dataset_info:
  features:
  - name: id
    dtype: int64
  - name: problem
    dtype: string
  - name: answer
    dtype: float64
  - name: url
    dtype: string
  splits:
  - name: train
    num_bytes: {nbytes}
    num_examples: %d
  download_size: {nbytes}
  dataset_size: {nbytes}
configs:
- config_name: default
  data_files:
  - split: train
    path: data/train-*
license: apache-2.0
""" % len(rows), "# Dataset Card for AIMO Validation AMC\n\nAMC 12 2022 and 2023 problems (rehearsal mirror).")
    return rows


def _amc23_mathai(root: Path, amc_rows: list[dict]) -> list[dict]:
    import pyarrow as pa

    rows = [{"id": i, "question": r["problem"], "answer": r["answer"], "url": r["url"]}
            for i, r in enumerate(r for r in amc_rows if "2023_AMC" in r["url"])]
    schema = pa.schema([("id", pa.int64()), ("question", pa.string()), ("answer", pa.float64()), ("url", pa.string())])
    _write_parquet(root / "test-00000-of-00001.parquet", rows, schema)
    _readme(root, "language:\n- en", "# AMC 23\n\nAMC 12 2023 (rehearsal mirror).")
    return rows


def _dapo(root: Path, rng: random.Random, taken: set[str], leak: dict) -> tuple[list[dict], dict]:
    import pyarrow as pa

    problems = unique_problems(rng, "dapo", SIZES["dapo17k"] - 1, exclude=taken)
    entries = [(p.text, str(p.answer)) for p in problems]
    entries.insert(7, (leak["problem"], leak["answer"]))  # also a MATH-500 problem: decontamination finds it
    conflict = 11  # this problem's copies disagree on the answer
    rows = []
    for k, (text, answer) in enumerate(entries):
        copies = rng.randint(6, 14)
        for c in range(copies):
            truth = answer if not (k == conflict and c % 3 == 2) else str(int(answer) + 1)
            rows.append({
                "data_source": "math_dapo",
                "prompt": [{"content": DAPO_TEMPLATE.format(problem=text), "role": "user"}],
                "ability": "MATH",
                "reward_model": {"ground_truth": truth, "style": "rule-lighteval/MATH_v2"},
                "extra_info": {"index": str(uuid.UUID(int=rng.getrandbits(128), version=4))},
            })
    rng.shuffle(rows)
    schema = pa.schema([
        ("data_source", pa.string()),
        ("prompt", pa.list_(pa.struct([("content", pa.string()), ("role", pa.string())]))),
        ("ability", pa.string()),
        ("reward_model", pa.struct([("ground_truth", pa.string()), ("style", pa.string())])),
        ("extra_info", pa.struct([("index", pa.string())])),
    ])
    _write_parquet(root / "data" / "dapo-math-17k.parquet", rows, schema)
    _readme(root, """
license: apache-2.0
task_categories:
- text-generation
language:
- en
tags:
- math
pretty_name: DAPO-Math-17k
size_categories:
- n<1K
""", "# DAPO-Math-17k\n\nRehearsal mirror: every problem repeated several times, as in the real dataset.")
    info = {"distinct": len(entries), "conflicting": [entries[conflict][0]], "leaked": [leak["problem"]]}
    return rows, info


def write_mirrors(out: str | Path, seed: int = 0) -> dict:
    """Write every mirror under ``out`` and ``out/mirrors.json``; returns the manifest."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    repos: dict[str, Any] = {}
    taken: set[str] = set()

    def repo(benchmark: str) -> Path:
        hub_id = BENCHMARKS[benchmark].hub_id
        return out / hub_id

    math_rows, _ = _math500(repo("math500"), rng, taken)
    taken |= {r["problem"] for r in math_rows}
    aime24_problems = unique_problems(rng, "aime", SIZES["aime24"], exclude=taken, operations=[2])
    taken |= {p.text for p in aime24_problems}
    aime24_rows = _aime24(repo("aime24"), aime24_problems)
    aime25_problems = unique_problems(rng, "aime", 2 * SIZES["aime25_per_config"], exclude=taken, operations=[2])
    taken |= {p.text for p in aime25_problems}
    aime25_parts = _aime25(repo("aime25"), aime25_problems)
    amc_problems = unique_problems(rng, "amc", 2 * SIZES["amc23_per_year"] - 1, exclude=taken)
    taken |= {p.text for p in amc_problems}
    amc_rows = _amc(repo("amc23"), amc_problems)
    leak = {"problem": math_rows[0]["problem"], "answer": math_rows[0]["answer"]}
    dapo_rows, dapo_info = _dapo(repo("dapo17k"), rng, taken, leak)
    aime25_mathai_rows = _aime25_mathai(repo("aime25_mathai"), aime25_parts)
    aime24_mathai_rows = _aime24_mathai(repo("aime24_mathai"), aime24_rows)
    amc23_mathai_rows = _amc23_mathai(repo("amc23_mathai"), amc_rows)

    rows = {
        "math500": len(math_rows), "aime24": len(aime24_rows),
        "aime25": sum(len(v) for v in aime25_parts.values()), "amc23": len(amc_rows),
        "dapo17k": dapo_info["distinct"], "aime25_mathai": len(aime25_mathai_rows),
        "aime24_mathai": len(aime24_mathai_rows), "amc23_mathai": len(amc23_mathai_rows),
    }
    benchmarks = {}
    for name, n in rows.items():
        spec = BENCHMARKS[name]
        repos[spec.hub_id] = {
            "revision": spec.known_revision,
            "path": spec.hub_id,
            "files": sorted(str(f.relative_to(out / spec.hub_id)) for f in (out / spec.hub_id).rglob("*") if f.is_file()),
        }
        benchmarks[name] = {"hub_id": spec.hub_id, "path": spec.hub_id, "expected_rows": n}
    benchmarks["dapo17k"].update(
        raw_rows=len(dapo_rows), conflicting_problems=dapo_info["conflicting"], leaked_problems=dapo_info["leaked"],
        kept_rows=dapo_info["distinct"] - len(dapo_info["conflicting"]),
    )
    manifest = {"seed": seed, "repos": repos, "benchmarks": benchmarks}
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return manifest


def problem_texts(seed: int = 0) -> set[str]:
    """Every problem text the mirrors of ``seed`` hold (evaluation sets and DAPO), e.g. to keep them out of SFT data."""
    import tempfile

    import pyarrow.parquet as pq

    texts: set[str] = set()
    with tempfile.TemporaryDirectory() as tmp:
        write_mirrors(tmp, seed)
        for f in Path(tmp).rglob("*"):
            if f.suffix == ".jsonl":
                rows = [json.loads(line) for line in f.read_text(encoding="utf-8").splitlines()]
            elif f.suffix == ".parquet":
                rows = pq.read_table(f).to_pylist()
            else:
                continue
            for r in rows:
                text = r.get("problem") or r.get("question") or r["prompt"][0]["content"]
                texts.add(text)
                texts.add(text.removeprefix(DAPO_PREFIX).removesuffix(DAPO_SUFFIX))
    return texts


def read_manifest(out: str | Path) -> dict:
    return json.loads((Path(out) / MANIFEST).read_text(encoding="utf-8"))


def overlay(out: str | Path, benchmark: str) -> dict:
    """The loader keys a config overlay sets to read ``benchmark`` from its mirror: ``path``, ``expected_rows``."""
    out = Path(out)
    entry = read_manifest(out)["benchmarks"][benchmark]
    return {"path": str((out / entry["path"]).resolve()), "expected_rows": entry["expected_rows"]}


class LocalHub:
    """Stands in for the hub: ``load_dataset(hub_id, config, split=, revision=, cache_dir=)`` on the mirrors.

    A request for a repository that is not mirrored, or for any revision but the pinned
    one, fails as the hub would for an unknown repository or commit. Every request is
    recorded in ``calls`` (dicts with ``hub_id, config, split, revision, cache_dir``).
    """

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.manifest = read_manifest(self.root)
        self.calls: list[dict] = []

    def load_dataset(self, hub_id: str, config: str | None, *, split: str, revision: str, cache_dir: str | None):
        import datasets

        self.calls.append({"hub_id": hub_id, "config": config, "split": split, "revision": revision, "cache_dir": cache_dir})
        repo = self.manifest["repos"].get(hub_id)
        if repo is None:
            raise FileNotFoundError(f"Dataset '{hub_id}' doesn't exist on the Hub (local mirror {self.root})")
        if revision != repo["revision"]:
            raise ValueError(f"Revision '{revision}' doesn't exist for dataset '{hub_id}' on the Hub (mirror holds {repo['revision']})")
        return datasets.load_dataset(str(self.root / repo["path"]), config, split=split, cache_dir=cache_dir)

    @contextlib.contextmanager
    def installed(self) -> Iterator["LocalHub"]:
        """Route ``pipeline.data.hub``'s hub loads to this stand-in while the context is open."""
        import pipeline.data.hub as hub

        original = hub.hub_load_dataset
        hub.hub_load_dataset = self.load_dataset
        try:
            yield self
        finally:
            hub.hub_load_dataset = original


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rehearsal.mirrors", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="directory to write the mirrors into")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    manifest = write_mirrors(args.out, args.seed)
    for name, entry in sorted(manifest["benchmarks"].items()):
        print(f"{name:14s} {entry['hub_id']:34s} {entry['expected_rows']:4d} rows  -> {Path(args.out) / entry['path']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
