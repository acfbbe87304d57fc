"""The workflow's helpers (pipeline.workflow), stage registration and import weight."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

from pipeline.cli import STAGES
from pipeline.config import method_specs
from pipeline import workflow
from pipeline.rl.methods import BASELINE_OF

ROOT = Path(__file__).resolve().parents[1]


def test_method_baselines_follow_presets_and_need_the_baseline_configured():
    methods = {
        "grpo": {"preset": "grpo"},
        "grpo_entropy_adv": {"preset": "grpo_entropy_adv"},
        "ppo_entropy_adv": {"preset": "ppo_entropy_adv"},  # ppo not configured: no baseline
        "grpo_beta01": {"preset": "grpo_entropy_reg"},  # a custom name compares against its preset's baseline
        "grpo_lr2": {"preset": "grpo"},  # a GRPO variant has no baseline
    }
    assert workflow.method_baselines(methods, BASELINE_OF) == {"grpo_entropy_adv": "grpo", "grpo_beta01": "grpo"}


def test_method_baselines_on_the_resolved_default_config():
    import yaml

    cfg = yaml.safe_load((ROOT / "config.yaml").read_text())
    from pipeline.config import check_config

    baselines = workflow.method_baselines(method_specs(check_config(cfg)), BASELINE_OF)
    assert baselines["grpo_entropy_adv"] == "grpo" and baselines["ppo_entropy_adv"] == "ppo"
    assert "grpo" not in baselines and "ppo" not in baselines
    assert set(baselines) == set(BASELINE_OF)


def test_report_defaults_come_from_the_schema_only():
    from pipeline.config import check_config
    import yaml

    cfg = check_config(yaml.safe_load((ROOT / "config.yaml").read_text()))
    report = cfg["report"]
    assert report["reported"] == [] and report["suite_map"] == {}
    assert report["bootstrap"] == 10000 and report["seed"] == 0
    assert report["paper_context"] == ["cheng2025_table2:Qwen2.5-7B", "cheng2025_table3:Qwen2.5-7B"]
    assert not hasattr(workflow, "report_settings")  # no second copy of the defaults


def test_shell_options_are_quoted_or_absent():
    assert workflow.option("--paper-context", []) == ""
    opt = workflow.option("--paper-context", ["a b:Model X", "c:d"])
    assert shlex.split(opt) == ["--paper-context", "a b:Model X", "c:d"]
    s = {"reported": ["cheng2025_table2:Qwen2.5-7B"], "suite_map": {"x": "aime25"}}
    opt = workflow.reported_options(s, json.dumps(s["suite_map"]))
    assert shlex.split(opt) == ["--reported", "cheng2025_table2:Qwen2.5-7B", "--suite-map", '{"x": "aime25"}']
    assert workflow.reported_options({"reported": [], "suite_map": {}}, "{}") == ""


def test_reference_files_for_code_hash():
    files = workflow.reference_files(
        ["cheng2025_table3:Qwen2.5-7B", "cheng2025_table2:Qwen2.5-7B", "cheng2025_table2:Qwen2.5-Math-7B",
         "/elsewhere/private.csv:M"],
        ROOT / "pipeline",
    )
    assert files == ["reference/cheng2025_table2.csv", "reference/cheng2025_table3.csv"]


def test_report_config_summary():
    config = {"run_name": "r", "world": "toy",
              "suites": {"a": {"k": 8, "n_samples": 16, "problems": 4, "difficulties": [1]}, "b": {"k": 4, "n_samples": 4}}}
    out = workflow.report_config(config, ["grpo", "grpo_entropy_adv"], {"grpo_entropy_adv": "grpo"}, [0, 1], ["a", "b"])
    assert out["suites"] == {"a": {"k": 8, "n_samples": 16, "problems": 4}, "b": {"k": 4, "n_samples": 4}}
    assert out["methods"] == ["grpo", "grpo_entropy_adv"] and out["seeds"] == [0, 1]
    json.dumps(out)  # a plain, JSON-able param


def test_report_stages_are_registered_in_the_cli():
    for stage, module in (("compare", "pipeline.report.compare"), ("crossing", "pipeline.report.crossing"),
                          ("report", "pipeline.report.report")):
        assert STAGES[stage][0] == module


def test_report_modules_import_without_torch_or_matplotlib():
    code = (
        "import sys\n"
        "import pipeline.report.tables, pipeline.report.compare, pipeline.report.crossing, "
        "pipeline.report.report, pipeline.report.reference, pipeline.workflow\n"
        "print(sorted(m for m in ('torch', 'matplotlib') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]"
