"""The exploration-analysis stages through the CLI on a tiny model (token entropies by teacher
forcing, the analyze stage's tables and figures, the checkpoint stage over snapshot
directories), the report section, and the rules in a dry run."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from pipeline.analysis.settings import fill_defaults
from pipeline.cli import main
from pipeline.data.schema import problems_frame
from pipeline.models import load_model_and_tokenizer
from pipeline.toy.world import generate_problems, solution_trace

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = "{problem}\n"
TOY = {
    "categories": {"reflective_words": ["wait", "check"], "answer": ["Answer"], "operators": ["+", "-", "*"]},
    "pivotal": ["reflective_words", "answer"],
    "segment_pattern": "\\n+",
    "reflective_patterns": {"wait": "^wait\\b", "check": "^check\\b"},
    "problems": 4, "samples_per_problem": 3, "bootstrap": 50,
    "checkpoints": {"problems": 2, "samples_per_problem": 2},
}


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    """A problems file and two 'models' (the same tiny model twice) with toy-world samples."""
    import random

    tmp = tmp_path_factory.mktemp("analysis")
    problems = generate_problems(3, [2, 3], 5, "t")
    path = tmp / "suite.parquet"
    problems_frame(problems).to_parquet(path)
    rng = random.Random(0)
    samples = {}
    for name in ("base", "rl"):
        rows = [{"problem_id": p.id, "sample_index": j,
                 "text": solution_trace(p, rng, slip_prob=0.5, check_prob=0.5), "finish_reason": "stop"}
                for p in problems for j in range(4)]
        frame = pd.DataFrame(rows)
        frame["num_tokens"] = frame["text"].str.len()
        samples[name] = tmp / f"{name}.parquet"
        frame.to_parquet(samples[name])
    return tmp, path, samples


def run_token_entropy(tiny_model_dir, suite):
    tmp, problems, samples = suite
    outs = [tmp / "tokens" / "base.parquet", tmp / "tokens" / "rl.parquet"]
    if all(o.exists() for o in outs):
        return outs
    token_cfg = {k: (fill_defaults(TOY)[k]) for k in ("problems", "samples_per_problem", "seed", "temperature",
                                                       "batch_size", "chunk_size")}
    args = ["token-entropy", "--model", str(tiny_model_dir), str(tiny_model_dir), "--model-name", "base", "rl/seed0",
            "--samples", str(samples["base"]), str(samples["rl"]), "--problems", str(problems),
            "--analysis-json", json.dumps({**token_cfg, "chunk_size": 7}), "--template", TEMPLATE,
            "--out", *map(str, outs)]
    assert main(args) == 0
    return outs


def test_token_entropy_stage_matches_a_direct_forward_pass(tiny_model_dir, suite):
    tmp, problems, samples = suite
    outs = run_token_entropy(tiny_model_dir, suite)
    tokens = pd.read_parquet(outs[0])
    assert list(tokens.columns) == ["model", "problem_id", "sample_index", "position", "token_id", "token", "start",
                                    "end", "entropy", "logprob"]
    assert set(tokens["model"]) == {"base"} and (pd.read_parquet(outs[1])["model"] == "rl/seed0").all()
    assert tokens.groupby(["problem_id", "sample_index"]).ngroups == 4 * 3  # problems x samples_per_problem
    assert tokens["sample_index"].max() == 2
    # The token strings spell the response, and the entropies are those of a plain forward pass.
    stored = pd.read_parquet(samples["base"])
    pid, sidx = tokens["problem_id"].iloc[0], int(tokens["sample_index"].iloc[0])
    one = tokens[(tokens["problem_id"] == pid) & (tokens["sample_index"] == sidx)].sort_values("position")
    text = stored[(stored["problem_id"] == pid) & (stored["sample_index"] == sidx)]["text"].iloc[0]
    assert "".join(one["token"]) == text
    model, tok = load_model_and_tokenizer(tiny_model_dir)
    problem = pd.read_parquet(problems).set_index("id").loc[pid, "problem"]
    prompt = tok(TEMPLATE.format(problem=problem)).input_ids
    ids = prompt + tok(text, add_special_tokens=False).input_ids
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0, len(prompt) - 1 : len(ids) - 1]
    p = torch.softmax(logits.double(), -1)
    expected = -(p * p.log()).sum(-1).numpy()
    assert np.allclose(one["entropy"].to_numpy(), expected, atol=1e-5)
    assert np.allclose(one["logprob"].to_numpy(),
                       torch.log_softmax(logits.double(), -1)[torch.arange(len(logits)), torch.tensor(ids[len(prompt):])].numpy(),
                       atol=1e-5)
    assert (tokens["entropy"] >= 0).all() and (tokens["entropy"] <= np.log(len(tok)) + 1e-6).all()


def test_analyze_stage_writes_tables_and_figures(tiny_model_dir, suite, tmp_path):
    _, _, samples = suite
    outs = run_token_entropy(tiny_model_dir, suite)
    ck = tmp_path / "ck.csv"
    pd.DataFrame([{"method": "rl", "seed": 0, "rollout": r, "responses": 4, "accuracy": 0.5, "response_length": 30.0 + r,
                   "mean_entropy": 0.3, "pivotal_per_response": 1.0, "pivotal_entropy": 0.6,
                   "reflective_per_response": 0.5, "reflective_share": 0.5, "reflective_entropy": 0.2,
                   "repetition": 0.01} for r in (0, 5)]).to_csv(ck, index=False)
    args = ["analyze", "--tokens", *map(str, outs), "--samples", str(samples["base"]), str(samples["rl"]),
            "--models", "base", "rl/seed0", "--base-model", str(tiny_model_dir), "--analysis-json", json.dumps(TOY),
            "--checkpoints", str(ck), "--methods", "rl", "--tables-dir", str(tmp_path / "tables"),
            "--figures-dir", str(tmp_path / "figures"), "--sentences-out", str(tmp_path / "sentences.parquet")]
    assert main(args) == 0
    for name in ("summary", "pivotal", "reflective", "rare", "checkpoints"):
        assert (tmp_path / "tables" / f"exploration_{name}.md").read_text().startswith("### ")
        assert len(pd.read_csv(tmp_path / "tables" / f"exploration_{name}.csv")) > 0
    for fig in ("exploration_entropy", "exploration_embeddings", "exploration_checkpoints"):
        assert (tmp_path / "figures" / f"{fig}.png").stat().st_size > 5_000
    piv = pd.read_csv(tmp_path / "tables" / "exploration_pivotal.csv")
    assert set(piv["category"]) == {"reflective_words", "answer", "operators", "all pivotal"}
    answer = piv[(piv["model"] == "base") & (piv["category"] == "answer")].iloc[0]
    assert answer["n"] == 12 and answer["per_response"] == 1.0  # one answer line per response
    refl = pd.read_csv(tmp_path / "tables" / "exploration_reflective.csv")
    assert (refl["count_wait"] + refl["count_check"] >= refl["n"]).all() and (refl["n"] > 0).all()
    rare = pd.read_csv(tmp_path / "tables" / "exploration_rare.csv")
    assert list(rare["model"]) == ["rl/seed0"] and rare["rare"].iloc[0] >= 1
    sentences = pd.read_parquet(tmp_path / "sentences.parquet")
    assert sentences["rare"].sum() == rare["rare"].iloc[0]
    # Same inputs, same outputs.
    first = (tmp_path / "tables" / "exploration_pivotal.csv").read_bytes()
    assert main(args) == 0
    assert (tmp_path / "tables" / "exploration_pivotal.csv").read_bytes() == first


def test_checkpoint_stage_walks_snapshots_in_rollout_order(tiny_model_dir, suite, tmp_path):
    _, problems, _ = suite
    snaps = tmp_path / "snapshots"
    for name in ("rollout-0010", "rollout-0000", "rollout-0005"):
        shutil.copytree(tiny_model_dir, snaps / name)
    (snaps / "notes.txt").write_text("not a snapshot")
    out = tmp_path / "ck" / "rl" / "seed0.csv"
    sampling = {"temperature": 0.6, "top_p": 0.95, "top_k": 0, "max_new_tokens": 24, "batch_size": 64}
    args = ["analyze-checkpoints", "--snapshots", str(snaps), "--run", "rl/seed0", "--problems", str(problems),
            "--analysis-json", json.dumps(TOY), "--sampling-json", json.dumps(sampling), "--template", TEMPLATE,
            "--out", str(out)]
    assert main(args) == 0
    frame = pd.read_csv(out)
    assert frame["rollout"].tolist() == [0, 5, 10] and (frame["method"] == "rl").all() and (frame["seed"] == 0).all()
    assert (frame["responses"] == 4).all()  # 2 problems x 2 samples
    # Identical snapshots, one seed: identical rows.
    assert frame.drop(columns="rollout").nunique().max() == 1
    for col in ("pivotal_per_response", "reflective_per_response", "response_length", "repetition", "accuracy",
                "pivotal_operators_per_response", "mean_entropy"):
        assert col in frame
    assert main([*args[:2], str(tmp_path / "missing"), *args[3:]]) == 2  # a missing snapshot directory: one-line error


def test_report_has_an_exploration_section(tmp_path):
    from pipeline.report.report import build_report

    tables = []
    for name in ("rare", "summary"):
        p = tmp_path / f"exploration_{name}.md"
        p.write_text(f"### {name} title\n\n| a |\n|---:|\n| 1 |\n\nnote\n")
        tables.append(p)
    fig = tmp_path / "exploration_entropy.png"
    fig.write_bytes(b"png")
    for name in ("main", "comparisons", "crossing"):
        (tmp_path / f"{name}.md").write_text("| x |\n|---|\n| 1 |\n")
    text = build_report(tables=[tmp_path / "main.md"], comparisons=tmp_path / "comparisons.md",
                        crossing=tmp_path / "crossing.md", figures=[], paper_context=[], out=tmp_path / "REPORT.md",
                        cfg={"methods": ["grpo"], "seeds": [0], "suites": {"s": {"k": 1, "n_samples": 1}}},
                        exploration_tables=tables, exploration_figures=[fig])
    section = text[text.index("## Exploration analysis"):]
    assert section.index("### summary title") < section.index("### rare title")  # summary first
    assert "](exploration_entropy.png)" in section


def dry_run(config: Path, workdir: Path) -> tuple[str, dict]:
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--snakefile", str(ROOT / "Snakefile"), "--directory", str(workdir),
         "--configfile", str(config)],
        capture_output=True, text=True, timeout=300,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    return out, dict(re.findall(r"^(\w+)\s+(\d+)$", out, flags=re.M))


def test_dry_run_lists_the_analysis_rules(tmp_path):
    import yaml

    micro = ROOT / "tests" / "data" / "micro_config.yaml"
    out, counts = dry_run(micro, tmp_path)
    assert counts["token_entropy"] == "1" and counts["exploration_analysis"] == "1"
    assert "results/tables/exploration_summary.md" in out and "results/figures/exploration_entropy.png" in out
    # micro config: every method, the first seed, the first suite; no snapshots kept, no checkpoint analysis
    assert "--model-name base grpo/seed0 grpo_entropy_adv/seed0" in out
    assert "results/samples/base/micro-hard.parquet" in out
    assert "checkpoint_analysis" not in counts
    # snapshots kept by one analysed method: the checkpoint analysis covers that run
    cfg = yaml.safe_load(micro.read_text())
    cfg["methods"]["grpo"] = {"training": {"snapshot_every": 1}}
    cfg["analysis"] = {"methods": ["grpo", "grpo_entropy_adv"]}
    (tmp_path / "snap.yaml").write_text(yaml.safe_dump(cfg))
    out, counts = dry_run(tmp_path / "snap.yaml", tmp_path)
    assert counts["checkpoint_analysis"] == "1" and "--run grpo/seed0 --problems" in out
    assert "results/tables/exploration_checkpoints.md" in out and "results/figures/exploration_checkpoints.png" in out
