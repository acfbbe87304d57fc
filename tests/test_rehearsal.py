"""The dress rehearsal of every paper config (rehearsal/run.py) and the honesty of its overlay.

The full run (marker ``rehearsal``, ~15-20 minutes on 2 cores) runs every config in
configs/paper through the real Snakefile with vLLM's CPU build, accelerate with 2 processes,
FSDP, bf16 and the hub-layout mirrors, and checks what a user would look at.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from rehearsal.run import ALLOWED, check_overlay, leaf_paths, merge, overlay_for

ROOT = Path(__file__).resolve().parents[1]
PAPER_CONFIGS = sorted((ROOT / "configs" / "paper").glob("*.yaml"))


@pytest.mark.parametrize("config", PAPER_CONFIGS, ids=lambda p: p.stem)
def test_the_overlay_changes_only_sizes_and_locations(config, tmp_path):
    from rehearsal.mirrors import write_mirrors

    paper = yaml.safe_load(config.read_text())
    mirrors = tmp_path / "mirrors"
    write_mirrors(mirrors)
    overlay = overlay_for(paper, config.stem, ROOT / "results" / "rehearsal", mirrors, tmp_path / "model")
    merged = merge(paper, overlay)
    changed = {path for path, value in leaf_paths(merged) if dict(leaf_paths(paper)).get(path, object()) != value}
    import fnmatch

    assert changed and all(any(fnmatch.fnmatchcase(p, a) for a in ALLOWED) for p in changed), changed
    # what the rehearsal is about stays the paper's
    for key in ("world", "prompt", "grader", "distributed", "environments"):
        assert merged[key] == paper[key], key
    assert set(merged["methods"]) == set(paper["methods"])
    assert {k: v for k, v in merged["report"].items() if k != "bootstrap"} == paper["report"]
    for key in ("backend", "temperature", "top_p", "dtype"):
        assert merged["sampling"][key] == paper["sampling"][key]
    for key in ("precision", "gradient_checkpointing", "rollout_backend", "group_size", "lr", "temperature"):
        assert merged["training"][key] == paper["training"][key]


@pytest.mark.parametrize("bad", [
    {"sampling": {"temperature": 1.0}},
    {"training": {"precision": "fp32"}},
    {"distributed": {"sharding": "ddp"}},
    {"methods": {"grpo_aer": {"regularizer": {"eta": 1.0}}}},
    {"grader": "answer_line"},
])
def test_an_overlay_key_beyond_sizes_and_locations_is_refused(bad):
    with pytest.raises(ValueError, match="changes more than sizes, model and data location"):
        check_overlay(bad)


@pytest.mark.rehearsal
def test_every_paper_config_runs_end_to_end_on_this_cpu(tmp_path):
    workdir = ROOT / "results" / "rehearsal"
    proc = subprocess.run([sys.executable, "-m", "rehearsal.run", "--workdir", str(workdir)], cwd=ROOT,
                          capture_output=True, text=True, timeout=3600)
    summary = json.loads((workdir / "rehearsal.json").read_text())
    print(json.dumps(summary["seconds"]), summary["total_seconds"])
    assert proc.returncode == 0 and not summary["failures"], proc.stdout[-3000:] + proc.stderr[-6000:]
    assert set(summary["seconds"]) == {p.stem for p in PAPER_CONFIGS}
