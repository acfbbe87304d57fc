"""Figures of the exploration analysis (matplotlib Agg, PNG).

* :func:`entropy_bars` — Cheng et al. Fig. 2 analogue: mean entropy of each pivotal-token
  category against all other tokens, of reflective against other segments, of rare
  against other sentences; one bar per model, 95% bootstrap CIs over responses.
* :func:`embedding_scatter` — Fig. 3 analogue: 2-D PCA of the sentence embeddings,
  base / RL / RL-rare.
* :func:`checkpoint_curves` — Fig. 8 analogue: pivotal tokens and reflective actions per
  response, their mean entropy, response length, repetition rate and accuracy against
  the training rollout; mean over seeds, band = min–max.
"""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from pipeline.io import atomic_path  # noqa: E402

DPI = 120
_PALETTE = list(plt.get_cmap("tab10").colors)


def _colour(i: int):
    return _PALETTE[i % len(_PALETTE)]


def _save(fig, out) -> None:
    with atomic_path(out, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)


def _bars(ax, frame: pd.DataFrame, groups: list[str], models: list[str], title: str, ylabel: str,
          colours: dict | None = None) -> None:
    """Grouped bars: x = group, one bar per model; ``frame`` has model, group, mean, ci_lo, ci_hi.
    ``colours``: model -> colour (one colour per model in every panel)."""
    width = 0.8 / max(1, len(models))
    x = np.arange(len(groups))
    for i, model in enumerate(models):
        sub = frame[frame["model"] == model].set_index("group").reindex(groups)
        means = sub["mean"].to_numpy(dtype=float)
        lo = np.nan_to_num(means - sub["ci_lo"].to_numpy(dtype=float), nan=0.0)
        hi = np.nan_to_num(sub["ci_hi"].to_numpy(dtype=float) - means, nan=0.0)
        ax.bar(x + (i - (len(models) - 1) / 2) * width, np.nan_to_num(means), width, yerr=[np.maximum(lo, 0), np.maximum(hi, 0)],
               capsize=2, color=(colours or {}).get(model, _colour(i)), label=model)
    ax.set_xticks(x)
    ax.set_xticklabels(groups, rotation=30, ha="right")
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    ax.grid(axis="y", alpha=0.3)


def entropy_bars(pivotal: pd.DataFrame, reflective: pd.DataFrame, rare: pd.DataFrame, models: list[str], out) -> None:
    """``pivotal``: model, category, mean, ci_lo, ci_hi, mean_other, ci_lo_other, ci_hi_other (one row per
    category); ``reflective`` and ``rare``: the same columns, one row per model."""

    def pairs(frame, label, other_label, key=None):
        rows = []
        for _, r in frame.iterrows():
            rows.append({"model": r["model"], "group": r[key] if key else label, "mean": r["mean"], "ci_lo": r["ci_lo"], "ci_hi": r["ci_hi"]})
            rows.append({"model": r["model"], "group": other_label, "mean": r["mean_other"],
                         "ci_lo": r["ci_lo_other"], "ci_hi": r["ci_hi_other"]})
        return pd.DataFrame(rows).drop_duplicates(["model", "group"]) if rows else pd.DataFrame(
            columns=["model", "group", "mean", "ci_lo", "ci_hi"])

    piv = pivotal[pivotal["category"] != "all pivotal"]
    panels = [
        (pairs(piv, None, "other tokens", key="category"), list(piv["category"].drop_duplicates()) + ["other tokens"],
         "Pivotal-token categories", "mean token entropy (nats)"),
        (pairs(reflective, "reflective", "other segments"), ["reflective", "other segments"],
         "Reflective segments", "mean segment entropy (nats)"),
        (pairs(rare, "rare", "other sentences"), ["rare", "other sentences"],
         "Rare sentences (RL vs base kNN)", "mean sentence entropy (nats)"),
    ]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2), gridspec_kw={"width_ratios": [max(2, len(panels[0][1])), 2, 2]})
    colours = {m: _colour(i) for i, m in enumerate(models)}
    for ax, (frame, groups, title, ylabel) in zip(axes, panels):
        present = [m for m in models if m in set(frame["model"])]
        _bars(ax, frame, groups, present, title, ylabel, colours)
    handles, labels = axes[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="upper center", ncol=min(len(labels), 6), bbox_to_anchor=(0.5, 1.08))
    fig.tight_layout()
    _save(fig, out)


def embedding_scatter(panels: list[dict], out, max_points: int = 1500, seed: int = 0) -> None:
    """One panel per RL model: ``{"model", "base": [N, 2], "rl": [M, 2], "rare": bool[M]}`` (already projected)."""
    n = max(1, len(panels))
    cols = min(3, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 4.2 * rows), squeeze=False)
    rng = np.random.default_rng(seed)

    def sub(points):
        if len(points) <= max_points:
            return points
        return points[np.sort(rng.choice(len(points), max_points, replace=False))]

    for ax, p in zip(axes.flat, panels):
        base, rl, rare = p["base"], p["rl"], np.asarray(p["rare"], dtype=bool)
        ax.scatter(*sub(base).T, s=6, c="0.7", label="base", alpha=0.6, linewidths=0)
        ax.scatter(*sub(rl[~rare]).T, s=6, c="tab:blue", label="RL", alpha=0.6, linewidths=0)
        ax.scatter(*rl[rare].T, s=10, c="tab:red", label="RL, rare", alpha=0.9, linewidths=0)
        ax.set_title(p["model"])
        ax.set_xlabel("PC 1")
        ax.set_ylabel("PC 2")
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    if panels:
        axes.flat[0].legend(loc="best", fontsize=8, markerscale=2)
    fig.tight_layout()
    _save(fig, out)


CHECKPOINT_PANELS = (
    ("pivotal_per_response", "Pivotal tokens per response"),
    ("reflective_per_response", "Reflective actions per response"),
    ("pivotal_entropy", "Mean entropy of pivotal tokens (nats)"),
    ("reflective_entropy", "Mean entropy of reflective segments (nats)"),
    ("response_length", "Response length (tokens)"),
    ("repetition", "n-gram repetition rate"),
    ("mean_entropy", "Mean token entropy (nats)"),
    ("accuracy", "Accuracy (fixed problems)"),
)


def checkpoint_curves(frame: pd.DataFrame, methods: list[str], out) -> None:
    """``frame``: method, seed, rollout and the :data:`CHECKPOINT_PANELS` columns."""
    fig, axes = plt.subplots(2, 4, figsize=(17, 7.5))
    for ax, (col, title) in zip(axes.flat, CHECKPOINT_PANELS):
        for i, method in enumerate(methods):
            sub = frame[frame["method"] == method]
            if sub.empty or col not in sub:
                continue
            g = sub.groupby("rollout")[col]
            mean, lo, hi = g.mean(), g.min(), g.max()
            ax.plot(mean.index, mean.values, marker="o", ms=3, color=_colour(i), label=method)
            if sub["seed"].nunique() > 1:
                ax.fill_between(mean.index, lo.values, hi.values, color=_colour(i), alpha=0.15, linewidth=0)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("rollout")
        ax.grid(alpha=0.3)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="upper center", ncol=min(len(labels), 6), bbox_to_anchor=(0.5, 1.04))
    fig.tight_layout()
    _save(fig, out)
