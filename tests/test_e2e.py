"""End-to-end: the real Snakefile on the micro config, in a temporary directory.

Slow (about a minute on 2 cores); marked ``e2e`` so a quick local run can skip it with
``-m "not e2e"``. CI runs the whole suite, these included.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
MICRO = ROOT / "tests" / "data" / "micro_config.yaml"

pytestmark = pytest.mark.e2e


def snakemake(workdir: Path, *args: str, timeout: int = 600, configfile: Path = MICRO) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "--directory", str(workdir),
        "--configfile", str(configfile), "--cores", "2", *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def run_config(cfg: dict, tmp_path: Path, name: str) -> Path:
    """The whole pipeline on a micro-config variant; its results directory."""
    import yaml

    config = tmp_path / f"{name}.yaml"
    config.write_text(yaml.safe_dump(cfg))
    proc = snakemake(tmp_path / "w", configfile=config, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return tmp_path / "w" / "results"


@pytest.fixture(scope="module")
def micro_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("micro")
    proc = snakemake(workdir)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return workdir


def test_outputs_exist_and_are_consistent(micro_run):
    results = micro_run / "results"
    table = (results / "tables" / "main.md").read_text()
    for row in ("base", "grpo", "grpo_entropy_adv"):
        assert f"| {row} |" in table
    for suite, k in (("micro-hard", 8), ("micro-mixed", 4)):
        assert f"{suite} Pass@{k}" in table
        assert (results / "figures" / f"passk_{suite}.png").stat().st_size > 10_000
        for model in ("base", "grpo/seed0", "grpo_entropy_adv/seed0"):
            samples = pd.read_parquet(results / "samples" / model / f"{suite}.parquet")
            assert set(samples.columns) >= {"problem_id", "sample_index", "text", "num_tokens", "finish_reason"}
            passk = json.loads((results / "scores" / model / f"{suite}.passk.json").read_text())
            assert passk["k_max"] == k and passk["ks"][-1] == k
            # Pass@k is non-decreasing in k
            values = [passk["pass_at_k"][str(x)] for x in passk["ks"]]
            assert values == sorted(values)
    metrics = (results / "train" / "grpo_entropy_adv" / "seed0" / "metrics.jsonl").read_text().splitlines()
    assert len(metrics) == 4 and "shaping_ratio" in json.loads(metrics[0])
    assert (results / "figures" / "training_dynamics.png").exists()
    assert (results / "models" / "grpo" / "seed0" / "config.json").exists()
    # every rule left a log and a benchmark
    assert (results / "logs" / "build_base_model.log").exists()
    assert (results / "benchmarks" / "rules" / "train" / "grpo" / "seed0.tsv").exists()


def test_second_run_has_nothing_to_do(micro_run):
    proc = snakemake(micro_run, "-n")
    assert proc.returncode == 0
    assert "Nothing to be done" in proc.stdout + proc.stderr


def test_dry_run_explains_reruns_after_a_method_change(micro_run, tmp_path):
    # Changing one method's hyperparameter reruns that method's jobs and the reports only.
    import yaml

    cfg = yaml.safe_load(MICRO.read_text())
    cfg["methods"]["grpo_entropy_adv"] = {"shaping": {"alpha": 0.2}}
    changed = tmp_path / "changed.yaml"
    changed.write_text(yaml.safe_dump(cfg))
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "--directory", str(micro_run),
         "--configfile", str(changed), "-n", "--quiet", "rules"],
        capture_output=True, text=True, timeout=300,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    counts = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            counts[parts[0]] = int(parts[1])
    assert counts.get("train") == 1
    assert counts.get("sample") == 1 and counts.get("score") == 2  # one sampling job for the model's suites
    assert "build_base_model" not in counts and "prepare_data" not in counts


def test_report_outputs(micro_run):
    results = micro_run / "results"
    text = (results / "REPORT.md").read_text()
    for heading in ("## Run configuration", "## Main results", "## Paired bootstrap", "## Where the base model catches up",
                    "## Figures"):
        assert heading in text
    for link in ("figures/passk_micro-hard.png", "figures/passk_micro-mixed.png", "figures/training_dynamics.png",
                 "figures/entropy_control.png"):
        assert f"]({link})" in text and (results / link).exists()
    assert "| Δ vs grpo |" in (results / "tables" / "main.md").read_text()
    comp = pd.read_csv(results / "tables" / "comparisons.csv")
    assert set(comp["suite"]) == {"micro-hard", "micro-mixed"} and set(comp["metric"]) == {"pass@K", "pass@1"}
    assert (comp["method"] == "grpo_entropy_adv").all() and (comp["baseline"] == "grpo").all()
    assert ((comp["ci_lo"] <= comp["diff_pp"]) & (comp["diff_pp"] <= comp["ci_hi"])).all()
    assert ((comp["p_value"] >= 0) & (comp["p_value"] <= 1)).all()
    cross = pd.read_csv(results / "tables" / "crossing.csv", dtype={"k_star": str})
    assert len(cross) == 2 * 2
    # Pass@k and maj@k on each suite's k grid, the Pass@k equal to the score files'
    curves = pd.read_csv(results / "tables" / "passk_curves.csv")
    hard = json.loads((results / "scores" / "base" / "micro-hard.passk.json").read_text())
    at = curves[(curves["method"] == "base") & (curves["suite"] == "micro-hard")].set_index("k")
    assert sorted(at.index) == hard["ks"]
    assert at["passk_pct"].to_dict() == pytest.approx({int(k): 100 * v for k, v in hard["pass_at_k"].items()}, abs=1e-4)
    assert at["majk_pct"].to_dict() == pytest.approx({int(k): 100 * v for k, v in hard["maj_at_k"].items()}, abs=1e-4)
    assert "## Pass@k and maj@k on the k grid" in text
    assert (results / "logs" / "report_md.log").exists() and (results / "benchmarks" / "rules" / "crossing.tsv").exists()


def test_html_report(micro_run):
    proc = snakemake(micro_run, "--report", str(micro_run / "report.html"))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    html = (micro_run / "report.html").read_text()
    for name in ("passk_micro-hard.png", "training_dynamics.png", "main.csv", "comparisons.csv", "crossing.csv",
                 "REPORT.md"):
        assert name in html


def test_replicate_worlds_each_seed_its_own_base_model(tmp_path):
    """base_model.replicates: a base model per seed (its own SFT seed), training from it, the
    base row of the tables over the replicates, the claims table judging across them, and
    AER checked replicate by replicate against its own base model."""
    import yaml

    cfg = yaml.safe_load(MICRO.read_text())
    cfg["seeds"] = [0, 1]
    cfg["methods"] = {"grpo": {}, "grpo_aer": {}}
    cfg["base_model"]["replicates"] = True
    results = run_config(cfg, tmp_path, "replicates")
    a, b = (results / "models" / "base" / f"seed{s}" / "model.safetensors" for s in (0, 1))
    assert a.read_bytes() != b.read_bytes()  # two SFT seeds, two worlds
    sft = [json.loads((results / "base_model" / f"seed{s}" / "sft_metrics.json").read_text()) for s in (0, 1)]
    assert sft[0] != sft[1]
    table = (results / "tables" / "main.md").read_text()
    assert "| base | 2 |" in table  # the base row is a mean over the replicates' base models
    claims = pd.read_csv(results / "tables" / "claims.csv")
    c1 = claims[(claims["claim"] == "C1") & (claims["comparison"] == "grpo - base")]
    assert len(c1) == 2 and set(c1["replicates"]) == {2}
    assert "## Which claims of the papers hold here" in (results / "REPORT.md").read_text()
    aer = pd.read_csv(results / "tables" / "aer_replicates.csv")
    assert set(aer["method"]) == {"grpo_aer"} and set(aer["seed"]) == {0, 1}
    for row in aer.itertuples():  # each seed against its own replicate's base model
        base = json.loads((results / "scores" / "base" / f"seed{row.seed}" / f"{row.suite}.passk.json").read_text())
        assert row.base_pass1 == pytest.approx(100 * base["pass_at_k"]["1"], abs=1e-6)
    report = (results / "REPORT.md").read_text()
    assert "## AER, replicate by replicate" in report
    # where the numbers were computed: both SFTs and every samples file, listed in the report
    import torch

    from pipeline import machine

    kernels, fingerprint = torch.backends.cpu.get_cpu_capability(), machine.cpu_fingerprint()
    assert {(s["machine"]["cpu_kernels"], s["machine"]["cpu_fingerprint"]) for s in sft} == {(kernels, fingerprint)}
    section = report[report.index("## Where these numbers were computed"):]
    assert f"CPU kernels {kernels} (fingerprint {fingerprint})" in section and "| base model (SFT) |" in section and "| evaluation sampling |" in section
    assert "Mixed machines" not in section and "written before machines were recorded" not in section


def test_eval_models_without_training(micro_run, tmp_path):
    """eval_models and no methods: sample -> score -> tables, crossing points and REPORT.md for
    given model directories. The model named "base" is the reference, sampled with the same seed
    as the run that built it: its Pass@k is the micro run's own, bit for bit."""
    import yaml

    cfg = yaml.safe_load(MICRO.read_text())
    del cfg["methods"]
    models = micro_run / "results" / "models"
    cfg["eval_models"] = {"base": {"path": str(models / "base")}, "rl": {"path": str(models / "grpo" / "seed0")}}
    cfg["allow_absolute_paths"] = True
    cfg["analysis"] = {"enabled": False}
    results = run_config(cfg, tmp_path, "eval")
    assert not (results / "train").exists() and not (results / "models").exists()  # nothing trained or built
    table = (results / "tables" / "main.md").read_text()
    assert "| base | 1 |" in table and "| rl | 1 |" in table
    crossing = pd.read_csv(results / "tables" / "crossing.csv")
    assert set(crossing["method"]) == {"rl"}
    assert set(pd.read_csv(results / "tables" / "passk_curves.csv")["method"]) == {"base", "rl"}
    for suite in ("micro-hard", "micro-mixed"):
        ours = json.loads((results / "scores" / "base" / f"{suite}.passk.json").read_text())
        theirs = json.loads((micro_run / "results" / "scores" / "base" / f"{suite}.passk.json").read_text())
        assert ours["pass_at_k"] == theirs["pass_at_k"]
        rl = json.loads((results / "scores" / "eval" / "rl" / f"{suite}.passk.json").read_text())
        assert rl["method"] == "rl" and rl["seed"] is None and rl["maj_at_k"] is not None
    assert "REPORT.md" in os.listdir(results)


def test_own_data_in_the_toy_world(tmp_path):
    """A toy-world suite from your own file (benchmark: custom): loaded, normalised and named like
    a hub one, sampled and scored by the whole pipeline; an edit of the file reruns the data stage."""
    import yaml

    cfg = yaml.safe_load(MICRO.read_text())
    rows = [{"q": "What is 12+7*3?", "a": "33", "uid": "x1"}, {"q": "What is (8-3)*4?", "a": "20", "uid": "x2"},
            {"q": "What is 9*9-1?", "a": "80", "uid": "x3"}]
    workdir = tmp_path / "w"
    workdir.mkdir()
    data = workdir / "mine.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg["suites"]["mine"] = {"benchmark": "custom", "data_files": "mine.jsonl", "k": 4, "n_samples": 4,
                             "fields": {"problem": "q", "answer": "a", "id": "uid"}}
    cfg["methods"] = {"grpo": {}}
    cfg["analysis"] = {"enabled": False}
    results = run_config(cfg, tmp_path, "own-data")
    suite = pd.read_parquet(results / "data" / "suites" / "mine.parquet")
    assert list(suite["id"]) == ["mine-x1", "mine-x2", "mine-x3"] and list(suite["answer"]) == ["33", "20", "80"]
    train = pd.read_parquet(results / "data" / "train.parquet")
    assert not set(train["problem"]) & set(suite["problem"])
    score = json.loads((results / "scores" / "grpo" / "seed0" / "mine.passk.json").read_text())
    assert score["n_problems"] == 3 and "mine" in (results / "tables" / "main.md").read_text()
    data.write_text("".join(json.dumps(r) + "\n" for r in rows[:2]))  # the user edits their file
    proc = snakemake(workdir, "-n", configfile=tmp_path / "own-data.yaml")
    assert "rule prepare_data" in proc.stdout and "Updated input files: mine.jsonl" in proc.stdout, proc.stdout[-2000:]
