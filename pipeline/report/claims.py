"""Stage ``claims``: every claim of the two papers (and Cui et al.'s) tested on the run's outputs.

One row per claim and comparison: where the claim comes from, the measured quantity, the
comparison, the effect with its 95% CI, a p-value, the Holm-adjusted p across the table and
a **verdict computed by a stated rule**, never typed by hand:

* ``holds`` — the effect has the claimed sign and the Holm-adjusted p < alpha (0.05);
* ``contradicted`` — the effect has the opposite sign and the Holm-adjusted p < alpha;
* ``not shown`` — otherwise;
* ``not tested`` — the config lacks what the claim needs (e.g. no ablation methods).

**The replicate is the whole world.** Floating-point kernels differ between machines, so a
run's numbers (and a sign decided by problem sampling alone) can flip on another CPU. A
verdict therefore rests on the variation *between replicates* (seeds: with
``base_model.replicates``, each seed its own SFT and RL; otherwise the RL seed): the p of a
row is the larger of (a) a paired hierarchical bootstrap that resamples replicates and
problems together (for Pass@k) and (b) a t-test of the per-replicate effects (every row with
at least two replicates), so an effect must be consistent across replicates to count. A
quantity of a single run (entropy at the end of training, a trend) is tested over replicates
(t-test). With one replicate no row can reach a verdict other than ``not shown`` through (b).
The exploration claims (Cheng et al. Fig. 2-3) rest on tokens or sentences of the analysed
runs (Mann-Whitney tests of the analysis stage); their rows say so.

``replicates_needed``: replicates for 80% power to detect the measured effect with the
between-replicate spread measured (two-sided t approximation, alpha = 0.05): a power check
from the run's own variances.

Beside the table, the AER run of every replicate checked one by one (``aer_replicates``): how
far its rollout entropy strays from its target over the second half of training (the
controller's tolerance is 20%) and whether its Pass@1 on each suite falls below its own base
model's. A controller that holds on average can still fail on one world; this lists each.

Outputs ``claims.{md,csv}`` and ``aer_replicates.csv`` (its table also closes ``claims.md``).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.errors import PipelineError
from pipeline.eval.passk import pass_at_k
from pipeline.report.compare import sign_p_value
from pipeline.io import stable_seed, write_text

log = logging.getLogger(__name__)

ALPHA = 0.05
VERDICTS = ("holds", "not shown", "contradicted", "not tested")
COLUMNS = (
    "claim", "paper", "source", "statement", "quantity", "comparison", "suite", "effect", "ci_lo", "ci_hi",
    "p_value", "p_holm", "verdict", "replicates", "replicates_needed", "basis", "config",
)
RUN_RE = re.compile(r"^(?P<method>.+)/seed(?P<seed>\d+)$")
TAIL = 0.2  # "at the end of training": the last 20% of policy updates (first 20%: the start)


# --------------------------------------------------------------------------- statistics


def t_test(values: np.ndarray) -> tuple[float, float, float]:
    """Mean, 95% CI half-width and two-sided p of a one-sample t-test of ``values`` against 0
    (nan p with fewer than two values; p = 0 when every value is the same nonzero number)."""
    from scipy import stats

    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return math.nan, math.nan, math.nan
    mean = float(v.mean())
    if v.size < 2:
        return mean, math.nan, math.nan
    sd = float(v.std(ddof=1))
    if sd == 0:
        return mean, 0.0, (0.0 if mean != 0 else 1.0)
    se = sd / math.sqrt(v.size)
    t = mean / se
    return mean, float(stats.t.ppf(0.975, v.size - 1) * se), float(2 * stats.t.sf(abs(t), v.size - 1))


def replicates_needed(values: np.ndarray) -> float:
    """Replicates for 80% power at the measured effect and spread (normal approximation, + 1)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size < 2 or v.mean() == 0:
        return math.nan
    sd = v.std(ddof=1)
    if sd == 0:
        return float(v.size)
    z = 1.959964 + 0.841621
    return float(math.ceil((z * sd / abs(v.mean())) ** 2) + 1)


def hierarchical_bootstrap(diff: np.ndarray, n_boot: int, seed: int) -> tuple[float, float, float, float]:
    """``diff`` [replicates, problems]: observed mean, percentile 95% CI and two-sided p of the
    mean difference, resampling replicates and problems with replacement together."""
    rng = np.random.default_rng(seed)
    r, p = diff.shape
    observed = float(diff.mean())
    rows = rng.integers(0, r, size=(n_boot, r))
    cols = rng.integers(0, p, size=(n_boot, p))
    per_problem = diff[rows].mean(axis=1)  # [n_boot, problems]: the resampled replicates' mean
    boots = np.take_along_axis(per_problem, cols, axis=1).mean(axis=1)
    lo, hi = np.quantile(boots, [0.025, 0.975])
    return observed, float(lo), float(hi), sign_p_value(observed, boots)


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjustment (nan stays nan)."""
    idx = [i for i, p in enumerate(p_values) if isinstance(p, float) and math.isfinite(p)]
    order = sorted(idx, key=lambda i: p_values[i])
    out = [math.nan] * len(p_values)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(order) - rank) * p_values[i]))
        out[i] = running
    return out


def verdict(effect: float, direction: int, p_holm: float, alpha: float = ALPHA) -> str:
    """The stated rule (module docstring); ``direction`` +1 / -1 is the claimed sign."""
    if not (math.isfinite(effect) and math.isfinite(p_holm)):
        return "not shown"
    if p_holm < alpha and effect * direction > 0:
        return "holds"
    if p_holm < alpha and effect * direction < 0:
        return "contradicted"
    return "not shown"


# --------------------------------------------------------------------------- the run's data


@dataclass
class RunData:
    """What the claims read: Pass@k counts, training metrics, analysis tables, method roles."""

    counts: pd.DataFrame                      # method, seed, suite, k_max, problem_id, n, c
    metrics: dict[tuple[str, int], pd.DataFrame] = field(default_factory=dict)
    roles: dict[str, str] = field(default_factory=dict)   # role -> method name
    exploration: pd.DataFrame | None = None    # exploration_summary.csv
    checkpoints: dict[tuple[str, int], pd.DataFrame] = field(default_factory=dict)
    suites: list[str] = field(default_factory=list)
    n_boot: int = 2000
    seed: int = 0

    def seeds(self, method: str) -> list[int]:
        return sorted(set(self.counts.loc[self.counts["method"] == method, "seed"]))

    def passk(self, method: str, suite: str, k: int) -> pd.DataFrame:
        """[seed x problem] Pass@k of ``method`` on ``suite``."""
        sub = self.counts[(self.counts["method"] == method) & (self.counts["suite"] == suite)]
        if sub.empty:
            raise KeyError(method)
        table = {
            s: pd.Series(pass_at_k(g["n"].to_numpy(), g["c"].to_numpy(), k), index=g["problem_id"].to_numpy())
            for s, g in sub.groupby("seed", sort=True)
        }
        return pd.DataFrame(table).T.sort_index(axis=1)

    def k_max(self, suite: str) -> int:
        return int(self.counts.loc[self.counts["suite"] == suite, "k_max"].max())


def role_of(name: str, spec: dict) -> str | None:
    """The role a configured method plays in the claims (its preset, or an AER ablation /
    a large fixed entropy bonus recognised from its parameters)."""
    preset = spec.get("preset", name)
    reg = spec.get("regularizer", {})
    if preset == "grpo_aer" and name != "grpo_aer":
        if reg.get("allocation") == "none":
            return "aer_no_allocation"
        if reg.get("target") is not None:
            return "aer_fixed_target"
        if reg.get("adapt") is False:
            return "aer_fixed_coef"
        return None
    if preset == "grpo_entropy_reg" and reg.get("coef", 0) >= 1e-2:
        return "entropy_reg_large"
    return preset if name == preset else None


def roles_from_specs(specs: dict[str, dict]) -> dict[str, str]:
    roles: dict[str, str] = {}
    for name, spec in specs.items():
        role = role_of(name, spec)
        if role is not None and role not in roles:
            roles[role] = name
    return roles


# --------------------------------------------------------------------------- rows


def _row(claim, paper, source, statement, quantity, comparison, direction, suite="", config="", basis="") -> dict:
    return {"claim": claim, "paper": paper, "source": source, "statement": statement, "quantity": quantity,
            "comparison": comparison, "suite": suite, "direction": direction, "effect": math.nan, "ci_lo": math.nan,
            "ci_hi": math.nan, "p_value": math.nan, "replicates": 0, "replicates_needed": math.nan, "basis": basis,
            "config": config, "tested": False}


def passk_row(data: RunData, row: dict, method: str, baseline: str, suite: str, k: int, scale: float = 100.0) -> dict:
    """``method - baseline`` Pass@k on ``suite`` (pp), paired by replicate when both have seeds."""
    a, b = data.passk(method, suite, k), data.passk(baseline, suite, k)
    b = b.reindex(columns=a.columns)
    if len(b) == 1 and len(a) > 1:  # one base model beside several RL seeds: each seed against it
        b = pd.concat([b] * len(a)).set_axis(a.index)
    elif len(a) == 1 and len(b) > 1:
        a = pd.concat([a] * len(b)).set_axis(b.index)
    else:
        b = b.reindex(a.index)
    if b.isna().any().any():
        raise KeyError(f"{baseline} lacks replicates or problems of {method}")
    diff = (a.to_numpy() - b.to_numpy()) * scale
    effect, lo, hi, p_boot = hierarchical_bootstrap(diff, data.n_boot, stable_seed(data.seed, row["claim"], method, baseline, suite, k))
    per_rep = diff.mean(axis=1)
    _, _, p_t = t_test(per_rep)
    row.update(effect=effect, ci_lo=lo, ci_hi=hi, replicates=len(per_rep), tested=True,
               p_value=max(p_boot, p_t) if math.isfinite(p_t) else p_boot,
               replicates_needed=replicates_needed(per_rep),
               basis="hierarchical bootstrap over replicates and problems; t-test over replicates")
    return row


def per_run_row(row: dict, values: dict[int, float], others: dict[int, float] | None = None) -> dict:
    """A per-run quantity (minus ``others`` of the same replicate, if given), t-test over replicates."""
    seeds = sorted(values) if others is None else sorted(set(values) & set(others))
    v = np.array([values[s] - (others[s] if others is not None else 0.0) for s in seeds], dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return row
    mean, half, p = t_test(v)
    row.update(effect=mean, ci_lo=mean - half, ci_hi=mean + half, p_value=p, replicates=int(v.size), tested=True,
               replicates_needed=replicates_needed(v), basis="t-test over replicates (per run)")
    return row


def _tail_mean(frame: pd.DataFrame, column: str, start: bool = False) -> float:
    values = frame[column].astype(float).dropna()
    if values.empty:
        return math.nan
    n = max(1, int(round(TAIL * len(values))))
    return float(values.iloc[:n].mean() if start else values.iloc[-n:].mean())


def metric_per_seed(data: RunData, method: str, fn) -> dict[int, float]:
    return {seed: fn(frame) for (m, seed), frame in data.metrics.items() if m == method}


# --------------------------------------------------------------------------- the claims


def exploration_rows(data: RunData, config: str, add, need) -> None:
    """C8 (Cheng et al. Fig. 2-3), from the exploration analysis: one row per analysed model and
    quantity, or one ``not tested`` row per quantity without the analysis."""
    cheng = "Cheng et al. 2025"
    for column, what in (("pivotal", "pivotal tokens vs other tokens"), ("reflective", "reflective segments vs other segments"),
                         ("rare", "rare sentences vs other RL sentences")):
        if data.exploration is None:  # listed, not dropped: the config has no exploration analysis
            add(_row("C8", cheng, "Fig. 2-3", "high-entropy positions coincide with pivotal tokens, reflection and rare behaviour",
                     f"mean entropy, {what} (nats)", "analysed runs", +1, "", config), lambda r: need("exploration analysis"))
            continue
        for model in data.exploration["model"]:
            if column == "rare" and model == "base":
                continue
            row = _row("C8", cheng, "Fig. 2-3", "high-entropy positions coincide with pivotal tokens, reflection and rare behaviour",
                       f"mean entropy, {what} (nats)", model, +1, "", config,
                       basis="Mann-Whitney over tokens / segments / sentences of the analysed run")
            add(row, lambda r, model=model, column=column: exploration_row(data, r, model, column))


def build_rows(data: RunData, config: str) -> list[dict]:
    """One row per (claim, comparison, suite), in the order of the claims: Cheng et al. C1-C9,
    Zhang et al. C10-C14, Cui et al. C15. A claim the config cannot test is a row marked so."""
    R = data.roles
    rows: list[dict] = []

    def add(row, compute):
        try:
            compute(row)
        except KeyError as err:
            log.info("claim %s (%s): not tested (%s)", row["claim"], row["comparison"], err)
        rows.append(row)

    def need(*roles):
        missing = [r for r in roles if r not in R]
        if missing:
            raise KeyError(f"no {', '.join(missing)} method in the config")
        return [R[r] for r in roles]

    for paper_rows in (cheng_rows, zhang_rows, cui_rows):
        paper_rows(data, config, add, need)
    return rows


def cheng_rows(data: RunData, config: str, add, need) -> None:
    """Cheng et al. 2025 (the entropy advantage): C1-C9."""
    cheng = "Cheng et al. 2025"
    suites = data.suites
    # C1: RL raises Pass@1 over the base model on every suite
    for rl in ("grpo", "ppo"):
        for suite in suites:
            row = _row("C1", cheng, "Table 2", "RL (GRPO, PPO) raises Pass@1 over the base model on every suite",
                       "Pass@1 (pp)", f"{rl} - base", +1, suite, config)
            add(row, lambda r, rl=rl, suite=suite: passk_row(data, r, need(rl)[0], "base", suite, 1))
    # C2: the base model's Pass@K overtakes RL at large K; the entropy advantage moves K* right
    for rl in ("grpo", "ppo"):
        for suite in suites:
            row = _row("C2", cheng, "Fig. 1 / Table 2", "the base model's Pass@K overtakes RL at large K",
                       f"Pass@{data.k_max(suite)} (pp)", f"base - {rl}", +1, suite, config)
            add(row, lambda r, rl=rl, suite=suite: passk_row(data, r, "base", need(rl)[0], suite, data.k_max(suite)))
    for adv, base_rl in (("grpo_entropy_adv", "grpo"), ("ppo_entropy_adv", "ppo")):
        for suite in suites:
            row = _row("C2", cheng, "Fig. 1", "the entropy advantage moves the crossing point K* right",
                       "log2 K* (no crossing: log2 2K)", f"{adv} - {base_rl}", +1, suite, config)
            add(row, lambda r, adv=adv, base_rl=base_rl, suite=suite: per_run_row(
                r, crossing_per_seed(data, need(adv)[0], suite), crossing_per_seed(data, need(base_rl)[0], suite)))
    # C3 / C4: the entropy advantage raises Pass@K and Pass@1 over GRPO and PPO
    for claim, metric in (("C3", "K"), ("C4", "1")):
        for adv, base_rl in (("grpo_entropy_adv", "grpo"), ("ppo_entropy_adv", "ppo")):
            for suite in suites:
                k = data.k_max(suite) if metric == "K" else 1
                row = _row(claim, cheng, "Table 2", f"the entropy advantage raises Pass@{'K' if metric == 'K' else '1'}",
                           f"Pass@{k} (pp)", f"{adv} - {base_rl}", +1, suite, config)
                add(row, lambda r, adv=adv, base_rl=base_rl, suite=suite, k=k: passk_row(data, r, *need(adv, base_rl), suite, k))
    # C5: psi/|A| falls over training
    for adv in ("grpo_entropy_adv", "ppo_entropy_adv"):
        row = _row("C5", cheng, "Fig. 7", "psi/|A| of the entropy advantage falls over training (self-regulation)",
                   "shaping_ratio: last 20% - first 20% of updates", adv, -1, "", config)
        add(row, lambda r, adv=adv: per_run_row(r, metric_per_seed(
            data, need(adv)[0], lambda f: _tail_mean(f, "shaping_ratio") - _tail_mean(f, "shaping_ratio", start=True))))
    # C6: without clip-higher the entropy collapses (below GRPO); the entropy advantage ends below GRPO
    row = _row("C6", cheng, "Fig. 6", "without clip-higher the entropy collapses: it ends below GRPO's",
               "entropy, last 20% of updates (nats)", "grpo_no_clip_higher - grpo", -1, "", config)
    add(row, lambda r: per_run_row(r, *[metric_per_seed(data, m, lambda f: _tail_mean(f, "entropy"))
                                         for m in need("grpo_no_clip_higher", "grpo")]))
    row = _row("C6", cheng, "Fig. 6", "the entropy advantage's entropy ends below GRPO's (0.17 vs 0.34 nats at step 2000)",
               "entropy, last 20% of updates (nats)", "grpo_entropy_adv - grpo", -1, "", config)
    add(row, lambda r: per_run_row(r, *[metric_per_seed(data, m, lambda f: _tail_mean(f, "entropy"))
                                         for m in need("grpo_entropy_adv", "grpo")]))
    # C7: the entropy advantage beats fixed entropy regularization
    for suite in suites:
        for k in (data.k_max(suite), 1):
            row = _row("C7", cheng, "Table 3", "the entropy advantage beats a fixed entropy bonus",
                       f"Pass@{k} (pp)", "grpo_entropy_adv - grpo_entropy_reg", +1, suite, config)
            add(row, lambda r, suite=suite, k=k: passk_row(data, r, *need("grpo_entropy_adv", "grpo_entropy_reg"), suite, k))
    # C8: high-entropy tokens coincide with pivotal tokens, reflective actions and rare behaviour
    exploration_rows(data, config, add, need)
    # C9: the entropy advantage lengthens responses (over training, vs GRPO)
    row = _row("C9", cheng, "Fig. 8", "the entropy advantage lengthens responses over training, beyond GRPO",
               "response length, last 20% of updates (tokens)", "grpo_entropy_adv - grpo", +1, "", config)
    add(row, lambda r: per_run_row(r, *[metric_per_seed(data, m, lambda f: _tail_mean(f, "response_length"))
                                         for m in need("grpo_entropy_adv", "grpo")]))
    row = _row("C9", cheng, "Fig. 8", "the entropy advantage raises reflective actions over training, beyond GRPO",
               "reflective actions per response, last snapshot", "grpo_entropy_adv - grpo", +1, "", config)
    add(row, lambda r: per_run_row(r, *[checkpoint_last(data, m, "reflective_per_response")
                                         for m in need("grpo_entropy_adv", "grpo")]))


def zhang_rows(data: RunData, config: str, add, need) -> None:
    """Zhang et al. 2025 (AER): C10-C14."""
    zhang, suites = "Zhang et al. 2025", data.suites
    # C10: AER holds entropy near H* = rho * H_0 while GRPO's falls away
    row = _row("C10", zhang, "§3 / Fig.", "AER holds entropy near its target H* = rho * H_0, closer than GRPO",
               "mean |H - H*| / H*, second half of rollouts", "grpo_aer - grpo", -1, "", config)
    add(row, lambda r: per_run_row(r, *target_deviation(data, *need("grpo_aer", "grpo"))))
    # C11 / C12: AER raises Pass@1 (over GRPO and the fixed bonus) and Pass@K
    for claim, metric, baselines in (("C11", "1", ("grpo", "grpo_entropy_reg")), ("C12", "K", ("grpo",))):
        for base in baselines:
            for suite in suites:
                k = data.k_max(suite) if metric == "K" else 1
                row = _row(claim, zhang, "Table 1", f"AER raises Pass@{metric}", f"Pass@{k} (pp)", f"grpo_aer - {base}",
                           +1, suite, config)
                add(row, lambda r, base=base, suite=suite, k=k: passk_row(data, r, *need("grpo_aer", base), suite, k))
    # C13: each AER component matters
    for ablation in ("aer_no_allocation", "aer_fixed_target", "aer_fixed_coef"):
        for suite in suites:
            row = _row("C13", zhang, "ablations", "each AER component matters (removing it lowers Pass@1)",
                       "Pass@1 (pp)", f"grpo_aer - {ablation}", +1, suite, config)
            add(row, lambda r, ablation=ablation, suite=suite: passk_row(data, r, *need("grpo_aer", ablation), suite, 1))
    # C14: a fixed coefficient is sensitive to beta
    row = _row("C14", zhang, "§2", "a small fixed beta barely changes the entropy (|final H - GRPO's| small)",
               "entropy, last 20% (nats), |reg - grpo|", "grpo_entropy_reg vs grpo", +1, "", config)
    add(row, lambda r: small_beta_row(data, r, *need("grpo_entropy_reg", "grpo")))
    row = _row("C14", zhang, "§2", "a large fixed beta makes the entropy explode (end above start)",
               "entropy: last 20% - first 20% (nats)", "entropy_reg_large", +1, "", config)
    add(row, lambda r: per_run_row(r, metric_per_seed(
        data, need("entropy_reg_large")[0], lambda f: _tail_mean(f, "entropy") - _tail_mean(f, "entropy", start=True))))


def cui_rows(data: RunData, config: str, add, need) -> None:
    """Cui et al. 2025 (Clip-Cov, KL-Cov): C15."""
    cui = "Cui et al. 2025"
    # C15: Clip-Cov and KL-Cov keep entropy above GRPO's
    for method in ("grpo_clip_cov", "grpo_kl_cov"):
        row = _row("C15", cui, "Fig. / Table", "Clip-Cov and KL-Cov keep entropy above GRPO's",
                   "entropy, last 20% of updates (nats)", f"{method} - grpo", +1, "", config)
        add(row, lambda r, method=method: per_run_row(r, *[metric_per_seed(data, m, lambda f: _tail_mean(f, "entropy"))
                                                            for m in need(method, "grpo")]))


def crossing_per_seed(data: RunData, method: str, suite: str) -> dict[int, float]:
    """log2 of the crossing point K* of the base model's mean curve and each seed's curve
    (no crossing within K: log2 of 2K, a censored value one doubling beyond the grid)."""
    from pipeline.report.crossing import crossing_point

    k_max = data.k_max(suite)
    ks = [2**i for i in range(int(math.log2(k_max)) + 1)]
    base = [float(data.passk("base", suite, k).to_numpy().mean()) for k in ks]
    out = {}
    for seed in data.seeds(method):
        curve = [float(data.passk(method, suite, k).loc[seed].mean()) for k in ks]
        k_star = crossing_point(ks, base, curve)
        out[seed] = math.log2(k_star if k_star is not None else 2 * k_max)
    return out


def exploration_row(data: RunData, row: dict, model: str, column: str) -> dict:
    frame = data.exploration.set_index("model")
    diff, p = float(frame.loc[model, f"{column}_diff"]), float(frame.loc[model, f"{column}_p"])
    if not math.isfinite(diff):
        return row
    row.update(effect=diff, p_value=p, replicates=1, tested=True)
    return row


def checkpoint_last(data: RunData, method: str, column: str) -> dict[int, float]:
    out = {}
    for (m, seed), frame in data.checkpoints.items():
        if m == method and column in frame:
            out[seed] = float(frame.sort_values("rollout")[column].iloc[-1])
    if not out:
        raise KeyError(f"no checkpoint analysis of {method}")
    return out


def aer_target(frame: pd.DataFrame) -> float | None:
    """The target H* an AER run ended with (None: not an AER run, or no target yet)."""
    if "aer_target" not in frame:
        return None
    target = frame.groupby("rollout").first()["aer_target"].dropna()
    return float(target.iloc[-1]) if not target.empty else None


def second_half_entropy(frame: pd.DataFrame) -> pd.Series:
    """The rollout entropy of each rollout in the second half of training."""
    per_rollout = frame.groupby("rollout").first()
    return per_rollout.loc[per_rollout.index >= per_rollout.index.max() / 2, "rollout_entropy"]


def target_deviation(data: RunData, aer: str, grpo: str) -> tuple[dict[int, float], dict[int, float]]:
    """Mean relative distance of the rollout entropy from AER's target over the second half of
    the rollouts, for AER and (against the same seed's target) for GRPO."""
    aer_dev, grpo_dev = {}, {}
    for (m, seed), frame in data.metrics.items():
        h_star = aer_target(frame) if m == aer else None
        if h_star is None:
            continue
        aer_dev[seed] = float((second_half_entropy(frame) - h_star).abs().mean() / h_star)
        other = data.metrics.get((grpo, seed))
        if other is not None:
            grpo_dev[seed] = float((second_half_entropy(other) - h_star).abs().mean() / h_star)
    if not aer_dev:
        raise KeyError("no AER run with a target")
    return aer_dev, grpo_dev


AER_TOLERANCE = 0.2  # |H - H*| / H* the controller should stay within over the second half


def aer_replicates(data: RunData) -> pd.DataFrame:
    """One row per (AER run, suite), for every run with an AER target (``grpo_aer`` first, then
    its variants and ablations): the run's target H*, mean and max |H - H*| / H* over the second
    half of its rollouts, whether the max stays within ``AER_TOLERANCE``, and its Pass@1 (%)
    beside its own base model's (the same replicate's; the single shared base model when base
    models are not replicated) and, for reference, GRPO's of the same seed (NaN without GRPO): a
    world where GRPO too ends below its base model is the world's, not the controller's.
    ``below_base`` compares the point estimates; ``delta_lo`` / ``delta_hi`` are the 95% bootstrap
    CI over the suite's problems of Pass@1 minus the base model's, so ``significantly_below``
    (the CI entirely below 0) separates a real loss from the sampling noise of a few problems.
    Empty without an AER run."""
    columns = ["method", "seed", "h_star", "mean_deviation", "max_deviation", "within_tolerance", "suite",
               "pass1", "base_pass1", "below_base", "delta_lo", "delta_hi", "significantly_below", "grpo_pass1"]
    first, grpo = data.roles.get("grpo_aer"), data.roles.get("grpo")
    rows = []
    for (m, seed), frame in sorted(data.metrics.items(), key=lambda item: (item[0][0] != first, item[0])):
        h_star = aer_target(frame)
        if h_star is None:
            continue
        dev = (second_half_entropy(frame) - h_star).abs() / h_star
        for suite in data.suites:
            pass1 = _seed_pass1(data, m, suite, seed)
            if not math.isfinite(pass1):
                continue
            base = data.passk("base", suite, 1)
            if seed in base.index:
                base_problems = base.loc[seed]
            elif len(base) == 1:  # one base model shared by every seed
                base_problems = base.iloc[0]
            else:
                raise KeyError(f"no base model of replicate {seed} on {suite}")
            run_problems = data.passk(m, suite, 1).loc[seed]
            diff = 100 * (run_problems - base_problems.reindex(run_problems.index)).to_numpy()[None, :]
            _, lo, hi, _ = hierarchical_bootstrap(diff, data.n_boot, stable_seed(data.seed, "aer_replicates", m, suite, seed))
            base_pass1 = 100 * float(base_problems.mean())
            rows.append([m, seed, h_star, float(dev.mean()), float(dev.max()), bool(dev.max() <= AER_TOLERANCE),
                         suite, pass1, base_pass1, bool(pass1 < base_pass1), lo, hi, bool(hi < 0),
                         _seed_pass1(data, grpo, suite, seed)])
    return pd.DataFrame(rows, columns=columns)


def _seed_pass1(data: RunData, method: str | None, suite: str, seed: int) -> float:
    """Pass@1 (%) of ``method``'s run ``seed`` on ``suite``; NaN when there is none."""
    try:
        table = data.passk(method, suite, 1) if method else None
    except KeyError:
        return math.nan
    return 100 * float(table.loc[seed].mean()) if table is not None and seed in table.index else math.nan


def aer_replicates_markdown(frame: pd.DataFrame) -> str:
    """The per-replicate AER check as a Markdown section (empty string without AER runs)."""
    if frame.empty:
        return ""
    suites = list(dict.fromkeys(frame["suite"]))
    lines = ["## AER, replicate by replicate", "",
             f"Rollout entropy against the target H* over the second half of training (tolerance "
             f"{AER_TOLERANCE:.0%}), and Pass@1 (%) against the same replicate's base model (GRPO's of the same "
             "replicate beside it, for reference); below the base model, the 95% CI of the difference over the "
             "suite's problems (bootstrap) and whether it excludes 0.", "",
             "| Method | Seed | H* | mean \\|H - H*\\| / H* | max | within | "
             + " | ".join(f"{s} Pass@1 (base / GRPO)" for s in suites) + " |",
             "|:---|---:|---:|---:|---:|:---|" + "---:|" * len(suites)]
    methods = list(dict.fromkeys(frame["method"]))
    for (method, seed), g in sorted(frame.groupby(["method", "seed"]), key=lambda item: (methods.index(item[0][0]), item[0][1])):
        head = g.iloc[0]
        cells = []
        for suite in suites:
            r = g[g["suite"] == suite]
            if r.empty:
                cells.append("—")
                continue
            grpo = r["grpo_pass1"].iloc[0]
            below = ""
            if bool(r["below_base"].iloc[0]):
                ci = f"[{r['delta_lo'].iloc[0]:+.1f}, {r['delta_hi'].iloc[0]:+.1f}]"
                below = f" **below**, {ci}" + (" significant" if bool(r["significantly_below"].iloc[0]) else " within noise")
            cells.append(f"{r['pass1'].iloc[0]:.1f} ({r['base_pass1'].iloc[0]:.1f} / "
                         + ("—" if not math.isfinite(grpo) else f"{grpo:.1f}") + ")" + below)
        lines.append(f"| {method} | {seed} | {head['h_star']:.4f} | {head['mean_deviation']:.3f} | {head['max_deviation']:.3f} | "
                     f"{'yes' if head['within_tolerance'] else '**no**'} | " + " | ".join(cells) + " |")
    lines.append("")
    for method in methods:
        runs = frame[frame["method"] == method].groupby("seed")
        held = int(runs["within_tolerance"].first().sum())
        mine = frame["method"] == method
        below = sorted({int(s) for s in frame.loc[mine & frame["below_base"], "seed"]})
        significant = sorted({int(s) for s in frame.loc[mine & frame["significantly_below"], "seed"]})
        lines.append(f"{method}: entropy within tolerance on {held} of {runs.ngroups} replicates; Pass@1 below the base "
                     "model's on " + (f"replicates {', '.join(map(str, below))}" if below else "no replicate")
                     + ("" if not below else ", significantly (95% CI over problems below 0) on "
                        + (f"replicates {', '.join(map(str, significant))}" if significant else "none")) + ".")
    return "\n".join(lines) + "\n"


def small_beta_row(data: RunData, row: dict, reg: str, grpo: str) -> dict:
    """|final entropy of the fixed bonus - GRPO's| relative to GRPO's, tested against 20%:
    effect = 0.2 - relative gap (positive: the small beta barely changes the entropy)."""
    a = metric_per_seed(data, reg, lambda f: _tail_mean(f, "entropy"))
    b = metric_per_seed(data, grpo, lambda f: _tail_mean(f, "entropy"))
    gaps = {s: 0.2 - abs(a[s] - b[s]) / b[s] for s in set(a) & set(b) if b[s]}
    row["quantity"] = "0.2 - |H_reg - H_grpo| / H_grpo, last 20% of updates"
    return per_run_row(row, gaps)


def finalize(rows: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    tested = frame["tested"]
    adjusted = holm([float(p) if t else math.nan for p, t in zip(frame["p_value"], tested)])
    frame["p_holm"] = adjusted
    frame["verdict"] = [
        verdict(e, d, p) if t else "not tested"
        for e, d, p, t in zip(frame["effect"], frame["direction"], frame["p_holm"], tested)
    ]
    return frame[list(COLUMNS)]


def claim_summary(table: pd.DataFrame) -> pd.DataFrame:
    """One verdict per claim: holds if every tested row holds, contradicted if any row is,
    not tested if none was tested, not shown otherwise."""
    out = []
    for claim, g in table.groupby("claim", sort=False):
        v = [x for x in g["verdict"] if x != "not tested"]
        if not v:
            overall = "not tested"
        elif "contradicted" in v:
            overall = "contradicted"
        elif all(x == "holds" for x in v):
            overall = "holds"
        else:
            overall = "not shown"
        counts = {k: int((g["verdict"] == k).sum()) for k in VERDICTS}
        out.append({"claim": claim, "paper": g["paper"].iloc[0], "source": g["source"].iloc[0],
                    "statement": g["statement"].iloc[0], "verdict": overall, **counts})
    return pd.DataFrame(out)


# --------------------------------------------------------------------------- rendering


def _f(v, digits=2):
    """Signed, with 2 decimals, or 2 significant digits for small values (entropy differences
    of a few thousandths of a nat must not print as +0.00)."""
    if not isinstance(v, (int, float)) or not math.isfinite(v):
        return "—"
    if v != 0 and abs(v) < 0.1:
        return f"{v:+.2g}" if abs(v) >= 1e-4 else f"{v:+.1e}"
    return f"{v:+.{digits}f}"


def _p(v):
    return "—" if not math.isfinite(v) else (f"{v:.2g}" if v >= 1e-3 else f"{v:.1e}")


def _cell(text) -> str:
    """A Markdown table cell: a literal "|" (as in psi/|A|) would end the cell."""
    return str(text).replace("|", "\\|")


def to_markdown(table: pd.DataFrame, config: str) -> str:
    summary = claim_summary(table)
    lines = [f"# Claims of the papers, tested on this run ({config})", "",
             "| Claim | Paper | Source | Statement | Verdict | rows: holds / not shown / contradicted / not tested |",
             "|:---|:---|:---|:---|:---|:---|"]
    for _, r in summary.iterrows():
        lines.append(f"| {r['claim']} | {r['paper']} | {r['source']} | {_cell(r['statement'])} | **{r['verdict']}** | "
                     f"{r['holds']} / {r['not shown']} / {r['contradicted']} / {r['not tested']} |")
    lines += ["", "| Claim | Quantity | Comparison | Suite | Effect [95% CI] | p | Holm p | Verdict | Replicates (needed) |",
              "|:---|:---|:---|:---|---:|---:|---:|:---|---:|"]
    for _, r in table.iterrows():
        ci = f" [{_f(r['ci_lo'])}, {_f(r['ci_hi'])}]" if math.isfinite(r["ci_lo"]) else ""
        need = "" if not math.isfinite(r["replicates_needed"]) else f" ({int(r['replicates_needed'])})"
        lines.append(f"| {r['claim']} | {_cell(r['quantity'])} | {_cell(r['comparison'])} | {r['suite'] or '—'} | {_f(r['effect'])}{ci} | "
                     f"{_p(r['p_value'])} | {_p(r['p_holm'])} | {r['verdict']} | {r['replicates']}{need} |")
    lines += ["", RULE_NOTE, ""]
    return "\n".join(lines)


RULE_NOTE = (
    "Verdict rule: `holds` when the effect has the claimed sign and the Holm-adjusted p (over every tested row) is "
    f"below {ALPHA}; `contradicted` when the sign is the opposite at the same level; `not shown` otherwise; `not tested` "
    "when the config lacks the methods or analyses the claim needs. p: the larger of a paired hierarchical bootstrap "
    "over replicates and problems and a t-test over replicates (Pass@k rows), a t-test over replicates (per-run "
    "quantities), or the analysis stage's Mann-Whitney test (exploration rows). A replicate is a seed (its own base "
    "model too when base_model.replicates is on). Replicates needed: for 80% power at the measured effect and spread."
)


# --------------------------------------------------------------------------- stage


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--passk", nargs="+", required=True, help="Pass@k JSON files of every model and suite")
    parser.add_argument("--metrics", nargs="*", default=[], help="training metrics JSONL files")
    parser.add_argument("--metrics-runs", nargs="*", default=[], help="METHOD/seedN of each metrics file")
    parser.add_argument("--methods-json", required=True, help="the configured methods' resolved specs")
    parser.add_argument("--suites", nargs="+", required=True)
    parser.add_argument("--exploration-summary", default=None)
    parser.add_argument("--checkpoints", nargs="*", default=[], help="checkpoint-analysis CSVs (METHOD/seedN inside)")
    parser.add_argument("--config-name", default="config")
    parser.add_argument("--bootstrap", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out-dir", required=True)


def load(args: argparse.Namespace) -> RunData:
    from pipeline.report.compare import per_problem_frame
    from pipeline.report.scores import load_score_items

    counts = per_problem_frame(load_score_items([Path(p) for p in args.passk]))
    if len(args.metrics) != len(args.metrics_runs):
        raise PipelineError("--metrics and --metrics-runs need one entry each")
    metrics = {}
    for path, run in zip(args.metrics, args.metrics_runs):
        m = RUN_RE.match(run)
        if not m:
            raise PipelineError(f"--metrics-runs {run!r}: expected METHOD/seedN")
        metrics[m["method"], int(m["seed"])] = pd.DataFrame([json.loads(x) for x in Path(path).read_text().splitlines() if x])
    checkpoints = {}
    for path in args.checkpoints:
        frame = pd.read_csv(path)
        checkpoints[str(frame["method"].iloc[0]), int(frame["seed"].iloc[0])] = frame
    exploration = pd.read_csv(args.exploration_summary) if args.exploration_summary else None
    return RunData(counts=counts, metrics=metrics, roles=roles_from_specs(json.loads(args.methods_json)),
                   exploration=exploration, checkpoints=checkpoints, suites=list(args.suites),
                   n_boot=args.bootstrap, seed=args.seed)


def run(args: argparse.Namespace) -> int:
    data = load(args)
    table = finalize(build_rows(data, args.config_name))
    out = Path(args.out_dir)
    write_text(out / "claims.csv", table.to_csv(index=False, float_format="%.6g"))
    aer = aer_replicates(data)
    write_text(out / "aer_replicates.csv", aer.to_csv(index=False, float_format="%.6g"))
    section = aer_replicates_markdown(aer)
    write_text(out / "claims.md", to_markdown(table, args.config_name) + ("\n" + section if section else ""))
    summary = claim_summary(table)
    log.info("claims: %s", ", ".join(f"{r.claim} {r.verdict}" for r in summary.itertuples()))
    return 0
