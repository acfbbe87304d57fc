"""Hub benchmark loaders on local fixture files in each dataset's real column layout.

Every load goes through the real ``datasets`` library (json/parquet builders,
``save_to_disk``/``load_from_disk``, a script-free local dataset directory with configs),
exactly as the hub path would after download; only the hub itself is out of reach here.
"""

from __future__ import annotations

import json
import logging

import pandas as pd
import pytest

from pipeline.data.hub import (
    BENCHMARKS,
    DAPO_PREFIX,
    DAPO_SUFFIX,
    DAPO_TEMPLATE,
    canonical_answer,
    check_decontamination,
    decontamination_report,
    load_benchmark,
    load_benchmark_from_config,
    normalize_problem_text,
)
from pipeline.data.schema import COLUMNS, problems_frame
from pipeline.errors import PipelineError


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


def test_registry_describes_the_spec_datasets():
    assert set(BENCHMARKS) == {"aime24", "aime25", "amc23", "math500", "dapo17k"}
    assert BENCHMARKS["aime24"].hub_id == "HuggingFaceH4/aime_2024" and BENCHMARKS["aime24"].split == "train"
    assert BENCHMARKS["aime25"].configs == ("AIME2025-I", "AIME2025-II") and BENCHMARKS["aime25"].split == "test"
    assert BENCHMARKS["amc23"].expected_rows == 83
    assert BENCHMARKS["math500"].expected_rows == 500 and BENCHMARKS["math500"].difficulty_field == "level"
    assert BENCHMARKS["dapo17k"].expected_rows == (17_000, 18_000)
    assert [BENCHMARKS[n].expected_rows for n in ("aime24", "aime25")] == [30, 30]
    # No revision is baked in: it must come from the config.
    assert all(spec.revision is None for spec in BENCHMARKS.values())


@pytest.mark.parametrize("name", sorted(BENCHMARKS))
def test_hub_load_without_revision_is_refused(name, cache):
    with pytest.raises(PipelineError, match=rf"benchmark {name}: .*pinned revision"):
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
    assert "13 rows -> 4 distinct problems kept" in caplog.text
    # The template puts DAPO's prompt back together exactly.
    assert DAPO_TEMPLATE.format(problem=frame["problem"][0]) == rows[0]["prompt"][0]["content"]


def test_dapo_kept_count_outside_expected_range(tmp_path, cache):
    f = write_parquet(tmp_path / "dapo.parquet", dapo_rows())
    with pytest.raises(PipelineError, match=r"benchmark dapo17k .*expected between 10 and 20 distinct problems, got 4"):
        load_benchmark("dapo17k", data_files=f, cache_dir=cache, expected_rows=(10, 20))
    # The default range is the spec's [17000, 18000].
    with pytest.raises(PipelineError, match=r"dapo17k .*expected between 17000 and 18000 distinct problems, got 4"):
        load_benchmark("dapo17k", data_files=f, cache_dir=cache)


def test_dapo_conflicting_duplicates_keep_the_first_answer(tmp_path, cache, caplog):
    rows = [dapo_row("Same problem.", "1", "a"), dapo_row("Same problem.", "2", "b")]
    f = write_parquet(tmp_path / "dapo.parquet", rows)
    with caplog.at_level(logging.INFO, logger="pipeline.data.hub"):
        frame = load_benchmark("dapo17k", data_files=f, cache_dir=cache, expected_rows=1)
    assert frame["answer"].tolist() == ["1"]
    assert "1 problems appear with different answers" in caplog.text


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
