"""Stage ``analyze``: the exploration analysis of stored samples (docs/methods.md §9), tables and figures.

Inputs: the per-token entropy files of ``token-entropy`` (base model first, then RL
models), the sample files they came from (for the response texts), and optionally the
per-snapshot CSVs of ``analyze-checkpoints``. Outputs (``--tables-dir``, ``--figures-dir``):

* ``exploration_summary.{md,csv}`` — one row per model: tokens, mean entropy, pivotal
  tokens and reflective segments per response and their entropy gap to the rest, the
  rare-sentence entropy gap, repetition rate;
* ``exploration_pivotal.{md,csv}`` — per model and category: occurrences, mean entropy
  with a 95% bootstrap CI (over responses), the same for all other tokens, difference,
  Mann–Whitney U p-value and rank-biserial effect size (+1: every category token above
  every other token);
* ``exploration_reflective.{md,csv}`` — reflective vs other segments, counts per response
  and per pattern;
* ``exploration_rare.{md,csv}`` — rare vs other sentences of each RL model (kNN distance
  to the base model's sentences), with the most distant sentences as examples;
* ``exploration_checkpoints.{md,csv}`` — the Fig. 8 quantities per snapshot (when given);
* figures ``exploration_entropy.png`` (Fig. 2), ``exploration_embeddings.png`` (Fig. 3),
  ``exploration_checkpoints.png`` (Fig. 8, when snapshots were analysed);
* ``--sentences-out``: every analysed RL sentence with its entropy, distance, rare label.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline import io
from pipeline.analysis.annotate import OTHER, Annotation, annotate, response_key
from pipeline.analysis.settings import compile_patterns, fill_defaults
from pipeline.analysis.stats import cluster_bootstrap_mean_ci, compare
from pipeline.errors import PipelineError

log = logging.getLogger(__name__)

BASE = "base"
TABLES = ("summary", "pivotal", "reflective", "rare")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tokens", nargs="+", required=True, type=Path, help="per-token Parquet files from 'token-entropy'")
    parser.add_argument("--samples", nargs="+", required=True, type=Path, help="the sample files, same order as --tokens")
    parser.add_argument("--models", nargs="+", required=True, help="model names, same order (base first)")
    parser.add_argument("--base-model", default=None, help="base model directory (rarity backend policy_hidden)")
    parser.add_argument("--analysis-json", required=True, help="the analysis config slice (JSON)")
    parser.add_argument("--checkpoints", nargs="*", default=[], type=Path, help="CSV files from 'analyze-checkpoints'")
    parser.add_argument("--methods", nargs="*", default=None, help="method order of the checkpoint figure")
    parser.add_argument("--tables-dir", required=True, type=Path)
    parser.add_argument("--figures-dir", required=True, type=Path)
    parser.add_argument("--sentences-out", default=None, type=Path, help="Parquet of the RL sentences (distance, rare)")
    parser.add_argument("--trust-remote-code", action="store_true")
    parser.add_argument("--threads", type=int, default=1)


# --------------------------------------------------------------------------- formatting

def fmt(x, digits: int = 3) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def fmt_p(p) -> str:
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return "—"
    return "<1e-300" if p == 0 else (f"{p:.3f}" if p >= 0.001 else f"{p:.1e}")


def fmt_ci(mean, lo, hi) -> str:
    if isinstance(mean, float) and math.isnan(mean):
        return "—"
    if isinstance(lo, float) and math.isnan(lo):
        return fmt(mean)
    return f"{fmt(mean)} [{fmt(lo)}, {fmt(hi)}]"


def markdown(frame: pd.DataFrame, columns: dict[str, callable], title: str, note: str) -> str:
    """A Markdown table from ``frame``; ``columns`` maps a header to a row -> cell function."""
    heads = list(columns)
    lines = [f"### {title}", "", "| " + " | ".join(heads) + " |",
             "|" + "|".join(":---" if i == 0 else "---:" for i in range(len(heads))) + "|"]
    for _, row in frame.iterrows():
        lines.append("| " + " | ".join(str(columns[h](row)).replace("|", "\\|") for h in heads) + " |")
    if frame.empty:
        lines.append("| " + " | ".join(["—"] * len(heads)) + " |")
    return "\n".join(lines + ["", note, ""])


# --------------------------------------------------------------------------- analyses

def load_model_frames(tokens_path: Path, samples_path: Path, name: str) -> tuple[pd.DataFrame, dict]:
    try:
        tokens = pd.read_parquet(tokens_path)
        samples = pd.read_parquet(samples_path, columns=["problem_id", "sample_index", "text"])
    except Exception as err:  # noqa: BLE001
        raise PipelineError(f"analysis input of {name} cannot be read ({str(err).splitlines()[0]})") from None
    tokens["problem_id"] = tokens["problem_id"].astype(str)
    texts = {(str(p), int(s)): t for p, s, t in zip(samples["problem_id"], samples["sample_index"], samples["text"])}
    keys = set(zip(tokens["problem_id"], tokens["sample_index"].astype(int)))
    missing = [k for k in keys if k not in texts]
    if missing:
        raise PipelineError(f"{samples_path}: no sample {missing[0]} for the token records of {name} ({tokens_path})")
    return tokens, texts


ALL_PIVOTAL = "all pivotal"


def pivotal_rows(name: str, ann: Annotation, categories: list[str], n_boot: int, seed: int,
                 pivotal: list[str] | None = None) -> list[dict]:
    """One comparison row per category, and one for the pivotal categories together."""
    occ = ann.occurrences
    clusters = response_key(occ)
    other = (occ["category"] == OTHER).to_numpy()
    pivotal = categories if pivotal is None else pivotal
    values = occ["entropy"].to_numpy()
    other_ci = cluster_bootstrap_mean_ci(values[other], clusters[other], n_boot, seed + 1)
    rows = []
    for cat in categories + [ALL_PIVOTAL]:
        if cat == ALL_PIVOTAL:
            mask = occ["category"].isin(pivotal).to_numpy()
        else:
            mask = (occ["category"] == cat).to_numpy()
        res = compare(values[mask], clusters[mask], values[other], clusters[other], n_boot, seed, ci_b=other_ci)
        rows.append({"model": name, "category": cat, **res,
                     "per_response": res["n"] / max(1, len(ann.responses))})
    return rows


def reflective_rows(name: str, ann: Annotation, kinds: list[str], n_boot: int, seed: int) -> dict:
    seg = ann.segments
    clusters = response_key(seg) if len(seg) else np.zeros(0, dtype=object)
    refl = seg["reflective"].to_numpy(dtype=bool) if len(seg) else np.zeros(0, dtype=bool)
    ent = seg["mean_entropy"].to_numpy(dtype=float) if len(seg) else np.zeros(0)
    res = compare(ent[refl], clusters[refl], ent[~refl], clusters[~refl], n_boot, seed)
    first = seg["first_entropy"].to_numpy(dtype=float) if len(seg) else np.zeros(0)
    res_first = compare(first[refl], clusters[refl], first[~refl], clusters[~refl], n_boot, seed + 2)
    resp = ann.responses
    row = {"model": name, "responses": len(resp), "segments": len(seg), **res,
           **{f"first_{k}": res_first[k] for k in ("mean", "ci_lo", "ci_hi", "mean_other", "ci_lo_other", "ci_hi_other",
                                                    "diff", "effect", "p_value")},
           "per_response": float(resp["n_reflective"].mean()) if len(resp) else math.nan,
           "share_responses": float((resp["n_reflective"] > 0).mean()) if len(resp) else math.nan}
    for kind in kinds:
        row[f"count_{kind}"] = int(seg["kinds"].str.split(",").apply(lambda ks, k=kind: k in ks).sum()) if len(seg) else 0
    return row


def sample_rows(frame: pd.DataFrame, limit: int, seed: int) -> pd.DataFrame:
    if len(frame) <= limit:
        return frame
    idx = np.sort(np.random.default_rng(seed).choice(len(frame), size=limit, replace=False))
    return frame.iloc[idx]


def rarity_analysis(annotations: dict[str, Annotation], models: list[str], cfg: dict, embedder_factory,
                    n_boot: int, seed: int):
    """Rows of the rare table, the per-sentence frame and the Fig. 3 panels."""
    rc = cfg["rarity"]
    rl_models = [m for m in models if m != BASE]
    if BASE not in annotations or not rl_models:
        return [], pd.DataFrame(), []
    base_seg = sample_rows(annotations[BASE].segments, rc["max_sentences"], seed)
    if base_seg.empty:
        raise PipelineError("rarity: the base model's analysed responses hold no sentences")
    embedder = embedder_factory()
    rows, sentence_frames, panels = [], [], []
    from pipeline.analysis.rarity import pca_2d, rarity_scores

    base_texts = list(base_seg["text"])
    for name in rl_models:
        seg = sample_rows(annotations[name].segments, rc["max_sentences"], seed + 1)
        if seg.empty:
            rows.append({"model": name, "sentences": 0})
            continue
        distance, rare, threshold, rl_vecs, base_vecs = rarity_scores(
            embedder.embed, base_texts, list(seg["text"]), rc["k"], rc["rare_fraction"])
        clusters = response_key(seg)
        ent = seg["mean_entropy"].to_numpy(dtype=float)
        res = compare(ent[rare], clusters[rare], ent[~rare], clusters[~rare], n_boot, seed)
        examples = (seg.assign(distance=distance)[rare].drop_duplicates("text")
                    .sort_values(["distance", "text"], ascending=[False, True])["text"].head(3).tolist())
        rows.append({"model": name, "sentences": len(seg), "rare": int(rare.sum()), "threshold": threshold,
                     "mean_distance": float(distance.mean()), "mean_distance_rare": float(distance[rare].mean()) if rare.any() else math.nan,
                     **res, "examples": " ⏐ ".join(e.replace("\n", " ") for e in examples)})
        sentence_frames.append(seg[["problem_id", "sample_index", "segment", "text", "n_tokens", "mean_entropy", "reflective"]]
                               .assign(model=name, distance=distance, rare=rare))
        # Fig. 3: distinct sentences, projected together.
        rl_unique, first = np.unique(np.asarray(seg["text"], dtype=object), return_index=True)
        both = pca_2d(np.vstack([base_vecs, rl_vecs[first]]))
        panels.append({"model": name, "base": both[: len(base_vecs)], "rl": both[len(base_vecs):], "rare": rare[first]})
    sentences = pd.concat(sentence_frames, ignore_index=True) if sentence_frames else pd.DataFrame()
    return rows, sentences, panels


def summary_rows(models, annotations, pivotal, reflective, rare) -> list[dict]:
    rows = []
    for name in models:
        resp = annotations[name].responses
        tokens = int(resp["n_tokens"].sum())
        piv = next((r for r in pivotal if r["model"] == name and r["category"] == ALL_PIVOTAL), {})
        per_cat = {f"pivotal_diff_{r['category']}": r["diff"] for r in pivotal
                   if r["model"] == name and r["category"] != ALL_PIVOTAL}
        refl = next((r for r in reflective if r["model"] == name), {})
        rr = next((r for r in rare if r["model"] == name), {})
        rows.append({
            "model": name, "responses": len(resp), "tokens": tokens,
            "mean_entropy": float((resp["mean_entropy"].fillna(0) * resp["n_tokens"]).sum() / tokens) if tokens else math.nan,
            "response_length": float(resp["n_tokens"].mean()) if len(resp) else math.nan,
            "pivotal_per_response": piv.get("per_response", math.nan),
            "pivotal_diff": piv.get("diff", math.nan), "pivotal_p": piv.get("p_value", math.nan),
            "pivotal_effect": piv.get("effect", math.nan), **per_cat,
            "reflective_per_response": refl.get("per_response", math.nan),
            "reflective_diff": refl.get("diff", math.nan), "reflective_p": refl.get("p_value", math.nan),
            "reflective_effect": refl.get("effect", math.nan),
            "rare_diff": rr.get("diff", math.nan), "rare_p": rr.get("p_value", math.nan), "rare_effect": rr.get("effect", math.nan),
            "repetition": float(resp["repetition"].mean()) if len(resp) else math.nan,
        })
    return rows


# --------------------------------------------------------------------------- tables

def write_table(frame: pd.DataFrame, md: str, tables_dir: Path, name: str) -> None:
    io.write_text(tables_dir / f"exploration_{name}.csv", frame.to_csv(index=False, float_format="%.6g"))
    io.write_text(tables_dir / f"exploration_{name}.md", md)


def summary_md(frame: pd.DataFrame, categories: list[str]) -> str:
    return markdown(frame, {
        "Model": lambda r: r["model"], "Responses": lambda r: int(r["responses"]), "Tokens": lambda r: int(r["tokens"]),
        "Mean H": lambda r: fmt(r["mean_entropy"]), "Length": lambda r: fmt(r["response_length"], 1),
        "Pivotal / resp.": lambda r: fmt(r["pivotal_per_response"], 2),
        **{f"ΔH {c}": (lambda r, c=c: fmt(r.get(f"pivotal_diff_{c}", math.nan))) for c in categories},
        "Reflective / resp.": lambda r: fmt(r["reflective_per_response"], 2),
        "ΔH reflective (p)": lambda r: f"{fmt(r['reflective_diff'], 3)} ({fmt_p(r['reflective_p'])})",
        "ΔH rare (p)": lambda r: f"{fmt(r['rare_diff'], 3)} ({fmt_p(r['rare_p'])})",
        "Repetition": lambda r: fmt(r["repetition"], 3),
    }, "Exploration summary", "Mean H: token entropy (nats) of the analysed responses. ΔH <category>: mean entropy of the "
       "category's words minus all other tokens (p-values in the pivotal-token table); ΔH reflective: reflective minus "
       "other segments; ΔH rare: rare minus other sentences (RL models only). p: two-sided Mann–Whitney U. "
       "Repetition: repeated n-gram fraction.")


def pivotal_md(frame: pd.DataFrame) -> str:
    return markdown(frame, {
        "Model": lambda r: r["model"], "Category": lambda r: r["category"], "n": lambda r: int(r["n"]),
        "Per resp.": lambda r: fmt(r["per_response"], 2),
        "Mean H [95% CI]": lambda r: fmt_ci(r["mean"], r["ci_lo"], r["ci_hi"]),
        "Other tokens H": lambda r: fmt_ci(r["mean_other"], r["ci_lo_other"], r["ci_hi_other"]),
        "ΔH": lambda r: fmt(r["diff"]), "Effect r": lambda r: fmt(r["effect"], 2), "p": lambda r: fmt_p(r["p_value"]),
    }, "Pivotal tokens: entropy per category vs all other tokens",
       "n: word occurrences (entropy of each word's first token, or the mean over its tokens with "
       "`word_entropy: mean`); all pivotal: the categories of `analysis.pivotal` together. Other tokens: tokens no "
       "category word touches. CI: percentile bootstrap over responses. Effect r: rank-biserial correlation of the "
       "Mann–Whitney U test (+1 = every category token above every other token).")


def reflective_md(frame: pd.DataFrame, kinds: list[str]) -> str:
    return markdown(frame, {
        "Model": lambda r: r["model"], "Segments": lambda r: int(r["segments"]), "Reflective": lambda r: int(r["n"]),
        "Per resp.": lambda r: fmt(r["per_response"], 3), "Share of resp.": lambda r: fmt(r["share_responses"], 3),
        **{k: (lambda r, k=k: int(r[f"count_{k}"])) for k in kinds},
        "Reflective H [95% CI]": lambda r: fmt_ci(r["mean"], r["ci_lo"], r["ci_hi"]),
        "Other segments H": lambda r: fmt_ci(r["mean_other"], r["ci_lo_other"], r["ci_hi_other"]),
        "ΔH": lambda r: fmt(r["diff"]), "Effect r": lambda r: fmt(r["effect"], 2), "p": lambda r: fmt_p(r["p_value"]),
        "First-token H: reflective / other": lambda r: f"{fmt(r['first_mean'])} / {fmt(r['first_mean_other'])}",
        "ΔH first (p)": lambda r: f"{fmt(r['first_diff'])} ({fmt_p(r['first_p_value'])})",
    }, "Reflective actions: segment entropy", "A segment (sentence / step line) is reflective when one of the configured "
       "patterns matches it; its entropy is the mean over its tokens (CI: bootstrap over responses; p: Mann–Whitney U). "
       "First-token H: entropy of the segment's first token, where the model chose what comes next. Per pattern: "
       "segments matching it.")


def rare_md(frame: pd.DataFrame) -> str:
    return markdown(frame, {
        "Model": lambda r: r["model"], "Sentences": lambda r: int(r["sentences"]), "Rare": lambda r: int(r.get("rare", 0)),
        "Threshold": lambda r: fmt(r.get("threshold", math.nan)), "Mean kNN dist.": lambda r: fmt(r.get("mean_distance", math.nan)),
        "Rare H [95% CI]": lambda r: fmt_ci(r.get("mean", math.nan), r.get("ci_lo", math.nan), r.get("ci_hi", math.nan)),
        "Other H": lambda r: fmt_ci(r.get("mean_other", math.nan), r.get("ci_lo_other", math.nan), r.get("ci_hi_other", math.nan)),
        "ΔH": lambda r: fmt(r.get("diff", math.nan)), "Effect r": lambda r: fmt(r.get("effect", math.nan), 2),
        "p": lambda r: fmt_p(r.get("p_value", math.nan)), "Most distant": lambda r: f"`{r['examples']}`" if r.get("examples") else "—",
    }, "Rare behaviours: entropy of rare RL sentences", "Distance: mean cosine distance of an RL sentence to its k nearest "
       "base-model sentences; the top fraction by distance is rare. Entropy: mean token entropy of the sentence.")


def checkpoints_md(frame: pd.DataFrame, categories: list[str]) -> str:
    """First and last snapshot of every method, means over seeds."""
    cols = ["pivotal_per_response", "pivotal_entropy", "reflective_per_response", "reflective_entropy",
            "response_length", "repetition", "mean_entropy", "accuracy"]
    rows = []
    for method, g in frame.groupby("method", sort=False):
        for rollout in sorted({g["rollout"].min(), g["rollout"].max()}):
            sub = g[g["rollout"] == rollout]
            rows.append({"method": method, "rollout": rollout, "seeds": sub["seed"].nunique(), **sub[cols].mean().to_dict()})
    table = pd.DataFrame(rows)
    return markdown(table, {
        "Method": lambda r: r["method"], "Rollout": lambda r: int(r["rollout"]), "Seeds": lambda r: int(r["seeds"]),
        "Pivotal / resp.": lambda r: fmt(r["pivotal_per_response"], 2), "Pivotal H": lambda r: fmt(r["pivotal_entropy"]),
        "Reflective / resp.": lambda r: fmt(r["reflective_per_response"], 3), "Reflective H": lambda r: fmt(r["reflective_entropy"]),
        "Length": lambda r: fmt(r["response_length"], 1), "Repetition": lambda r: fmt(r["repetition"]),
        "Mean H": lambda r: fmt(r["mean_entropy"]), "Accuracy": lambda r: fmt(r["accuracy"]),
    }, "Across training snapshots (first and last)", "Samples from every snapshot on the same fixed problems and seed; "
       "all snapshots are in `exploration_checkpoints.csv` and the checkpoint figure.")


# --------------------------------------------------------------------------- run

def run(args: argparse.Namespace) -> int:
    cfg = fill_defaults(json.loads(args.analysis_json))
    patterns = compile_patterns(cfg)
    if not (len(args.tokens) == len(args.samples) == len(args.models)):
        raise PipelineError("--tokens, --samples and --models must have the same length")
    if len(set(args.models)) != len(args.models):
        raise PipelineError("--models: duplicate model name")
    categories = list(patterns.categories)
    kinds = list(patterns.reflective)
    seed, n_boot = cfg["seed"], cfg["bootstrap"]

    annotations = {}
    for path, samples, name in zip(args.tokens, args.samples, args.models):
        tokens, texts = load_model_frames(path, samples, name)
        annotations[name] = annotate(tokens, texts, patterns, cfg["repetition"])
        log.info("%s: %d responses, %d segments", name, len(annotations[name].responses), len(annotations[name].segments))

    pivotal = [r for name in args.models
               for r in pivotal_rows(name, annotations[name], categories, n_boot, seed, list(patterns.pivotal))]
    reflective = [reflective_rows(name, annotations[name], kinds, n_boot, seed) for name in args.models]

    def embedder_factory():
        import torch

        from pipeline.analysis.rarity import Embedder

        torch.set_num_threads(args.threads)
        rc = cfg["rarity"]
        return Embedder(rc["backend"], args.base_model, rc["model_path"], rc["batch_size"], args.trust_remote_code)

    rare, sentences, panels = rarity_analysis(annotations, list(args.models), cfg, embedder_factory, n_boot, seed)
    summary = summary_rows(args.models, annotations, pivotal, reflective, rare)

    from pipeline.analysis import figures

    tables, figs = args.tables_dir, args.figures_dir
    piv_frame, refl_frame = pd.DataFrame(pivotal), pd.DataFrame(reflective)
    rare_frame = pd.DataFrame(rare, columns=None if rare else ["model", "sentences"])
    write_table(pd.DataFrame(summary), summary_md(pd.DataFrame(summary), categories), tables, "summary")
    write_table(piv_frame, pivotal_md(piv_frame), tables, "pivotal")
    write_table(refl_frame, reflective_md(refl_frame, kinds), tables, "reflective")
    write_table(rare_frame, rare_md(rare_frame), tables, "rare")
    rare_for_fig = rare_frame[rare_frame.get("sentences", 0) > 0] if "mean" in rare_frame else pd.DataFrame(
        columns=["model", "mean", "ci_lo", "ci_hi", "mean_other", "ci_lo_other", "ci_hi_other"])
    figures.entropy_bars(piv_frame, refl_frame, rare_for_fig, list(args.models), figs / "exploration_entropy.png")
    figures.embedding_scatter(panels, figs / "exploration_embeddings.png", seed=seed)
    if args.sentences_out:
        io.write_parquet(args.sentences_out, sentences)
    if args.checkpoints:
        frames = []
        for path in args.checkpoints:
            try:
                frames.append(pd.read_csv(path))
            except Exception as err:  # noqa: BLE001
                raise PipelineError(f"checkpoint table {path} cannot be read ({str(err).splitlines()[0]})") from None
        ck = pd.concat(frames, ignore_index=True).sort_values(["method", "seed", "rollout"], kind="stable")
        methods = args.methods or list(dict.fromkeys(ck["method"]))
        ck["method"] = pd.Categorical(ck["method"], categories=list(dict.fromkeys(methods + list(ck["method"]))), ordered=True)
        ck = ck.sort_values(["method", "seed", "rollout"], kind="stable")
        ck["method"] = ck["method"].astype(str)
        write_table(ck, checkpoints_md(ck, categories), tables, "checkpoints")
        figures.checkpoint_curves(ck, methods, figs / "exploration_checkpoints.png")
    log.info("exploration analysis: %d models, tables in %s, figures in %s", len(args.models), tables, figs)
    return 0
