"""Figures stage (pipeline.report.figures) on constructed Pass@k and metrics files."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.image as mpimg  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from pipeline.cli import main as cli_main  # noqa: E402
from pipeline.errors import PipelineError  # noqa: E402
from pipeline.report import figures  # noqa: E402

METHODS = ["grpo", "grpo_entropy_adv", "grpo_aer"]
SUITES = {"toy-aime": 256, "toy-math500": 16}


def passk_obj(method: str, seed, suite: str, p1: float, slope: float) -> dict:
    k_max = SUITES[suite]
    ks = [2**i for i in range(int(np.log2(k_max)) + 1)]
    pass_at = {str(k): float(min(1.0, p1 + slope * np.log2(k))) for k in ks}
    return {
        "model": "base" if seed is None else f"{method}/seed{seed}",
        "method": method,
        "seed": seed,
        "suite": suite,
        "k_max": k_max,
        "n_samples": k_max,
        "n_problems": 30,
        "ks": ks,
        "pass_at_k": pass_at,
        "pass_at_k_ci": {},
        "pass1": pass_at["1"],
    }


def metrics_lines(method: str, seed: int, n: int = 120) -> list[dict]:
    rng = np.random.default_rng(seed + 10 * len(method))
    rows = []
    h0 = 1.2
    for u in range(n):
        row = {
            "update": u,
            "rollout": u // 16,
            "reward": float(-0.6 + 0.8 * (1 - np.exp(-u / 40)) + 0.05 * rng.standard_normal()),
            "response_length": float(40 + 10 * np.sin(u / 20) + rng.standard_normal()),
            "entropy": float(h0 * np.exp(-u / (60 if method == "grpo" else 300)) + 0.02 * rng.standard_normal()),
            "approx_kl": None,
        }
        if method == "grpo_entropy_adv":
            row["shaping_ratio"] = float(0.3 * np.exp(-u / 50))
        if method == "grpo_aer":
            row["aer_target"] = 0.6 * h0
            row["aer_alpha"] = float(min(1e-2, 1e-4 * u))
            row["aer_h0"] = h0
        rows.append(row)
    return rows


def write_inputs(tmp_path: Path, with_metrics: bool = True):
    passk_paths = []
    for suite in SUITES:
        for method, seeds, p1, slope in (
            ("base", [None], 0.05, 0.09),
            ("grpo", [1, 2, 3], 0.25, 0.05),
            ("grpo_entropy_adv", [1, 2], 0.24, 0.07),
            ("grpo_aer", [1], 0.23, 0.065),
        ):
            for seed in seeds:
                obj = passk_obj(method, seed, suite, p1 + 0.01 * (seed or 0), slope)
                path = tmp_path / "scores" / f"{method}_{seed}_{suite}.json"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps(obj))
                passk_paths.append(path)
    metric_paths, runs = [], []
    if with_metrics:
        for method, seeds in (("grpo", [1, 2, 3]), ("grpo_entropy_adv", [1, 2]), ("grpo_aer", [1])):
            for seed in seeds:
                path = tmp_path / "metrics" / f"{method}_seed{seed}.jsonl"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text("".join(json.dumps(r) + "\n" for r in metrics_lines(method, seed)))
                metric_paths.append(path)
                runs.append(f"{method}/seed{seed}")
    return passk_paths, metric_paths, runs


def assert_png(path: Path, min_bytes: int = 10_000) -> np.ndarray:
    assert path.exists(), path
    assert path.stat().st_size > min_bytes, (path, path.stat().st_size)
    image = mpimg.imread(path)
    assert image.ndim == 3 and image.shape[0] > 300 and image.shape[1] > 400
    assert float(np.std(image[..., :3])) > 0.01  # not a blank canvas
    return image


def test_figures_stage_writes_legible_pngs(tmp_path):
    passk_paths, metric_paths, runs = write_inputs(tmp_path)
    out = tmp_path / "figs"
    argv = ["figures", "--passk", *map(str, passk_paths), "--metrics", *map(str, metric_paths),
            "--metrics-runs", *runs, "--methods", *METHODS, "--out-dir", str(out),
            "--entropy-methods", "grpo", "grpo_aer"]
    assert cli_main(argv) == 0
    for suite in SUITES:
        assert_png(out / f"passk_{suite}.png")
    dynamics = assert_png(out / "training_dynamics.png")
    assert dynamics.shape[1] >= 1000  # ~ (10, 7) inches at 120 dpi
    assert_png(out / "entropy_control.png")
    assert not list(out.glob("*.tmp"))


def test_figures_without_metrics_still_draw_with_no_data_titles(tmp_path):
    passk_paths, _, _ = write_inputs(tmp_path, with_metrics=False)
    out = tmp_path / "figs"
    argv = ["figures", "--passk", *map(str, passk_paths), "--methods", *METHODS, "--out-dir", str(out)]
    assert cli_main(argv) == 0
    assert_png(out / "passk_toy-aime.png")
    assert_png(out / "training_dynamics.png", min_bytes=5_000)
    assert_png(out / "entropy_control.png", min_bytes=5_000)


def test_panel_without_data_says_so(tmp_path, monkeypatch):
    _, metric_paths, runs = write_inputs(tmp_path)
    metrics = {figures.parse_run(r): figures.read_metrics_jsonl(p) for p, r in zip(metric_paths, runs)}
    metrics = {k: v.drop(columns=[c for c in ("shaping_ratio",) if c in v.columns]) for k, v in metrics.items()}
    titles = []
    real_save = figures._save

    def spy(fig, path):
        titles.extend(ax.get_title() for ax in fig.axes)
        real_save(fig, path)

    monkeypatch.setattr(figures, "_save", spy)
    figures.plot_training_dynamics(metrics, METHODS, figures.method_colours(METHODS), tmp_path / "td.png")
    assert any("no data" in t and "shaping ratio" in t for t in titles), titles
    assert "Reward" in titles


def test_seed_band_mean_min_max():
    import pandas as pd

    runs = {
        1: pd.DataFrame({"update": [0, 1, 2], "reward": [0.0, 1.0, 2.0]}),
        2: pd.DataFrame({"update": [0, 1, 2], "reward": [2.0, 3.0, np.nan]}),
    }
    band = figures.seed_band(runs, "reward", window=1)
    np.testing.assert_allclose(band["mean"], [1.0, 2.0, 2.0])
    np.testing.assert_allclose(band["min"], [0.0, 1.0, 2.0])
    np.testing.assert_allclose(band["max"], [2.0, 3.0, 2.0])
    assert figures.seed_band(runs, "entropy", window=1) is None


def test_method_colours_fixed_by_order():
    a = figures.method_colours(["grpo", "ppo", "grpo_aer"])
    b = figures.method_colours(["grpo", "ppo", "grpo_aer", "kl_cov"])
    assert a["base"] == (0.0, 0.0, 0.0)
    assert all(a[m] == b[m] for m in a)
    assert len({a["grpo"], a["ppo"], a["grpo_aer"]}) == 3


def test_bad_inputs_are_named(tmp_path, capsys):
    passk_paths, metric_paths, runs = write_inputs(tmp_path)
    out = str(tmp_path / "figs")
    assert cli_main(["figures", "--passk", *map(str, passk_paths), "--metrics", str(metric_paths[0]),
                     "--metrics-runs", *runs[:2], "--methods", *METHODS, "--out-dir", out]) == 2
    assert "--metrics-runs" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"update": 0, "reward": 1.0}\n{"reward": oops}\n')
    with pytest.raises(PipelineError, match="bad.jsonl, line 2"):
        figures.read_metrics_jsonl(bad)
    no_update = tmp_path / "no_update.jsonl"
    no_update.write_text('{"reward": 1.0}\n')
    with pytest.raises(PipelineError, match="no_update.jsonl, line 1: missing key 'update'"):
        figures.read_metrics_jsonl(no_update)
    assert cli_main(["figures", "--passk", *map(str, passk_paths), "--methods", *METHODS, "ghost",
                     "--out-dir", out]) == 2
    assert "ghost" in capsys.readouterr().err
