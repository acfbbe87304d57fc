"""The claims stage: the verdict rule on constructed inputs, replicates as the unit of evidence,
and a row for every claim of the papers."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from pipeline.report.claims import (
    RunData,
    build_rows,
    claim_summary,
    finalize,
    hierarchical_bootstrap,
    holm,
    passk_row,
    per_run_row,
    roles_from_specs,
    verdict,
    _row,
)
from pipeline.rl.methods import resolve_method

SUITE = "s"


def counts(method: str, seeds: list[int], rates: dict[int, float], n_problems: int = 60, n: int = 16, rng_seed: int = 0):
    """Pass@k counts: each problem's correct count drawn at the replicate's success rate."""
    rng = np.random.default_rng(rng_seed)
    rows = []
    for seed in seeds:
        for p in range(n_problems):
            rows.append({"method": method, "seed": seed, "suite": SUITE, "k_max": n, "problem_id": str(p), "n": n,
                         "c": int(rng.binomial(n, rates[seed]))})
    return pd.DataFrame(rows)


def data_with(a_rates: dict[int, float], b_rates: dict[int, float], seeds=(0, 1, 2, 3, 4)) -> RunData:
    frame = pd.concat([counts("grpo_entropy_adv", list(seeds), a_rates, rng_seed=1), counts("grpo", list(seeds), b_rates, rng_seed=2)])
    return RunData(counts=frame, suites=[SUITE], n_boot=2000)


def pass1_verdict(data: RunData) -> str:
    row = passk_row(data, _row("C4", "p", "s", "st", "q", "c", +1, SUITE), "grpo_entropy_adv", "grpo", SUITE, 1)
    return verdict(row["effect"], +1, row["p_value"])


def test_a_planted_effect_holds_no_effect_is_not_shown_a_reversed_one_is_contradicted():
    seeds = range(5)
    assert pass1_verdict(data_with({s: 0.6 for s in seeds}, {s: 0.3 for s in seeds})) == "holds"
    assert pass1_verdict(data_with({s: 0.4 for s in seeds}, {s: 0.4 for s in seeds})) == "not shown"
    assert pass1_verdict(data_with({s: 0.3 for s in seeds}, {s: 0.6 for s in seeds})) == "contradicted"


def test_an_effect_that_flips_between_replicates_is_not_evidence():
    """Each replicate alone shows a clear difference over 60 problems, but its sign depends
    on the replicate (as it may on the machine): the verdict rests on the replicates."""
    a = {0: 0.7, 1: 0.2, 2: 0.7, 3: 0.2, 4: 0.7}
    b = {0: 0.2, 1: 0.7, 2: 0.2, 3: 0.7, 4: 0.2}
    data = data_with(a, b)
    single = data_with({0: 0.7}, {0: 0.2}, seeds=(0,))
    assert pass1_verdict(single) == "holds"  # one replicate: problem sampling alone decides
    assert pass1_verdict(data) == "not shown"


def test_per_run_quantities_are_tested_over_replicates():
    row = per_run_row(_row("C6", "p", "s", "st", "q", "c", -1), {s: 0.10 + 0.001 * s for s in range(5)},
                      {s: 0.30 + 0.001 * s for s in range(5)})
    assert row["replicates"] == 5 and row["effect"] == pytest.approx(-0.2)
    assert verdict(row["effect"], -1, row["p_value"]) == "holds"
    noisy = per_run_row(_row("C6", "p", "s", "st", "q", "c", -1), {0: 0.1, 1: 0.5}, {0: 0.3, 1: 0.3})
    assert verdict(noisy["effect"], -1, noisy["p_value"]) == "not shown"


def test_holm_adjustment_by_hand():
    assert holm([0.01, 0.04, 0.03, math.nan]) == pytest.approx([0.03, 0.06, 0.06, math.nan], nan_ok=True)


def test_hierarchical_bootstrap_of_a_constant_difference():
    effect, lo, hi, p = hierarchical_bootstrap(np.full((3, 10), 0.5), 500, 0)
    assert (effect, lo, hi, p) == (0.5, 0.5, 0.5, 0.0)


def _full_run() -> RunData:
    names = ["grpo", "grpo_entropy_adv", "ppo", "ppo_entropy_adv", "grpo_entropy_reg", "grpo_no_clip_higher",
             "grpo_aer", "grpo_clip_cov", "grpo_kl_cov"]
    seeds = [0, 1]
    frame = pd.concat([counts("base", [-1], {-1: 0.3})] + [counts(m, seeds, {0: 0.4, 1: 0.45}, rng_seed=i)
                                                           for i, m in enumerate(names)])
    metrics = {}
    for m in names:
        for s in seeds:
            n = 10
            metrics[m, s] = pd.DataFrame({
                "update": range(n), "rollout": [u // 2 for u in range(n)], "entropy": np.linspace(0.2, 0.1, n),
                "rollout_entropy": np.linspace(0.2, 0.1, n), "response_length": np.linspace(40, 45, n),
                "shaping_ratio": np.linspace(0.1, 0.05, n) if "entropy_adv" in m else [None] * n,
                **({"aer_target": [0.16] * n} if m == "grpo_aer" else {}),
            })
    specs = {m: resolve_method(m, {}) for m in names}
    exploration = pd.DataFrame({"model": ["base", "grpo"], "pivotal_diff": [0.4, 0.5], "pivotal_p": [1e-9, 1e-9],
                                "reflective_diff": [-0.1, -0.1], "reflective_p": [1e-4, 1e-4],
                                "rare_diff": [math.nan, 0.07], "rare_p": [math.nan, 1e-6]})
    return RunData(counts=frame, metrics=metrics, roles=roles_from_specs(specs), exploration=exploration, suites=[SUITE], n_boot=300)


def test_every_claim_has_a_row_and_untestable_ones_say_so():
    table = finalize(build_rows(_full_run(), "test"))
    assert {f"C{i}" for i in range(1, 16)} == set(table["claim"])
    summary = claim_summary(table).set_index("claim")
    # the default methods have no AER ablations and no large fixed bonus
    assert summary.loc["C13", "verdict"] == "not tested"
    assert set(table.loc[table["claim"] == "C13", "verdict"]) == {"not tested"}
    assert set(table["verdict"]) <= {"holds", "not shown", "contradicted", "not tested"}
    # a planted exploration effect of the analysis stage holds; the toy's reversed one is contradicted
    c8 = table[table["claim"] == "C8"].set_index(["quantity", "comparison"])
    assert c8.loc[("mean entropy, pivotal tokens vs other tokens (nats)", "grpo"), "verdict"] == "holds"
    assert c8.loc[("mean entropy, reflective segments vs other segments (nats)", "grpo"), "verdict"] == "contradicted"


def test_ablations_and_a_large_beta_are_recognised_from_their_parameters():
    specs = {
        "grpo_aer": resolve_method("grpo_aer", {}),
        "no_alloc": resolve_method("no_alloc", {"preset": "grpo_aer", "regularizer": {"allocation": "none"}}),
        "fixed_t": resolve_method("fixed_t", {"preset": "grpo_aer", "regularizer": {"target": 0.1}}),
        "fixed_c": resolve_method("fixed_c", {"preset": "grpo_aer", "regularizer": {"adapt": False}}),
        "beta01": resolve_method("beta01", {"preset": "grpo_entropy_reg", "regularizer": {"coef": 0.01}}),
    }
    assert roles_from_specs(specs) == {"grpo_aer": "grpo_aer", "aer_no_allocation": "no_alloc", "aer_fixed_target": "fixed_t",
                                       "aer_fixed_coef": "fixed_c", "entropy_reg_large": "beta01"}


def test_without_exploration_analysis_c8_is_listed_as_not_tested_and_markdown_cells_escape_pipes():
    from pipeline.report.claims import to_markdown

    data = _full_run()
    data.exploration = None
    table = finalize(build_rows(data, "test"))
    assert {f"C{i}" for i in range(1, 16)} == set(table["claim"])
    assert set(table.loc[table["claim"] == "C8", "verdict"]) == {"not tested"}
    md = to_markdown(table, "test")
    c5 = next(line for line in md.splitlines() if line.startswith("| C5 | Cheng"))
    assert "psi/\\|A\\|" in c5 and c5.count(" | ") == 5  # six cells, the pipes of |A| escaped


def test_aer_is_checked_replicate_by_replicate_against_its_target_and_its_own_base_model():
    """Replicate 0 holds its entropy within 20% of H* and beats its base model; replicate 1
    strays (max deviation 0.5) and falls below its own base model's Pass@1: each is reported,
    however the averages look."""
    from pipeline.report.claims import aer_replicates, aer_replicates_markdown

    frame = pd.concat([counts("base", [0, 1], {0: 0.30, 1: 0.50}), counts("grpo_aer", [0, 1], {0: 0.45, 1: 0.35}, rng_seed=3)])
    n = 10
    ok = [0.16, 0.15, 0.14, 0.14, 0.13, 0.13, 0.12, 0.13, 0.12, 0.13]   # second half within 0.12-0.13 of H* = 0.128
    stray = ok[:5] + [0.13, 0.15, 0.19, 0.17, 0.064]                  # |0.064 - 0.128| / 0.128 = 0.5
    metrics = {("grpo_aer", s): pd.DataFrame({"update": range(n), "rollout": range(n), "rollout_entropy": h,
                                              "aer_target": [None] + [0.128] * (n - 1)})
               for s, h in ((0, ok), (1, stray))}
    data = RunData(counts=frame, metrics=metrics, roles={"grpo_aer": "grpo_aer"}, suites=[SUITE])
    table = aer_replicates(data).set_index("seed")
    assert table.loc[0, "within_tolerance"] and not table.loc[1, "within_tolerance"]
    assert table.loc[1, "max_deviation"] == pytest.approx(0.5)
    assert not table.loc[0, "below_base"] and table.loc[1, "below_base"]
    assert table.loc[1, "base_pass1"] == pytest.approx(100 * data.passk("base", SUITE, 1).loc[1].mean())
    text = aer_replicates_markdown(aer_replicates(data))
    assert table.loc[1, "delta_hi"] < 0 and table.loc[1, "significantly_below"]  # 15 points on 60 problems
    assert table.loc[0, "delta_lo"] > 0 and not table.loc[0, "significantly_below"]
    assert ("grpo_aer: entropy within tolerance on 1 of 2 replicates; Pass@1 below the base model's on replicates 1, "
            "significantly (95% CI over problems below 0) on replicates 1.") in text
    # a point estimate just below the base model on a few problems is reported, as noise
    close = pd.concat([counts("base", [0], {0: 0.30}, n_problems=8), counts("grpo_aer", [0], {0: 0.29}, n_problems=8, rng_seed=3)])
    noisy = aer_replicates(RunData(counts=close, metrics=metrics, roles={"grpo_aer": "grpo_aer"}, suites=[SUITE])).iloc[0]
    assert noisy["delta_lo"] < 0 < noisy["delta_hi"] and not noisy["significantly_below"]
    # one shared base model (no replicated base models): every seed against it; no AER run: nothing
    shared = RunData(counts=pd.concat([counts("base", [-1], {-1: 0.9}), frame[frame["method"] == "grpo_aer"]]),
                     metrics=metrics, roles={"grpo_aer": "grpo_aer"}, suites=[SUITE])
    assert aer_replicates(shared)["below_base"].all()
    assert aer_replicates_markdown(aer_replicates(RunData(counts=frame, suites=[SUITE]))) == ""
    # every run with a target is listed, grpo_aer first; runs without one (GRPO) are not
    variant = {("aaa_aer_variant", 0): metrics["grpo_aer", 0],
               ("grpo", 0): metrics["grpo_aer", 0].drop(columns="aer_target")}
    both = RunData(counts=pd.concat([frame, counts("aaa_aer_variant", [0], {0: 0.2}), counts("grpo", [0], {0: 0.5})]),
                   metrics={**metrics, **variant}, roles={"grpo_aer": "grpo_aer", "grpo": "grpo"}, suites=[SUITE])
    listed = aer_replicates(both)
    assert list(dict.fromkeys(listed["method"])) == ["grpo_aer", "aaa_aer_variant"]
    assert bool(listed.set_index("method").loc["aaa_aer_variant", "below_base"])
    assert listed.set_index("method").loc["aaa_aer_variant", "grpo_pass1"] == pytest.approx(
        100 * both.passk("grpo", SUITE, 1).loc[0].mean())
    assert math.isnan(table.loc[0, "grpo_pass1"])  # no GRPO run in that config


def test_two_claims_tables_are_compared_row_by_row(tmp_path):
    """scripts/compare_claims.py: the same verdict, a changed verdict, a sign flip, and rows
    only one side has are each reported."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "scripts" / "compare_claims.py"
    spec = importlib.util.spec_from_file_location("compare_claims", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    def table(rows):
        return pd.DataFrame(rows, columns=["claim", "comparison", "suite", "quantity", "effect", "verdict"])

    old = table([["C1", "grpo - base", "a", "Pass@1", 4.0, "holds"], ["C3", "x - y", "a", "Pass@K", 1.0, "not shown"],
                 ["C6", "n - g", None, "H", 0.1, "not shown"], ["C9", "l", "", "len", 1.0, "not shown"]])
    new = table([["C1", "grpo - base", "a", "Pass@1", 3.5, "holds"], ["C3", "x - y", "a", "Pass@K", -0.5, "not shown"],
                 ["C6", "n - g", None, "H", 0.3, "holds"], ["C12", "z", "a", "Pass@K", 1.0, "not shown"]])
    old.to_csv(tmp_path / "old.csv", index=False)
    new.to_csv(tmp_path / "new.csv", index=False)
    assert module.main([str(tmp_path / "old.csv"), str(tmp_path / "new.csv"), "--out", str(tmp_path / "c.md")]) == 0
    text = (tmp_path / "c.md").read_text()
    assert text.startswith("Rows compared (tested in both): 3; same verdict: 2; effect sign flips: 1.")
    assert "| C6 | n - g |  | H | 0.1 / 0.3 | not shown / holds |" in text
    assert "| C3 | x - y | a | Pass@K | 1 / -0.5 | not shown / not shown |" in text
    assert "C1 |" not in text
    assert "Rows only in the old table: C9 / l /  / len." in text and "Rows only in the new table: C12 / z / a / Pass@K." in text


def test_claims_comparison_lists_the_replicates_single_run_numbers(tmp_path):
    """--replicates: per (seed, suite) Pass@1 of base, GRPO and AER in both runs, how far each moved."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "scripts" / "compare_claims.py"
    spec = importlib.util.spec_from_file_location("compare_claims", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    claims = pd.DataFrame([["C1", "grpo - base", "a", "Pass@1", 4.0, "holds"]],
                          columns=["claim", "comparison", "suite", "quantity", "effect", "verdict"])
    claims.to_csv(tmp_path / "claims.csv", index=False)
    cols = ["method", "seed", "suite", "pass1", "base_pass1", "grpo_pass1"]
    old = pd.DataFrame([["grpo_aer", 0, "a", 20.0, 10.0, 25.0], ["grpo_aer", 1, "a", 30.0, 12.0, 31.0],
                        ["grpo_aer_fixed_coef", 0, "a", 1.0, 10.0, 25.0]], columns=cols)
    new = pd.DataFrame([["grpo_aer", 0, "a", 22.0, 10.0, 24.0], ["grpo_aer", 1, "a", 27.0, 12.0, 31.0]], columns=cols)
    old.to_csv(tmp_path / "old.csv", index=False)
    new.to_csv(tmp_path / "new.csv", index=False)
    args = [str(tmp_path / "claims.csv")] * 2 + ["--replicates", str(tmp_path / "old.csv"), str(tmp_path / "new.csv"),
                                                 "--out", str(tmp_path / "c.md")]
    assert module.main(args) == 0
    text = (tmp_path / "c.md").read_text()
    assert "Single-run Pass@1 (%) per replicate world, old / new (2 pairs):" in text
    assert "| 0 | a | 10.0 / 10.0 | 25.0 / 24.0 | 20.0 / 22.0 |" in text
    assert "- base: moved by 0.00 pp on average, at most 0.00 pp; identical in 2 of 2." in text
    assert "- grpo_aer: moved by 2.50 pp on average, at most 3.00 pp; identical in 0 of 2." in text
