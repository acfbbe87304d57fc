"""Stage ``figures``: Pass@k curves and training-dynamics figures (PNG, matplotlib Agg).

* ``passk_<suite>.png`` — Pass@k (%) against k on a log2 axis; per method the mean over
  seeds with a min–max band; ``base`` black dashed.
* ``training_dynamics.png`` — 2×2: reward, response length, mean token entropy and the
  ψ/|A| shaping ratio against the policy update; mean over seeds, min–max band.
* ``entropy_control.png`` — mean token entropy of the entropy-control methods (dashed
  line of the same colour: AER's target H* where logged) and AER's coefficient α_t.

Training curves are smoothed per seed with a centred moving average whose window is
given in each y-axis label (``--smooth``; default: about 1/50 of the run, at least 1).
Each method keeps one colour (its position in ``--methods``) in every figure.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import FixedLocator, NullLocator  # noqa: E402

from pipeline.errors import PipelineError  # noqa: E402
from pipeline.io import atomic_path  # noqa: E402
from pipeline.report.scores import BASE, load_score_items  # noqa: E402

logger = logging.getLogger(__name__)

DPI = 120
RUN_RE = re.compile(r"^(?P<method>[A-Za-z0-9][A-Za-z0-9_.+-]*)/seed(?P<seed>\d+)$")
DYNAMICS_PANELS = (
    ("reward", "Reward", "mean reward"),
    ("response_length", "Response length", "tokens"),
    ("entropy", "Mean token entropy", "nats"),
    ("shaping_ratio", r"Entropy shaping ratio $\psi/|A|$", r"mean $\psi/|A|$ over tokens with $A \neq 0$"),
)
_PALETTE = list(plt.get_cmap("tab10").colors) + list(plt.get_cmap("Dark2").colors) + list(plt.get_cmap("Set1").colors)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--passk", nargs="*", default=[], type=Path, help="Pass@k JSON files written by 'score'")
    parser.add_argument("--metrics", nargs="*", default=[], type=Path, help="training metrics JSONL files")
    parser.add_argument("--metrics-runs", nargs="*", default=[], help="METHOD/seedN for each --metrics file, same order")
    parser.add_argument("--methods", nargs="+", required=True, help="methods in legend/colour order")
    parser.add_argument("--out-dir", required=True, type=Path)
    parser.add_argument(
        "--entropy-methods", nargs="*", default=None, help="methods for entropy_control.png (default: all with metrics)"
    )
    parser.add_argument("--smooth", type=int, default=0, help="moving-average window for training curves (0: auto)")


# --------------------------------------------------------------------------- inputs

def method_colours(methods: list[str]) -> dict[str, tuple]:
    """Fixed colour per method in the given order; base is black."""
    colours: dict[str, tuple] = {BASE: (0.0, 0.0, 0.0)}
    others = [m for m in methods if m != BASE]
    for i, m in enumerate(others):
        colours[m] = _PALETTE[i % len(_PALETTE)]
    return colours


def parse_run(run: str) -> tuple[str, int]:
    m = RUN_RE.match(run)
    if not m:
        raise PipelineError(f"--metrics-runs {run!r}: expected METHOD/seedN")
    return m.group("method"), int(m.group("seed"))


def read_metrics_jsonl(path: Path) -> pd.DataFrame:
    """Rows of a metrics JSONL as a numeric frame sorted by ``update`` (nulls -> NaN; last row per update wins)."""
    if not Path(path).exists():
        raise PipelineError(f"metrics file {path} does not exist")
    rows = []
    with open(path) as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as err:
                raise PipelineError(f"metrics file {path}, line {lineno}: invalid JSON ({err})") from err
            if not isinstance(obj, dict):
                raise PipelineError(f"metrics file {path}, line {lineno}: expected a JSON object")
            if obj.get("update") is None:
                raise PipelineError(f"metrics file {path}, line {lineno}: missing key 'update'")
            row = {}
            for key, value in obj.items():
                if value is None:
                    row[key] = math.nan
                elif isinstance(value, bool):
                    row[key] = float(value)
                elif isinstance(value, (int, float)):
                    row[key] = float(value)
                # non-numeric entries (e.g. a phase label) are not plottable: skipped
            rows.append(row)
    frame = pd.DataFrame(rows)
    if frame.empty:
        return pd.DataFrame({"update": pd.Series(dtype=float)})
    return frame.drop_duplicates("update", keep="last").sort_values("update").reset_index(drop=True)


def passk_curves(items: list[tuple[str, dict]]) -> pd.DataFrame:
    """Long frame: source, method, seed, suite, k, value (fraction), n_samples, n_problems."""
    rows = []
    for source, obj in items:
        for key in ("method", "suite", "pass_at_k"):
            if key not in obj:
                raise PipelineError(f"{source}: missing key {key!r}")
        seed = obj.get("seed")
        for k, v in obj["pass_at_k"].items():
            try:
                k_int = int(k)
            except ValueError as err:
                raise PipelineError(f"{source}: pass_at_k key {k!r} is not an integer k") from err
            rows.append(
                {
                    "source": source,
                    "method": str(obj["method"]),
                    "seed": -1 if seed is None else int(seed),
                    "suite": str(obj["suite"]),
                    "k": k_int,
                    "value": float(v),
                    "n_samples": obj.get("n_samples"),
                    "n_problems": obj.get("n_problems"),
                }
            )
    frame = pd.DataFrame(
        rows, columns=["source", "method", "seed", "suite", "k", "value", "n_samples", "n_problems"]
    )
    dup = frame.drop_duplicates(["source", "method", "seed", "suite"]).duplicated(["method", "seed", "suite"], keep=False)
    if dup.any():
        raise PipelineError("two Pass@k files for the same method, seed and suite: " + ", ".join(
            frame.drop_duplicates(["source", "method", "seed", "suite"])[dup]["source"]))
    return frame


# --------------------------------------------------------------------------- aggregation

def auto_window(n_points: int, requested: int = 0) -> int:
    if requested and requested > 0:
        return int(requested)
    return max(1, int(round(n_points / 50)))


def seed_band(runs: dict[int, pd.DataFrame], key: str, window: int) -> pd.DataFrame | None:
    """Mean / min / max over seeds of ``key`` vs update (each seed smoothed first); None without data."""
    series = {}
    for seed, frame in runs.items():
        if key not in frame.columns:
            continue
        s = frame.set_index("update")[key].dropna()
        if s.empty:
            continue
        if window > 1:
            s = s.rolling(window, center=True, min_periods=1).mean()
        series[seed] = s
    if not series:
        return None
    table = pd.DataFrame(series).sort_index()
    return pd.DataFrame(
        {"mean": table.mean(axis=1), "min": table.min(axis=1), "max": table.max(axis=1), "n": table.count(axis=1)}
    )


def _draw_band(ax, band: pd.DataFrame, colour, label: str, linestyle="-", n_seeds: int = 1) -> None:
    x = band.index.to_numpy(dtype=float)
    ax.plot(x, band["mean"].to_numpy(), color=colour, lw=1.6, ls=linestyle, label=label)
    if n_seeds >= 2:
        ax.fill_between(x, band["min"].to_numpy(), band["max"].to_numpy(), color=colour, alpha=0.18, lw=0)


def _save(fig, path: Path) -> None:
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)


# --------------------------------------------------------------------------- figures

def plot_passk(curves: pd.DataFrame, suite: str, methods: list[str], colours: dict, path: Path) -> None:
    sub = curves[curves["suite"] == suite]
    fig, ax = plt.subplots(figsize=(8, 5.5))
    all_ks: set[int] = set()
    for method in [BASE] + [m for m in methods if m != BASE]:
        msub = sub[sub["method"] == method]
        if msub.empty:
            continue
        n_seeds = msub["seed"].nunique()
        # only the ks every seed has, so the mean is over the same runs at each k
        pivot = msub.pivot_table(index="k", columns="seed", values="value").dropna()
        if pivot.empty:
            continue
        ks = pivot.index.to_numpy(dtype=float)
        all_ks.update(int(k) for k in ks)
        mean = 100 * pivot.mean(axis=1).to_numpy()
        is_base = method == BASE
        label = method if is_base else f"{method} ({n_seeds} seed{'s' if n_seeds != 1 else ''})"
        ax.plot(ks, mean, color=colours.get(method, "grey"), ls="--" if is_base else "-", lw=1.8 if is_base else 1.6,
                marker="o", ms=3, label=label, zorder=3 if is_base else 2)
        if n_seeds >= 2:
            ax.fill_between(ks, 100 * pivot.min(axis=1).to_numpy(), 100 * pivot.max(axis=1).to_numpy(),
                            color=colours.get(method, "grey"), alpha=0.18, lw=0)
    ax.set_xscale("log", base=2)
    if all_ks:
        ticks = sorted(all_ks)
        ax.xaxis.set_major_locator(FixedLocator(ticks))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xticklabels([str(k) for k in ticks])
    n_samples = sub["n_samples"].dropna()
    n_problems = sub["n_problems"].dropna()
    detail = []
    if len(n_problems):
        detail.append(f"{int(n_problems.iloc[0])} problems")
    if len(n_samples):
        detail.append(f"n = {int(n_samples.iloc[0])} samples each")
    ax.set_title(f"Pass@k on {suite}" + (f" ({', '.join(detail)})" if detail else ""))
    ax.set_xlabel("k (log scale)")
    ax.set_ylabel("Pass@k (%)")
    ax.grid(True, which="major", alpha=0.3)
    if sub.empty:
        ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center", va="center")
    else:
        ax.legend(loc="lower right", fontsize=9, title="mean over seeds; band = min–max", title_fontsize=8)
    _save(fig, path)


def _runs_by_method(metrics: dict[tuple[str, int], pd.DataFrame]) -> dict[str, dict[int, pd.DataFrame]]:
    out: dict[str, dict[int, pd.DataFrame]] = {}
    for (method, seed), frame in metrics.items():
        out.setdefault(method, {})[seed] = frame
    return out


def _label(method: str, runs: dict[int, pd.DataFrame]) -> str:
    return f"{method} ({len(runs)} seed{'s' if len(runs) != 1 else ''})"


def _window_for(runs: dict[int, pd.DataFrame], requested: int) -> int:
    longest = max((len(f) for f in runs.values()), default=0)
    return auto_window(longest, requested)


def plot_training_dynamics(
    metrics: dict[tuple[str, int], pd.DataFrame], methods: list[str], colours: dict, path: Path, smooth: int = 0
) -> None:
    by_method = _runs_by_method(metrics)
    order = [m for m in methods if m in by_method]
    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5))
    handles = {}
    for ax, (key, title, unit) in zip(axes.flat, DYNAMICS_PANELS):
        windows = set()
        drawn = 0
        for method in order:
            runs = by_method[method]
            window = _window_for(runs, smooth)
            band = seed_band(runs, key, window)
            if band is None:
                continue
            windows.add(window)
            _draw_band(ax, band, colours[method], _label(method, runs), n_seeds=int(band["n"].max()))
            handles[_label(method, runs)] = ax.get_lines()[-1]
            drawn += 1
        if drawn == 0:
            ax.set_title(f"{title}: no data for any method", color="dimgray")
            ax.text(0.5, 0.5, f"no '{key}' in any metrics file", transform=ax.transAxes, ha="center", va="center",
                    color="dimgray")
        else:
            ax.set_title(title)
        smooth_note = ""
        if windows and max(windows) > 1:
            w = "/".join(str(x) for x in sorted(windows))
            smooth_note = f"\n(moving avg over {w} updates)"
        ax.set_ylabel(unit + smooth_note)
        ax.set_xlabel("policy update")
        ax.grid(True, alpha=0.3)
    if handles:
        fig.legend(list(handles.values()), list(handles.keys()), loc="upper center", ncol=min(len(handles), 5),
                   bbox_to_anchor=(0.5, 1.0), fontsize=9, frameon=False)
    fig.suptitle("Training dynamics (mean over seeds, band = min–max)", y=1.04)
    fig.tight_layout()
    _save(fig, path)


def plot_entropy_control(
    metrics: dict[tuple[str, int], pd.DataFrame], methods: list[str], colours: dict, path: Path, smooth: int = 0
) -> None:
    by_method = _runs_by_method(metrics)
    order = [m for m in methods if m in by_method]
    fig, (ax_h, ax_a) = plt.subplots(2, 1, figsize=(10, 7), sharex=True)
    windows = set()
    drawn_h = drawn_a = 0
    has_target = False
    for method in order:
        runs = by_method[method]
        window = _window_for(runs, smooth)
        band = seed_band(runs, "entropy", window)
        if band is not None:
            windows.add(window)
            _draw_band(ax_h, band, colours[method], _label(method, runs), n_seeds=int(band["n"].max()))
            drawn_h += 1
        target = seed_band(runs, "aer_target", 1)
        if target is not None:
            has_target = True
            ax_h.plot(target.index.to_numpy(dtype=float), target["mean"].to_numpy(), color=colours[method], ls="--",
                      lw=1.2, label=f"{method} target $H^*$")
        alpha = seed_band(runs, "aer_alpha", 1)
        if alpha is not None:
            _draw_band(ax_a, alpha, colours[method], _label(method, runs), n_seeds=int(alpha["n"].max()))
            drawn_a += 1
    note = f" (moving avg over {'/'.join(str(w) for w in sorted(windows))} updates)" if windows and max(windows) > 1 else ""
    ax_h.set_ylabel("mean token entropy (nats)" + ("\n" + note.strip() if note else ""))
    if drawn_h:
        ax_h.set_title("Entropy control" + (" (dashed: AER target entropy $H^*$)" if has_target else ""))
        ax_h.legend(fontsize=9, ncol=2)
    else:
        ax_h.set_title("Entropy control: no entropy data for any method", color="dimgray")
    ax_h.grid(True, alpha=0.3)
    ax_a.set_ylabel(r"AER coefficient $\alpha_t$")
    ax_a.set_xlabel("policy update")
    if drawn_a:
        ax_a.set_title(r"AER global entropy coefficient $\alpha_t$")
        ax_a.legend(fontsize=9)
    else:
        ax_a.set_title(r"AER coefficient $\alpha_t$: no data for any method", color="dimgray")
        ax_a.text(0.5, 0.5, "no 'aer_alpha' in any metrics file", transform=ax_a.transAxes, ha="center",
                  va="center", color="dimgray")
    ax_a.grid(True, alpha=0.3)
    fig.tight_layout()
    _save(fig, path)


# --------------------------------------------------------------------------- stage

def run(args: argparse.Namespace) -> int:
    if len(args.metrics) != len(args.metrics_runs):
        raise PipelineError(
            f"--metrics has {len(args.metrics)} files but --metrics-runs has {len(args.metrics_runs)} entries"
        )
    methods = []
    for m in args.methods:
        if m not in methods:
            methods.append(m)
    colours = method_colours(methods)

    curves = passk_curves(load_score_items(args.passk))

    metrics: dict[tuple[str, int], pd.DataFrame] = {}
    for path, run_id in zip(args.metrics, args.metrics_runs):
        key = parse_run(run_id)
        if key in metrics:
            raise PipelineError(f"--metrics-runs lists {run_id!r} twice")
        metrics[key] = read_metrics_jsonl(path)

    known = set(curves["method"]) | {m for m, _ in metrics}
    absent = [m for m in methods if m not in known and m != BASE]
    if absent:
        raise PipelineError(f"--methods {', '.join(absent)}: no Pass@k file and no metrics file for it")
    extra = sorted(known - set(methods) - {BASE})
    if extra:
        logger.warning("figures: ignoring results of methods not in --methods: %s", ", ".join(extra))
        curves = curves[curves["method"].isin(set(methods) | {BASE})]
        metrics = {k: v for k, v in metrics.items() if k[0] in methods}

    out_dir = Path(args.out_dir)
    for suite in sorted(curves["suite"].unique()):
        missing = [m for m in methods if m not in set(curves[curves["suite"] == suite]["method"])]
        if missing:
            logger.warning("figures: no Pass@k on %s for %s", suite, ", ".join(missing))
        plot_passk(curves, suite, methods, colours, out_dir / f"passk_{suite}.png")

    plot_training_dynamics(metrics, methods, colours, out_dir / "training_dynamics.png", args.smooth)
    entropy_methods = args.entropy_methods if args.entropy_methods else [m for m in methods if any(k[0] == m for k in metrics)]
    unknown = [m for m in entropy_methods if not any(k[0] == m for k in metrics)]
    if unknown:
        raise PipelineError(f"--entropy-methods {', '.join(unknown)}: no metrics file for it")
    for m in entropy_methods:
        colours.setdefault(m, _PALETTE[len(colours) % len(_PALETTE)])
    plot_entropy_control({k: v for k, v in metrics.items() if k[0] in entropy_methods}, entropy_methods, colours,
                         out_dir / "entropy_control.png", args.smooth)
    logger.info("figures: wrote %d Pass@k figure(s), training_dynamics.png and entropy_control.png to %s",
                curves["suite"].nunique(), out_dir)
    return 0
