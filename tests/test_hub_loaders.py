"""Hub benchmark loaders on local fixture files in each dataset's real column layout.

Every load goes through the real ``datasets`` library (json/parquet builders,
``save_to_disk``/``load_from_disk``, a script-free local dataset directory with configs),
exactly as the hub path would after download; only the hub itself is out of reach here.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import pandas as pd
import pytest

from pipeline.data.hub import (
    BENCHMARKS,
    CONFLICT_RULE,
    DAPO_PREFIX,
    DAPO_SUFFIX,
    DAPO_TEMPLATE,
    canonical_answer,
    check_decontamination,
    decontamination_report,
    load_benchmark,
    load_benchmark_from_config,
    normalize_problem_text,
    provenance,
)
from pipeline.data.schema import COLUMNS, problems_frame
from pipeline.errors import PipelineError

ROOT = Path(__file__).resolve().parents[1]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def write_parquet(path, rows):
    pd.DataFrame(rows).to_parquet(path, index=False)
    return path


def assert_schema(frame: pd.DataFrame) -> None:
    assert list(frame.columns) == list(COLUMNS)
    reference = problems_frame([])
    assert frame.dtypes.to_dict() == reference.dtypes.to_dict()
    assert frame["id"].is_unique


@pytest.fixture
def cache(tmp_path):
    return tmp_path / "hf-cache"


# --------------------------------------------------------------------------- fixtures (real layouts)

AIME24_ROWS = [
    {"id": 60, "problem": "Every morning Aya goes for a $9$-kilometer-long walk.", "solution": "s", "answer": "204",
     "url": "https://artofproblemsolving.com/wiki/index.php/2024_AIME_I_Problems/Problem_1", "year": "2024"},
    {"id": 61, "problem": "  Let $ABC$ be a triangle inscribed in circle $\\omega$.\n", "solution": "s", "answer": "113",
     "url": "u", "year": "2024"},
    {"id": 62, "problem": "Each vertex of a regular octagon is colored.", "solution": "s", "answer": "371",
     "url": "u", "year": "2024"},
]

AIME25_I = [
    {"question": "Find the sum of all integer bases $b>9$ for which $17_b$ is a divisor of $97_b$.", "answer": "70"},
    {"question": "On $\\triangle ABC$ points $A, D, E$ lie in that order.", "answer": "588"},
]
AIME25_II = [
    {"question": "Find the measure of the arc in degrees.", "answer": "336^\\circ"},
    {"question": "Six points lie in a straight line.", "answer": "468"},
]

AMC_ROWS = [
    {"id": 0, "problem": "Cities A and B are 45 miles apart.", "answer": 27.0, "url": "u0"},
    {"id": 1, "problem": "What is the probability?", "answer": 0.5, "url": "u1"},
    {"id": 2, "problem": "Compute the value.", "answer": 1.25, "url": "u2"},
    {"id": 3, "problem": "How many digits?", "answer": 18.0, "url": "u3"},
    {"id": 4, "problem": "A large answer.", "answer": 1000000.0, "url": "u4"},
]

MATH500_ROWS = [
    {"problem": "Convert the point $(0,3)$ to polar coordinates.", "solution": "s",
     "answer": "\\left( 3, \\frac{\\pi}{2} \\right)", "subject": "Precalculus", "level": 2,
     "unique_id": "test/precalculus/807.json"},
    {"problem": "Define $p$ and $q$.", "solution": "s", "answer": "p - q", "subject": "Intermediate Algebra",
     "level": 5, "unique_id": "test/intermediate_algebra/1994.json"},
    {"problem": "If $f(x) = x^2$, find $f(3)$.", "solution": "s", "answer": "9", "subject": "Algebra",
     "level": 1, "unique_id": "test/algebra/2584.json"},
]


def dapo_row(problem: str, answer: str, index: str, wrap: bool = True) -> dict:
    content = DAPO_PREFIX + problem + DAPO_SUFFIX if wrap else problem
    return {
        "data_source": "math_dapo",
        "prompt": [{"content": content, "role": "user"}],
        "ability": "MATH",
        "reward_model": {"ground_truth": answer, "style": "rule-lighteval/MATH_v2"},
        "extra_info": {"index": index},
    }


def dapo_rows() -> list[dict]:
    """Three distinct wrapped problems, each repeated (different uuids), plus one unwrapped."""
    base = [("What is $1+1$?", "2"), ("Find $x$ if $2x = 10$.", "5"), ("Compute $\\frac{9}{3}$.", "3")]
    rows = []
    for rep in range(4):
        for k, (problem, answer) in enumerate(base):
            rows.append(dapo_row(problem, answer, f"uuid-{k}-{rep}"))
    rows.insert(5, dapo_row("A bare problem without the instruction.", "7", "uuid-bare", wrap=False))
    return rows


# --------------------------------------------------------------------------- registry


# The commits pinned by issue 14 / docs/methods.md §8 (several independent public projects agree on each).
PINNED = {
    "aime24": ("HuggingFaceH4/aime_2024", "2fe88a2f1091d5048c0f36abc874fb997b3dd99a"),
    "aime25": ("opencompass/AIME2025", "a6ad95f611d72cf628a80b58bd0432ef6638f958"),
    "amc23": ("AI-MO/aimo-validation-amc", "69d78a4a2c840e82d69af6bc742bda09005f6316"),
    "math500": ("HuggingFaceH4/MATH-500", "6e4ed1a2a79af7d8630a6b768ec859cb5af4d3be"),
    "dapo17k": ("BytedTsinghua-SIA/DAPO-Math-17k", "65877096c24ffa7abc4e4fa5edb95cf3413a5674"),
    "aime24_mathai": ("math-ai/aime24", "83a7f387baaa524a8bda0022eac0541582297103"),
    "aime25_mathai": ("math-ai/aime25", "563bb8404243c5f09de6ec262f2db674fe5bce9b"),
    "amc23_mathai": ("math-ai/amc23", "80815d37005feb82cd7f8fbc6901d5d3eff43057"),
}


def test_registry_describes_the_spec_datasets():
    assert set(BENCHMARKS) == set(PINNED)
    for name, (hub_id, revision) in PINNED.items():
        assert (BENCHMARKS[name].hub_id, BENCHMARKS[name].known_revision) == (hub_id, revision), name
    assert BENCHMARKS["aime24"].hub_id == "HuggingFaceH4/aime_2024" and BENCHMARKS["aime24"].split == "train"
    assert BENCHMARKS["aime25"].configs == ("AIME2025-I", "AIME2025-II") and BENCHMARKS["aime25"].split == "test"
    # AMC23 is all 83 rows of AI-MO/aimo-validation-amc (Cheng et al.'s Pass@128 values are k/83);
    # math-ai/amc23 (40 rows, test split) is the separately named alternative.
    assert BENCHMARKS["amc23"].expected_rows == 83 and BENCHMARKS["amc23"].split == "train"
    assert BENCHMARKS["amc23_mathai"].expected_rows == 40 and BENCHMARKS["amc23_mathai"].split == "test"
    assert BENCHMARKS["math500"].expected_rows == 500 and BENCHMARKS["math500"].difficulty_field == "level"
    dapo = BENCHMARKS["dapo17k"]
    assert (dapo.expected_raw_rows, dapo.expected_rows, dapo.expected_conflicts) == (1_791_700, 17_398, 7)
    assert CONFLICT_RULE == "drop"
    assert [BENCHMARKS[n].expected_rows for n in ("aime24", "aime25", "aime24_mathai", "aime25_mathai")] == [30] * 4


def test_schema_knows_every_benchmark():
    """The config schema's benchmark enums list exactly the loaders' benchmarks, plus ``custom``
    (your own data with a field mapping: pipeline/data/hub.py:custom_spec)."""
    import yaml

    schema = yaml.safe_load((ROOT / "pipeline" / "schemas" / "config.schema.yaml").read_text())
    suite_enum = schema["properties"]["suites"]["additionalProperties"]["properties"]["benchmark"]["enum"]
    train_enum = schema["properties"]["train_data"]["properties"]["benchmark"]["enum"]
    assert sorted(suite_enum) == sorted(train_enum) == sorted([*BENCHMARKS, "custom"])
    assert "custom" not in BENCHMARKS


@pytest.mark.parametrize("name", sorted(BENCHMARKS))
def test_hub_load_without_revision_is_refused(name, cache):
    # The message names the commit the paper configs pin: nothing to look up.
    with pytest.raises(PipelineError, match=rf"benchmark {name}: .*pinned revision.*{BENCHMARKS[name].known_revision}"):
        load_benchmark(name, cache_dir=cache)
    with pytest.raises(PipelineError, match="pinned revision"):
        load_benchmark_from_config(name, {"revision": None, "cache_dir": str(cache)})


# --------------------------------------------------------------------------- per-dataset mapping


def test_aime24_mapping(tmp_path, cache):
    f = write_jsonl(tmp_path / "aime24.jsonl", AIME24_ROWS)
    frame = load_benchmark("aime24", data_files=f, cache_dir=cache, expected_rows=3)
    assert_schema(frame)
    assert frame["id"].tolist() == ["aime24-60", "aime24-61", "aime24-62"]
    assert frame["answer"].tolist() == ["204", "113", "371"]
    assert frame["problem"][1] == "Let $ABC$ be a triangle inscribed in circle $\\omega$."  # stripped only
    assert frame["difficulty"].tolist() == [-1, -1, -1]
    assert set(frame["source"]) == {"aime24"}


def test_aime25_concatenates_configs_and_drops_the_degree_sign(tmp_path, cache):
    f1 = write_jsonl(tmp_path / "aime2025-I.jsonl", AIME25_I)
    f2 = write_jsonl(tmp_path / "aime2025-II.jsonl", AIME25_II)
    frame = load_benchmark("aime25", data_files=[f1, f2], cache_dir=cache, expected_rows=4)
    assert_schema(frame)
    assert frame["id"].tolist() == ["aime25-0", "aime25-1", "aime25-2", "aime25-3"]
    assert frame["answer"].tolist() == ["70", "588", "336", "468"]
    assert frame["problem"][2] == "Find the measure of the arc in degrees."


@pytest.mark.parametrize("degree", ["336^\\circ", "336^{\\circ}", "336 ^ \\circ", "336°"])
def test_aime25_degree_spellings(tmp_path, cache, degree):
    f = write_jsonl(tmp_path / "a.jsonl", [{"question": "q", "answer": degree}])
    assert load_benchmark("aime25", data_files=f, cache_dir=cache, expected_rows=1)["answer"].tolist() == ["336"]


@pytest.mark.parametrize("fmt", ["parquet", "jsonl"])
def test_amc_float_answers_become_canonical_strings(tmp_path, cache, fmt):
    writer = write_parquet if fmt == "parquet" else write_jsonl
    f = writer(tmp_path / f"amc.{fmt}", AMC_ROWS)
    frame = load_benchmark("amc23", data_files=str(f), cache_dir=cache, expected_rows=5)
    assert_schema(frame)
    assert frame["answer"].tolist() == ["27", "0.5", "1.25", "18", "1000000"]
    assert frame["id"].tolist() == [f"amc23-{i}" for i in range(5)]


def test_canonical_answer():
    assert canonical_answer(8.0) == "8"
    assert canonical_answer(0.5) == "0.5"
    assert canonical_answer(-3.0) == "-3"
    assert canonical_answer(1e-05) == "0.00001"
    assert canonical_answer(12) == "12"
    assert canonical_answer(" 7 ") == "7"
    assert canonical_answer(float("nan")) is None
    assert canonical_answer(None) is None


def test_math500_level_becomes_difficulty(tmp_path, cache):
    f = write_jsonl(tmp_path / "test.jsonl", MATH500_ROWS)
    frame = load_benchmark("math500", data_files=f, cache_dir=cache, expected_rows=3)
    assert_schema(frame)
    assert frame["difficulty"].tolist() == [2, 5, 1]
    assert frame["id"].tolist() == [
        "math500-test/precalculus/807.json", "math500-test/intermediate_algebra/1994.json", "math500-test/algebra/2584.json",
    ]
    assert frame["answer"][0] == "\\left( 3, \\frac{\\pi}{2} \\right)"


def test_math500_string_levels(tmp_path, cache):
    rows = [dict(r, level=lvl) for r, lvl in zip(MATH500_ROWS, ["Level 3", "Level ?", "4"])]
    f = write_jsonl(tmp_path / "test.jsonl", rows)
    frame = load_benchmark("math500", data_files=f, cache_dir=cache, expected_rows=3)
    assert frame["difficulty"].tolist() == [3, -1, 4]


@pytest.mark.parametrize("fmt", ["parquet", "jsonl"])
def test_dapo_dedup_and_instruction_stripping(tmp_path, cache, caplog, fmt):
    rows = dapo_rows()
    writer = write_parquet if fmt == "parquet" else write_jsonl
    f = writer(tmp_path / f"dapo.{fmt}", rows)
    with caplog.at_level(logging.INFO, logger="pipeline.data.hub"):
        frame = load_benchmark("dapo17k", data_files=f, cache_dir=cache, expected_rows=(4, 4))
    assert_schema(frame)
    assert len(rows) == 13
    # First occurrences, in order of first appearance; the bare problem came 6th.
    assert frame["problem"].tolist() == [
        "What is $1+1$?", "Find $x$ if $2x = 10$.", "Compute $\\frac{9}{3}$.", "A bare problem without the instruction.",
    ]
    assert frame["answer"].tolist() == ["2", "5", "3", "7"]
    assert frame["id"].tolist() == ["dapo17k-uuid-0-0", "dapo17k-uuid-1-0", "dapo17k-uuid-2-0", "dapo17k-uuid-bare"]
    assert not any(DAPO_PREFIX.strip() in p or "Remember to put" in p for p in frame["problem"])
    assert "13 rows -> 4 distinct problems" in caplog.text
    assert provenance(frame)["raw_rows"] == 13 and provenance(frame)["conflicting_problems"] == []
    # The template puts DAPO's prompt back together exactly.
    assert DAPO_TEMPLATE.format(problem=frame["problem"][0]) == rows[0]["prompt"][0]["content"]


def test_dapo_kept_count_outside_expected_range(tmp_path, cache):
    f = write_parquet(tmp_path / "dapo.parquet", dapo_rows())
    with pytest.raises(PipelineError, match=r"benchmark dapo17k .*expected between 10 and 20 distinct problems, got 4"):
        load_benchmark("dapo17k", data_files=f, cache_dir=cache, expected_rows=(10, 20))
    # The spec's counts: 1,791,700 raw rows first, then 17,398 distinct problems.
    with pytest.raises(PipelineError, match=r"dapo17k .*expected 1791700 rows, got 13"):
        load_benchmark("dapo17k", data_files=f, cache_dir=cache)


def test_dapo_distinct_count_is_checked_before_conflicts_are_dropped(tmp_path, cache, monkeypatch):
    """With the spec's counts, the distinct problems (17,398) include the 7 conflicting ones."""
    rows = [dapo_row("P.", "1", "a"), dapo_row("P.", "2", "b"), dapo_row("Q.", "3", "c"), dapo_row("Q.", "3", "d")]
    f = write_parquet(tmp_path / "dapo.parquet", rows)
    spec = dataclasses.replace(BENCHMARKS["dapo17k"], expected_raw_rows=4, expected_rows=2, expected_conflicts=1)
    monkeypatch.setitem(BENCHMARKS, "dapo17k", spec)
    frame = load_benchmark("dapo17k", data_files=f, cache_dir=cache)
    assert frame["problem"].tolist() == ["Q."]
    spec = dataclasses.replace(spec, expected_rows=1)
    monkeypatch.setitem(BENCHMARKS, "dapo17k", spec)
    with pytest.raises(PipelineError, match="expected 1 distinct problems, got 2"):
        load_benchmark("dapo17k", data_files=f, cache_dir=cache)


def test_dapo_conflicting_duplicates_are_dropped(tmp_path, cache, caplog):
    """A problem whose copies disagree on the answer is dropped entirely, logged, and listed in the provenance."""
    rows = [
        dapo_row("Same problem.", "1", "a"), dapo_row("Other problem.", "5", "x"), dapo_row("Same problem.", " 2 ", "b"),
        dapo_row("Same problem.", "1", "c"), dapo_row("Other problem.", "5", "y"), dapo_row("Third.", "7.0", "t"),
        dapo_row("Third.", "7", "u"),  # 7.0 and 7 are one canonical answer: no conflict
    ]
    f = write_parquet(tmp_path / "dapo.parquet", rows)
    with caplog.at_level(logging.INFO, logger="pipeline.data.hub"):
        frame = load_benchmark("dapo17k", data_files=f, cache_dir=cache, expected_rows=3)
    assert frame["problem"].tolist() == ["Other problem.", "Third."]
    assert frame["id"].tolist() == ["dapo17k-x", "dapo17k-t"]
    assert "1 problems (3 rows) carry conflicting answers and are dropped (rule 'drop')" in caplog.text
    prov = provenance(frame)
    assert prov["distinct_problems"] == 3 and prov["dropped_conflicting"] == 1 and prov["rows"] == 2
    assert prov["conflicting_problems"] == [
        {"id": "a", "problem": "Same problem.", "rows": 3, "answers": {"1": 2, "2": 1}}
    ]
    json.dumps(prov)  # goes into the data stage's report


def test_dapo_conflict_count_differing_from_the_pinned_revision_warns(tmp_path, cache, caplog, monkeypatch):
    rows = [dapo_row("P.", "1", "a"), dapo_row("P.", "2", "b")]
    f = write_parquet(tmp_path / "dapo.parquet", rows)
    monkeypatch.setitem(BENCHMARKS, "dapo17k", dataclasses.replace(
        BENCHMARKS["dapo17k"], expected_raw_rows=2, expected_rows=1, expected_conflicts=7))
    with caplog.at_level(logging.WARNING, logger="pipeline.data.hub"):
        assert len(load_benchmark("dapo17k", data_files=f, cache_dir=cache)) == 0
    assert "1 problems with conflicting answers, the pinned revision has 7" in caplog.text


# --------------------------------------------------------------------------- checks and errors


@pytest.mark.parametrize(
    ("name", "rows"), [("aime24", AIME24_ROWS), ("amc23", AMC_ROWS), ("math500", MATH500_ROWS)]
)
def test_row_count_assertion_names_the_dataset(tmp_path, cache, name, rows):
    f = write_jsonl(tmp_path / f"{name}.jsonl", rows)
    expected = BENCHMARKS[name].expected_rows
    with pytest.raises(PipelineError, match=rf"benchmark {name} .*expected {expected} rows, got {len(rows)}"):
        load_benchmark(name, data_files=f, cache_dir=cache)
    with pytest.raises(PipelineError, match=rf"benchmark {name} .*expected 99 rows, got {len(rows)}"):
        load_benchmark(name, data_files=f, cache_dir=cache, expected_rows=99)


def test_aime25_default_row_count(tmp_path, cache):
    f1 = write_jsonl(tmp_path / "aime2025-I.jsonl", AIME25_I)
    f2 = write_jsonl(tmp_path / "aime2025-II.jsonl", AIME25_II)
    with pytest.raises(PipelineError, match=r"benchmark aime25 .*expected 30 rows, got 4"):
        load_benchmark("aime25", data_files=[f1, f2], cache_dir=cache)


def test_missing_column_is_named(tmp_path, cache):
    f = write_jsonl(tmp_path / "aime25.jsonl", [{"problem": "p", "answer": "1"}])  # AIME25 uses `question`
    with pytest.raises(PipelineError, match=r"benchmark aime25 .*no column 'question'.*columns: problem, answer"):
        load_benchmark("aime25", data_files=f, cache_dir=cache, expected_rows=1)


def test_wrong_nested_layout_is_named(tmp_path, cache):
    f = write_jsonl(tmp_path / "dapo.jsonl", [{"prompt": "flat text", "reward_model": {"ground_truth": "1"}}])
    with pytest.raises(PipelineError, match=r"benchmark dapo17k .*'prompt' has type string"):
        load_benchmark("dapo17k", data_files=f, cache_dir=cache, expected_rows=1)


def test_missing_answer_is_an_error(tmp_path, cache):
    rows = [dict(AMC_ROWS[0]), dict(AMC_ROWS[1], answer=None)]
    f = write_jsonl(tmp_path / "amc.jsonl", rows)
    with pytest.raises(PipelineError, match=r"benchmark amc23 .*answer missing or not finite in row 1"):
        load_benchmark("amc23", data_files=f, cache_dir=cache, expected_rows=2)


def test_duplicate_own_ids_are_an_error(tmp_path, cache):
    rows = [AIME24_ROWS[0], dict(AIME24_ROWS[1], id=60)]
    f = write_jsonl(tmp_path / "aime24.jsonl", rows)
    with pytest.raises(PipelineError, match=r"benchmark aime24 .*duplicate id 'aime24-60'"):
        load_benchmark("aime24", data_files=f, cache_dir=cache, expected_rows=2)


def test_bad_sources(tmp_path, cache):
    with pytest.raises(PipelineError, match="unknown benchmark 'aime23'"):
        load_benchmark("aime23", data_files=tmp_path / "x.jsonl")
    with pytest.raises(PipelineError, match=r"benchmark aime24: data file .*missing.jsonl does not exist"):
        load_benchmark("aime24", data_files=tmp_path / "missing.jsonl")
    txt = tmp_path / "rows.txt"
    txt.write_text("x")
    with pytest.raises(PipelineError, match="unsupported extension"):
        load_benchmark("aime24", data_files=txt)
    a = write_jsonl(tmp_path / "a.jsonl", AIME25_I)
    b = write_parquet(tmp_path / "b.parquet", AIME25_II)
    with pytest.raises(PipelineError, match="mix formats"):
        load_benchmark("aime25", data_files=[a, b])
    with pytest.raises(PipelineError, match="not both"):
        load_benchmark("aime24", data_files=a, path=tmp_path)
    with pytest.raises(PipelineError, match="does not exist"):
        load_benchmark("aime24", path=tmp_path / "nowhere")
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"id": 1, "problem": \n')
    with pytest.raises(PipelineError, match=r"benchmark aime24: cannot read .*broken.jsonl"):
        load_benchmark("aime24", data_files=broken, cache_dir=cache, expected_rows=1)


def test_loader_config(tmp_path, cache):
    f = write_jsonl(tmp_path / "aime24.jsonl", AIME24_ROWS)
    frame = load_benchmark_from_config(
        "aime24", {"data_files": [str(f)], "cache_dir": str(cache), "expected_rows": 3, "revision": None}
    )
    assert len(frame) == 3
    dapo = write_parquet(tmp_path / "dapo.parquet", dapo_rows())
    frame = load_benchmark_from_config("dapo17k", {"data_files": str(dapo), "cache_dir": str(cache), "expected_rows": [3, 5]})
    assert len(frame) == 4
    with pytest.raises(PipelineError, match="unknown loader key"):
        load_benchmark_from_config("aime24", {"data_file": str(f)})
    with pytest.raises(PipelineError, match="expected_rows must be"):
        load_benchmark_from_config("aime24", {"data_files": str(f), "expected_rows": [5, 1]})


# --------------------------------------------------------------------------- local directories


def test_save_to_disk_dataset_and_dataset_dict(tmp_path, cache):
    import datasets

    direct = load_benchmark("math500", data_files=write_jsonl(tmp_path / "m.jsonl", MATH500_ROWS),
                            cache_dir=cache, expected_rows=3)
    ds = datasets.Dataset.from_list(MATH500_ROWS)
    ds.save_to_disk(str(tmp_path / "ds"))
    from_ds = load_benchmark("math500", path=tmp_path / "ds", expected_rows=3)
    pd.testing.assert_frame_equal(from_ds, direct)

    datasets.DatasetDict({"test": ds}).save_to_disk(str(tmp_path / "dd"))
    pd.testing.assert_frame_equal(load_benchmark("math500", path=tmp_path / "dd", expected_rows=3), direct)

    datasets.DatasetDict({"train": ds}).save_to_disk(str(tmp_path / "wrong_split"))
    with pytest.raises(PipelineError, match=r"benchmark math500: .* has splits train, not 'test'"):
        load_benchmark("math500", path=tmp_path / "wrong_split", expected_rows=3)


def test_script_free_local_repository_with_configs(tmp_path, cache):
    repo = tmp_path / "AIME2025"
    repo.mkdir()
    write_jsonl(repo / "aime2025-I.jsonl", AIME25_I)
    write_jsonl(repo / "aime2025-II.jsonl", AIME25_II)
    (repo / "README.md").write_text(
        "---\n"
        "configs:\n"
        "- config_name: AIME2025-I\n"
        "  data_files:\n"
        "  - split: test\n"
        "    path: aime2025-I.jsonl\n"
        "- config_name: AIME2025-II\n"
        "  data_files:\n"
        "  - split: test\n"
        "    path: aime2025-II.jsonl\n"
        "---\n"
    )
    frame = load_benchmark("aime25", path=repo, cache_dir=cache, expected_rows=4)
    assert_schema(frame)
    assert frame["answer"].tolist() == ["70", "588", "336", "468"]
    assert frame["problem"].tolist() == [r["question"] for r in AIME25_I + AIME25_II]


# --------------------------------------------------------------------------- decontamination


def frame_of(source: str, problems: list[str]) -> pd.DataFrame:
    return pd.DataFrame(
        {"id": [f"{source}-{i}" for i in range(len(problems))], "problem": problems, "answer": ["1"] * len(problems),
         "difficulty": [-1] * len(problems), "source": [source] * len(problems)}
    )


def test_normalize_problem_text():
    assert normalize_problem_text("  Find  $x$ if\n$2\\,x = 10$.  ") == "find x if 2x = 10."
    assert normalize_problem_text("A\\;B\\!C") == "abc"


def test_decontamination_report_and_check(caplog):
    train = frame_of("train", [
        "Find $x$ if $2x = 10$.",           # == aime-1 after normalisation
        "What is 1+1?",
        "FIND  x IF 2\\,x = 10.",           # also == aime-1
        "Compute $\\frac{9}{3}$.",          # == math-0
    ])
    evals = {
        "aime": frame_of("aime", ["Something else.", "find x if 2x = 10.", "Unrelated."]),
        "math": frame_of("math", ["compute \\frac{9}{3}.", "Another."]),
        "amc": frame_of("amc", ["No overlap here."]),
    }
    report = decontamination_report(train, evals)
    assert report["train_problems"] == 4
    assert report["total_overlap"] == 2
    assert report["suites"]["aime"] == {
        "problems": 3, "overlap": 1, "eval_ids": ["aime-1"], "train_ids": ["train-0", "train-2"],
    }
    assert report["suites"]["math"] == {"problems": 2, "overlap": 1, "eval_ids": ["math-0"], "train_ids": ["train-3"]}
    assert report["suites"]["amc"]["overlap"] == 0 and report["suites"]["amc"]["eval_ids"] == []
    json.dumps(report)  # serialisable as written to a report file

    with caplog.at_level(logging.WARNING, logger="pipeline.data.hub"):
        assert check_decontamination(report, fail=False) == 2
    assert "overlap evaluation suites on 2 problems" in caplog.text and "aime: 1/3 (e.g. aime-1)" in caplog.text
    with pytest.raises(PipelineError, match=r"on 2 problems: aime: 1/3 \(e\.g\. aime-1\); math: 1/2 \(e\.g\. math-0\)"):
        check_decontamination(report, fail=True)


def test_decontamination_clean():
    report = decontamination_report(frame_of("train", ["a"]), {"s": frame_of("s", ["b"])})
    assert report["total_overlap"] == 0
    assert check_decontamination(report, fail=True) == 0


def test_decontamination_on_loaded_frames(tmp_path, cache):
    """Overlap found between a loaded training set and a loaded suite (DAPO's instruction stripped first)."""
    math = load_benchmark("math500", data_files=write_jsonl(tmp_path / "m.jsonl", MATH500_ROWS),
                          cache_dir=cache, expected_rows=3)
    rows = dapo_rows() + [dapo_row("If  $f(x) = x^2$, find $f(3)$.", "9", "uuid-leak")]
    dapo = load_benchmark("dapo17k", data_files=write_parquet(tmp_path / "d.parquet", rows),
                          cache_dir=cache, expected_rows=5)
    report = decontamination_report(dapo, {"math500": math})
    assert report["suites"]["math500"]["eval_ids"] == ["math500-test/algebra/2584.json"]
    assert report["suites"]["math500"]["train_ids"] == ["dapo17k-uuid-leak"]


def test_ids_fall_back_to_row_positions_without_an_own_id(tmp_path, cache):
    rows = [{k: v for k, v in r.items() if k != "id"} for r in AIME24_ROWS]
    frame = load_benchmark("aime24", data_files=write_jsonl(tmp_path / "a.jsonl", rows), cache_dir=cache, expected_rows=3)
    assert frame["id"].tolist() == ["aime24-0", "aime24-1", "aime24-2"]
    rows = [{k: v for k, v in r.items() if k != "extra_info"} for r in dapo_rows()]
    frame = load_benchmark("dapo17k", data_files=write_parquet(tmp_path / "d.parquet", rows), cache_dir=cache,
                           expected_rows=4)
    assert frame["id"].tolist() == ["dapo17k-0", "dapo17k-1", "dapo17k-2", "dapo17k-3"]


# --------------------------------------------------------------------------- alternative benchmarks


def test_math_ai_aime24_answers_come_from_the_boxed_solution(tmp_path, cache):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [
        {"id": 60, "problem": "Find $N$.", "solution": "So $N=\\boxed{204}$.", "url": "u"},
        {"id": 61, "problem": "Find $M$.", "solution": "First $\\boxed{1}$, then $\\boxed{\\frac{1}{2}}$", "url": "u"},
    ]
    schema = pa.schema([("id", pa.int64()), ("problem", pa.string()), ("solution", pa.string()), ("url", pa.string())])
    f = tmp_path / "test-00000-of-00001.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), f)
    frame = load_benchmark("aime24_mathai", data_files=f, cache_dir=cache, expected_rows=2)
    assert_schema(frame)
    assert frame["answer"].tolist() == ["204", "\\frac{1}{2}"]  # the LAST box, braces balanced
    assert frame["id"].tolist() == ["aime24_mathai-60", "aime24_mathai-61"]
    pq.write_table(pa.Table.from_pylist([dict(rows[0], solution="no box")], schema=schema), f)
    with pytest.raises(PipelineError, match=r"aime24_mathai .*no \\boxed\{\} answer in 'solution' of row 0"):
        load_benchmark("aime24_mathai", data_files=f, cache_dir=cache, expected_rows=1)


def test_math_ai_amc23_and_aime25_layouts(tmp_path, cache):
    amc = write_parquet(tmp_path / "amc.parquet", [
        {"id": 0, "question": "What is $1+1$?", "answer": 2.0, "url": "2023_AMC_12A"},
        {"id": 1, "question": "What is $1/4$?", "answer": 0.25, "url": "2023_AMC_12B"},
    ])
    frame = load_benchmark("amc23_mathai", data_files=amc, cache_dir=cache, expected_rows=2)
    assert frame["answer"].tolist() == ["2", "0.25"] and frame["source"].tolist() == ["amc23_mathai"] * 2
    with pytest.raises(PipelineError, match="expected 40 rows, got 2"):
        load_benchmark("amc23_mathai", data_files=amc, cache_dir=cache)
    aime = write_jsonl(tmp_path / "test.jsonl", [{"problem": "Find $x$.", "answer": "336^\\circ", "id": "7"}])
    frame = load_benchmark("aime25_mathai", data_files=aime, cache_dir=cache, expected_rows=1)
    assert frame["id"].tolist() == ["aime25_mathai-7"] and frame["answer"].tolist() == ["336"]


# --------------------------------------------------------------------------- the hub path (a local stand-in)


class RecordingHub:
    """Stands in for ``datasets.load_dataset`` on the hub: records what the loader asks for and
    serves a local directory laid out as the hub repository through the real ``datasets``."""

    def __init__(self, repos: dict[str, Path], revisions: dict[str, str]):
        self.repos, self.revisions, self.calls = repos, revisions, []

    def __call__(self, hub_id, config, *, split, revision, cache_dir):
        import datasets

        self.calls.append((hub_id, config, split, revision))
        if revision != self.revisions[hub_id]:
            raise ValueError(f"Revision '{revision}' doesn't exist for dataset '{hub_id}'")
        return datasets.load_dataset(str(self.repos[hub_id]), config, split=split, cache_dir=cache_dir)


def aime25_repo(tmp_path) -> Path:
    repo = tmp_path / "opencompass" / "AIME2025"
    repo.mkdir(parents=True)
    write_jsonl(repo / "aime2025-I.jsonl", AIME25_I)
    write_jsonl(repo / "aime2025-II.jsonl", AIME25_II)
    (repo / "README.md").write_text(
        "---\nconfigs:\n- config_name: AIME2025-I\n  data_files:\n  - split: test\n    path: aime2025-I.jsonl\n"
        "- config_name: AIME2025-II\n  data_files:\n  - split: test\n    path: aime2025-II.jsonl\n---\n"
    )
    return repo


def test_hub_load_asks_for_exactly_the_pinned_revision(tmp_path, cache, monkeypatch):
    import pipeline.data.hub as hub

    pinned = BENCHMARKS["aime25"].known_revision
    fake = RecordingHub({"opencompass/AIME2025": aime25_repo(tmp_path)}, {"opencompass/AIME2025": pinned})
    monkeypatch.setattr(hub, "hub_load_dataset", fake)
    frame = load_benchmark_from_config("aime25", {"revision": pinned, "cache_dir": str(cache), "expected_rows": 4})
    assert fake.calls == [
        ("opencompass/AIME2025", "AIME2025-I", "test", pinned), ("opencompass/AIME2025", "AIME2025-II", "test", pinned),
    ]
    assert frame["answer"].tolist() == ["70", "588", "336", "468"]
    prov = provenance(frame)
    assert prov["source"] == "hub" and prov["revision"] == pinned and prov["origin"] == f"opencompass/AIME2025@{pinned}"
    assert prov["configs"] == ["AIME2025-I", "AIME2025-II"] and prov["split"] == "test" and prov["raw_rows"] == 4
    # Another commit is another dataset: the hub refuses, the loader says so in one line.
    other = "0" * 40
    with pytest.raises(PipelineError, match=rf"cannot load opencompass/AIME2025 config AIME2025-I split test @ {other}"):
        load_benchmark("aime25", revision=other, cache_dir=cache, expected_rows=4)


def test_hub_revision_other_than_the_known_pin_warns(tmp_path, cache, monkeypatch, caplog):
    import pipeline.data.hub as hub

    other = "1" * 40
    fake = RecordingHub({"opencompass/AIME2025": aime25_repo(tmp_path)}, {"opencompass/AIME2025": other})
    monkeypatch.setattr(hub, "hub_load_dataset", fake)
    with caplog.at_level(logging.WARNING, logger="pipeline.data.hub"):
        load_benchmark("aime25", revision=other, cache_dir=cache, expected_rows=4)
    assert f"differs from the commit the paper configs pin ({BENCHMARKS['aime25'].known_revision})" in caplog.text


def test_local_loads_record_the_configured_revision(tmp_path, cache):
    f = write_jsonl(tmp_path / "aime24.jsonl", AIME24_ROWS)
    pinned = BENCHMARKS["aime24"].known_revision
    frame = load_benchmark_from_config("aime24", {"data_files": str(f), "revision": pinned, "expected_rows": 3,
                                                  "cache_dir": str(cache)})
    prov = provenance(frame)
    assert prov["source"] == "data_files" and prov["revision"] == pinned and prov["origin"] == str(f)


# --------------------------------------------------------------------------- the paper configs

PAPER_CONFIGS = sorted((ROOT / "configs" / "paper").glob("*.yaml"))
BASE_MODEL_PINS = {
    "Qwen/Qwen2.5-7B": "d149729398750b98c0af14eb82c78cfe92750796",
    "Qwen/Qwen2.5-Math-7B": "b101308fe89651ea5ce025f25317fea6fc07e96e",
}


def _paper_config(path: Path) -> dict:
    import yaml

    return yaml.safe_load(path.read_text())


def test_paper_configs_are_there():
    assert {p.stem for p in PAPER_CONFIGS} == {
        "cheng2025_table2_qwen25_7b", "cheng2025_table2_qwen25_math_7b", "cheng2025_table3", "zhang2025_aer_qwen25_7b",
    }


@pytest.mark.parametrize("config", PAPER_CONFIGS, ids=lambda p: p.stem)
def test_paper_config_pins_every_revision(config):
    """Nothing to look up: every dataset and the base model at the commit of issue 14, no null left."""
    cfg = _paper_config(config)
    assert "revision: null" not in config.read_text()
    assert set(cfg["suites"]) == {"aime25", "aime24", "amc23", "math500"}
    for suite, entry in cfg["suites"].items():
        assert entry["benchmark"] == suite  # the paper's sets: AMC23 = all 83 rows of aimo-validation-amc
        assert entry["revision"] == PINNED[suite][1], suite
        assert not {"data_files", "path", "expected_rows"} & set(entry)
    assert cfg["train_data"] == {"benchmark": "dapo17k", "revision": PINNED["dapo17k"][1]}
    hub = cfg["base_model"]["hub"]
    assert hub["revision"] == BASE_MODEL_PINS[hub["repo_id"]] and not hub.get("local_path")


# Methods of each paper config that the papers report numbers for (AER, Clip-Cov and KL-Cov have
# no Pass@K numbers in our sources: their cells show "—").
REPORTED_METHODS = {
    "cheng2025_table2_qwen25_7b": {"base", "grpo", "grpo_entropy_adv", "ppo", "ppo_entropy_adv"},
    "cheng2025_table2_qwen25_math_7b": {"base", "grpo", "grpo_entropy_adv"},
    "cheng2025_table3": {"base", "grpo", "grpo_entropy_reg", "grpo_entropy_adv"},
    "zhang2025_aer_qwen25_7b": {"base", "grpo", "grpo_entropy_reg"},
}


@pytest.mark.parametrize("config", PAPER_CONFIGS, ids=lambda p: p.stem)
def test_paper_config_puts_the_reported_numbers_beside_ours(config):
    """report.reported / suite_map resolve against the shipped reference CSVs, at our K, for the reported methods."""
    from pipeline.config import check_config
    from pipeline.report.scores import parse_reported
    from pipeline.report.tables import reported_cells

    cfg = check_config(_paper_config(config))
    report = cfg["report"]
    assert report["reported"] and set(report["suite_map"]) == set(cfg["suites"])
    k_of = {s: e["k"] for s, e in cfg["suites"].items()}
    cells = reported_cells(parse_reported(report["reported"]), report["suite_map"], list(cfg["suites"]), k_of)
    ours = {"base", *cfg["methods"]}
    assert set(cells["method"]) & ours == REPORTED_METHODS[config.stem]
    # Every suite has a reported Pass@K at our K and a Pass@1, for the base model and each reported method.
    for method in REPORTED_METHODS[config.stem]:
        sub = cells[cells["method"] == method]
        assert {(s, m) for s, m in zip(sub["suite"], sub["metric"])} == {
            (s, m) for s in cfg["suites"] for m in ("pass@K", "pass@1")
        }, (config.stem, method)
        assert all(int(k) == k_of[s] for s, m, k in zip(sub["suite"], sub["metric"], sub["k"]) if m == "pass@K")
    model = parse_reported(report["reported"])[0][1]
    assert model == ("Qwen2.5-Math-7B" if "math" in config.stem else "Qwen2.5-7B")


@pytest.fixture(scope="module")
def hub_mirrors(tmp_path_factory):
    """Every dataset laid out as its hub repository (rehearsal mirrors), behind a stand-in hub."""
    from rehearsal.mirrors import write_mirrors

    root = tmp_path_factory.mktemp("hub")
    write_mirrors(root, seed=0)
    return root


@pytest.mark.parametrize("config", PAPER_CONFIGS, ids=lambda p: p.stem)
def test_dry_run_data_job_asks_the_hub_for_exactly_the_pinned_revisions(config, hub_mirrors, tmp_path, monkeypatch):
    """`snakemake -n` of the paper config lists the jobs; its data job, run as Snakemake would run it
    (the same --suites-json / --train-json), asks the hub for exactly the pinned commits and records
    them in the report's provenance. Only expected_rows is set to the mirrors' sizes."""
    import shlex
    import subprocess
    import sys

    import pipeline.data.hub as hub
    from pipeline.cli import main
    from rehearsal.mirrors import LocalHub, read_manifest

    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "-p", "--snakefile", str(ROOT / "Snakefile"), "--directory",
         str(tmp_path), "--configfile", str(config), "--cores", "64"],
        capture_output=True, text=True, timeout=300,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "revision\":null" not in out and "prepare_data" in out
    line = next(ln for ln in out.splitlines() if "-m pipeline prepare-hub-data" in ln)
    argv = shlex.split(line.split("prepare-hub-data", 1)[1])
    suites = json.loads(argv[argv.index("--suites-json") + 1])
    train = json.loads(argv[argv.index("--train-json") + 1])
    cfg = _paper_config(config)
    assert {s: e["revision"] for s, e in suites.items()} == {s: e["revision"] for s, e in cfg["suites"].items()}

    sizes = read_manifest(hub_mirrors)["benchmarks"]
    for entry in [*suites.values(), train]:
        entry["expected_rows"] = sizes[entry["benchmark"]]["expected_rows"]
        entry["cache_dir"] = str(tmp_path / "hf-cache")
    local_hub = LocalHub(hub_mirrors)
    monkeypatch.setattr(hub, "hub_load_dataset", local_hub.load_dataset)
    report_path = tmp_path / "decontamination.json"
    assert main([
        "prepare-hub-data", "--suites-json", json.dumps(suites), "--train-json", json.dumps(train),
        "--suites-dir", str(tmp_path / "suites"), "--train-out", str(tmp_path / "train.parquet"),
        "--report", str(report_path),
    ]) == 0
    asked = {(c["hub_id"], c["config"], c["revision"]) for c in local_hub.calls}
    assert asked == {
        ("HuggingFaceH4/aime_2024", None, PINNED["aime24"][1]),
        ("opencompass/AIME2025", "AIME2025-I", PINNED["aime25"][1]),
        ("opencompass/AIME2025", "AIME2025-II", PINNED["aime25"][1]),
        ("AI-MO/aimo-validation-amc", None, PINNED["amc23"][1]),
        ("HuggingFaceH4/MATH-500", None, PINNED["math500"][1]),
        ("BytedTsinghua-SIA/DAPO-Math-17k", None, PINNED["dapo17k"][1]),
    }
    report = json.loads(report_path.read_text())
    recorded = {name: p["revision"] for name, p in report["provenance"]["suites"].items()}
    assert recorded == {s: PINNED[s][1] for s in cfg["suites"]}
    assert report["provenance"]["train"]["revision"] == PINNED["dapo17k"][1]
    assert report["provenance"]["train"]["dropped_conflicting"] == 1  # the mirror's conflicting problem
    assert report["total_overlap"] == 1  # the mirror's DAPO problem that is also a MATH-500 problem
    # The Parquet files carry no provenance (a moved mirror must not change their bytes).
    import pyarrow.parquet as pq

    assert b"PANDAS_ATTRS" not in (pq.read_schema(tmp_path / "train.parquet").metadata or {})
