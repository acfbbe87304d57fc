"""Rule code hashes come from the stage's import closure, so no imported module is missed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.cli import STAGES
from pipeline.codehash import ROOT, closure, stage_code_hash, stage_files

REPO = Path(__file__).resolve().parents[1]


def rel(files):
    return {str(f.relative_to(ROOT)) for f in files}


def test_the_modules_hand_kept_lists_missed_are_in_the_closure():
    assert {"eval/math_graders.py", "sampling/vllm_backend.py"} <= rel(stage_files("train", "math_verify"))
    assert "eval/math_graders.py" in rel(stage_files("score", "math_verify"))
    assert "sampling/vllm_backend.py" in rel(stage_files("sample"))
    # and a stage does not hash what it never runs
    assert "eval/math_graders.py" not in rel(stage_files("score", "answer_line"))
    assert not {"rl/trainer.py", "sampling/hf.py"} & rel(stage_files("score"))


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_the_static_closure_covers_every_module_the_stage_imports(stage):
    """Whatever importing the stage's module (and the CLI) pulls into sys.modules is hashed."""
    module = STAGES[stage][0]
    code = (
        "import importlib, json, sys; import pipeline.cli; importlib.import_module(%r); "
        "print(json.dumps(sorted(m for m in sys.modules if m == 'pipeline' or m.startswith('pipeline.'))))" % module
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True).stdout
    imported = json.loads(out)
    hashed = rel(stage_files(stage))
    for name in imported:
        parts = name.split(".")[1:]
        candidates = {"/".join(parts) + ".py", "/".join(parts + ["__init__.py"])} if parts else {"__init__.py"}
        assert candidates & hashed, f"{stage}: {name} is imported but not hashed"


def test_a_grader_module_outside_the_package_is_hashed(tmp_path, monkeypatch):
    grader = tmp_path / "my_grader.py"
    grader.write_text("def grade(response, answer):\n    return response == answer\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    before = stage_code_hash("score", "my_grader:grade")
    grader.write_text("def grade(response, answer):\n    return response.strip() == answer\n")
    assert stage_code_hash("score", "my_grader:grade") != before
    assert stage_code_hash("score", "answer_line") == stage_code_hash("score")


def test_relative_and_lazy_imports_are_followed():
    # the trainer imports vllm_backend inside run(); analysis.stage imports lazily too
    assert "sampling/vllm_backend.py" in rel(closure("pipeline.rl.trainer"))
    assert rel(closure("pipeline.eval.math_graders")) >= {"eval/grading.py", "eval/math_graders.py", "__init__.py"}
