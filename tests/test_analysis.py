"""Exploration analysis on constructed token streams with known entropies: category means,
the significance test, segmentation, the regexes, kNN rarity, repetition rate (docs/methods.md §9)."""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import pytest

from pipeline.analysis import pivotal, reflective, repetition, stats
from pipeline.analysis.annotate import OTHER, annotate, annotate_response, response_key
from pipeline.analysis.rarity import knn_mean_distance, pca_2d, rare_labels, rarity_scores
from pipeline.analysis.settings import check_analysis_config, compile_patterns, fill_defaults, term_pattern
from pipeline.analysis.token_entropy import select_problems, select_samples
from pipeline.errors import PipelineError


def char_stream(text: str, entropy_of):
    """A character tokenizer's view of ``text``: spans and an entropy per character from ``entropy_of(i, ch)``."""
    starts = np.arange(len(text))
    return starts, starts + 1, np.array([entropy_of(i, c) for i, c in enumerate(text)], dtype=float)


def toy_cfg(**over):
    cfg = fill_defaults({
        "categories": {"reflective_words": ["wait", "check"], "answer": ["Answer"], "operators": ["+", "-", "*", "/"]},
        "segment_pattern": "\\n+",
        "reflective_patterns": {"wait": "^wait\\b", "check": "^check\\b"},
        **over,
    })
    return cfg


# --------------------------------------------------------------------------- word lists


def test_term_patterns_match_whole_words_and_literal_symbols():
    flags = re.IGNORECASE
    assert [m.group() for m in re.finditer(term_pattern("so"), "So also so, soap so", flags)] == ["So", "so", "so"]
    assert len(re.findall(term_pattern("+"), "1+2+3")) == 2
    assert re.findall(term_pattern("double-check"), "let me double-check it") == ["double-check"]
    assert not re.findall(term_pattern("then"), "athens")


def test_category_means_on_a_constructed_stream():
    # Known entropies: the first character of every category word 1.0, its other characters 0.5,
    # every other character 0.1.
    text = "So first, x+1. However then so."
    words = {m.start(): m.end() for m in re.finditer(r"So|first|However|then|so", text)}
    inside = {i for s, e in words.items() for i in range(s, e)}
    starts, ends, ent = char_stream(text, lambda i, c: 1.0 if i in words else (0.5 if i in inside else 0.1))
    cats = compile_patterns(fill_defaults({"categories": {"causal": ["so"], "contrastive": ["however"],
                                                          "sequential": ["first", "then"], "ops": ["+"]}})).categories
    per_cat, other = pivotal.categorize(text, starts, ends, ent, cats, "first")
    assert per_cat["causal"].tolist() == [1.0, 1.0]  # "So" and "so": first-token entropy
    assert per_cat["contrastive"].tolist() == [1.0]
    assert per_cat["sequential"].tolist() == [1.0, 1.0]
    assert per_cat["ops"].tolist() == [0.1]  # "+" is one token of entropy 0.1
    # Other tokens: every character no category word touches (word interiors are excluded).
    assert len(other) == len(text) - len(inside) - 1 and np.allclose(other, 0.1)
    mean_cats, _ = pivotal.categorize(text, starts, ends, ent, cats, "mean")
    assert mean_cats["contrastive"][0] == pytest.approx((1.0 + 6 * 0.5) / 7)


def test_multi_token_word_uses_the_token_holding_its_first_character():
    # BPE-like tokens: " because" is one token starting at the space before the word.
    text = "yes because no"
    starts, ends = np.array([0, 3, 11]), np.array([3, 11, 14])
    ent = np.array([0.2, 0.9, 0.3])
    values, covered = pivotal.occurrence_entropies(starts, ends, ent, pivotal.match_spans(text, re.compile("because")))
    assert values.tolist() == [0.9] and covered.tolist() == [False, True, False]


# --------------------------------------------------------------------------- statistics


def test_mann_whitney_effect_size_and_p_value_by_hand():
    res = stats.mann_whitney([5, 6, 7], [1, 2, 3])
    assert res["u"] == 9 and res["effect"] == 1.0
    assert res["p_value"] == pytest.approx(0.1)  # exact: 2 / C(6, 3)
    assert stats.mann_whitney([1, 2, 3], [5, 6, 7])["effect"] == -1.0
    assert math.isnan(stats.mann_whitney([], [1.0])["p_value"])


def test_significance_test_separates_shifted_groups_and_not_identical_ones():
    rng = np.random.default_rng(0)
    high, low = rng.normal(1.0, 0.1, 200), rng.normal(0.2, 0.1, 2000)
    res = stats.mann_whitney(high, low)
    assert res["p_value"] < 1e-50 and res["effect"] > 0.95
    same = stats.mann_whitney(rng.normal(0, 1, 300), rng.normal(0, 1, 300))
    assert same["p_value"] > 0.01 and abs(same["effect"]) < 0.15


def test_cluster_bootstrap_ci():
    values = np.array([1.0, 1.0, 3.0, 3.0, 2.0, 2.0])
    clusters = np.array([0, 0, 1, 1, 2, 2])
    mean, lo, hi = stats.cluster_bootstrap_mean_ci(values, clusters, 500, seed=1)
    assert mean == 2.0 and 1.0 <= lo <= mean <= hi <= 3.0
    assert (mean, lo, hi) == stats.cluster_bootstrap_mean_ci(values, clusters, 500, seed=1)  # seeded
    _, lo1, hi1 = stats.cluster_bootstrap_mean_ci(values, np.zeros(6), 500)
    assert math.isnan(lo1) and math.isnan(hi1)  # one response: no interval
    assert math.isnan(stats.cluster_bootstrap_mean_ci([], [], 10)[0])


# --------------------------------------------------------------------------- segmentation and regexes


def test_segmentation_of_toy_lines_and_english_sentences():
    toy = "13+2=15\n15+3=18\n\nwait, 7*8=56\nAnswer: 56\n"
    spans = reflective.segment_spans(toy, re.compile(r"\n+"))
    assert [toy[s:e] for s, e in spans] == ["13+2=15", "15+3=18", "wait, 7*8=56", "Answer: 56"]
    english = "First, x = 2.5 here. Then y! Is it? Yes\n\nso done"
    sep = compile_patterns(fill_defaults({})).segment  # the default separator
    assert [english[s:e] for s, e in reflective.segment_spans(english, sep)] == [
        "First, x = 2.5 here.", "Then y!", "Is it?", "Yes", "so done"]
    assert reflective.segment_spans("", sep) == [] and reflective.segment_spans("\n\n", sep) == []


def test_tokens_are_assigned_to_the_segment_of_their_first_visible_character():
    text = "ab. cd\nef"
    spans = reflective.segment_spans(text, re.compile(r"\n+|(?<=[.!?])\s+"))
    # tokens: "ab" ".", " cd" (leading space), "\n" (whitespace only), "ef"
    owner = reflective.assign_tokens(text, [0, 2, 3, 6, 7], [2, 3, 6, 7, 9], spans)
    assert owner.tolist() == [0, 0, 1, -1, 2]


def test_reflective_regexes_default_and_toy():
    default = compile_patterns(fill_defaults({})).reflective
    def kinds(s):
        return reflective.reflective_kinds(s, default)
    assert kinds("Let me verify this result.") == ["verify"]
    assert kinds("Wait, that is wrong.") == ["wait"]
    assert kinds("I will double-check the sum.") == ["check"]
    assert kinds("Let me re-examine step 2.") == ["re-examine"]
    assert kinds("Let me reconsider.") == ["reconsider"]
    assert kinds("We keep waiting for x.") == [] and kinds("The answer is 4.") == []
    toy = compile_patterns(toy_cfg()).reflective
    assert reflective.reflective_kinds("wait, 7*8=56", toy) == ["wait"]
    assert reflective.reflective_kinds("check: 55/3=18", toy) == ["check"]
    assert reflective.reflective_kinds("7*8=55", toy) == []


def test_segment_entropies_and_reflective_flags():
    text = "1+2=3\nwait, 1+2=3\nAnswer: 3"
    # entropy 0.2 on the first line, 0.8 on the reflective line, 0.4 on the answer line
    line_of = np.cumsum([c == "\n" for c in text]) - np.array([c == "\n" for c in text])
    starts, ends, ent = char_stream(text, lambda i, c: [0.2, 0.8, 0.4][line_of[i]] if c != "\n" else 9.9)
    segs = reflective.segments_of(text, starts, ends, ent, re.compile(r"\n+"), compile_patterns(toy_cfg()).reflective)
    assert [s["text"] for s in segs] == ["1+2=3", "wait, 1+2=3", "Answer: 3"]
    assert [round(s["mean_entropy"], 6) for s in segs] == [0.2, 0.8, 0.4]  # newline tokens belong to no segment
    assert [s["reflective"] for s in segs] == [False, True, False] and segs[1]["kinds"] == "wait"
    assert segs[1]["first_entropy"] == 0.8


# --------------------------------------------------------------------------- rarity


def test_knn_rarity_labels_a_planted_outlier_sentence():
    rng = np.random.default_rng(0)
    centre = np.array([1.0, 0.0, 0.0, 0.0])
    def unit(x):
        return x / np.linalg.norm(x, axis=1, keepdims=True)
    base = unit(centre + 0.05 * rng.normal(size=(50, 4)))
    rl = unit(centre + 0.05 * rng.normal(size=(19, 4)))
    outlier = np.array([[0.0, 0.0, 1.0, 0.0]])  # orthogonal to every base sentence
    query = np.vstack([rl[:7], outlier, rl[7:]])
    dist = knn_mean_distance(query, base, k=5)
    assert dist.argmax() == 7 and dist[7] == pytest.approx(1.0 - np.sort(base @ outlier[0])[::-1][:5].mean())
    rare, threshold = rare_labels(dist, 0.05)  # ceil(0.05 * 20) = 1 sentence
    assert rare.tolist() == [i == 7 for i in range(20)] and threshold == dist[7]


def test_knn_counts_duplicates_and_uses_all_reference_when_k_exceeds_it():
    ref = np.array([[1.0, 0.0], [0.0, 1.0]])
    q = np.array([[1.0, 0.0]])
    # reference 0 written 4 times, reference 1 once: the 5 nearest are 4 x distance 0 and 1 x distance 1
    assert knn_mean_distance(q, ref, k=5, weights=[4, 1])[0] == pytest.approx(0.2)
    assert knn_mean_distance(q, ref, k=5)[0] == pytest.approx(0.5)  # only 2 references: mean of both
    with pytest.raises(PipelineError):
        knn_mean_distance(q, np.zeros((0, 2)), k=5)


def test_rare_labels_ties_and_zero_distance():
    rare, t = rare_labels(np.array([0.0, 0.0, 0.3, 0.3, 0.1]), 0.2)
    assert t == 0.3 and rare.tolist() == [False, False, True, True, False]  # equal distances, equal labels
    rare, t = rare_labels(np.zeros(5), 0.1)
    assert not rare.any()  # verbatim base sentences are never rare


def test_rarity_scores_with_a_toy_embedding():
    # Sentences embed by their first character: "wait..." lines sit far from arithmetic lines.
    def embed(sentences):
        v = np.array([[1.0, 0.0] if s[0].isdigit() else [0.0, 1.0] for s in sentences])
        return v
    base = ["1+2=3", "4+4=8", "1+2=3", "5-1=4"] * 5
    rl = ["1+2=3", "6+1=7", "wait, 6+1=7", "2*3=6"]
    dist, rare, _, rl_vecs, _ = rarity_scores(embed, base, rl, k=5, fraction=0.25)
    assert rare.tolist() == [False, False, True, False] and dist[2] == pytest.approx(1.0)
    assert rl_vecs.shape == (4, 2)


def test_pca_projection_is_deterministic():
    x = np.random.default_rng(3).normal(size=(40, 6)) * np.array([5, 2, 1, 1, 1, 1])
    a, b = pca_2d(x), pca_2d(x.copy())
    assert a.shape == (40, 2) and np.array_equal(a, b)
    assert a[:, 0].var() >= a[:, 1].var()


# --------------------------------------------------------------------------- repetition


def test_ngram_repetition_rate_on_constructed_strings():
    assert repetition.ngram_repetition_rate("abcabcabc", 3) == pytest.approx(1 - 3 / 7)
    assert repetition.ngram_repetition_rate("abcdefg", 4) == 0.0
    assert repetition.ngram_repetition_rate("abc", 4) == 0.0  # shorter than n
    assert repetition.ngram_repetition_rate("aaaaaa", 1) == pytest.approx(5 / 6)
    words = repetition.units_of("the cat the cat the cat", [], "word")
    assert repetition.ngram_repetition_rate(words, 2) == pytest.approx(1 - 2 / 5)
    with pytest.raises(ValueError):
        repetition.units_of("x", [], "sentence")


# --------------------------------------------------------------------------- annotation, settings, selection


def test_annotate_a_token_frame():
    texts = {("p1", 0): "1+2=3\nAnswer: 3", ("p1", 1): "1+2=4\nwait, 1+2=3\nAnswer: 3"}
    rows = []
    for (pid, sidx), text in texts.items():
        for i, c in enumerate(text):
            rows.append({"model": "m", "problem_id": pid, "sample_index": sidx, "position": i, "token_id": ord(c),
                         "token": c, "start": i, "end": i + 1, "entropy": 1.0 if c in "wA" else 0.1, "logprob": 0.0})
    patterns = compile_patterns(toy_cfg(pivotal=["reflective_words", "answer"]))
    ann = annotate(pd.DataFrame(rows).sample(frac=1, random_state=0), texts, patterns, {"n": 4, "unit": "token"})
    resp = ann.responses.set_index("sample_index")
    assert resp.loc[0, "n_reflective"] == 0 and resp.loc[1, "n_reflective"] == 1
    assert resp.loc[1, "n_pivotal"] == 2 and resp.loc[1, "n_operators"] == 2  # operators are not pivotal here
    assert resp.loc[1, "pivotal_entropy_sum"] == pytest.approx(2.0)
    occ = ann.occurrences
    assert sorted(occ[occ["category"] == "reflective_words"]["entropy"]) == [1.0]
    assert np.allclose(occ[occ["category"] == OTHER]["entropy"], 0.1)
    assert len(set(response_key(ann.segments))) == 2
    _, _, summary = annotate_response(texts[("p1", 1)], [1] * 5, [0, 1, 2, 3, 4], [1, 2, 3, 4, 5], [0.1] * 5,
                                      patterns, {"n": 4, "unit": "token"})
    assert summary["repetition"] == pytest.approx(1.0 - 1 / 2)


def test_settings_defaults_and_errors():
    cfg = fill_defaults({})
    assert cfg["rarity"] == {"backend": "policy_hidden", "model_path": None, "k": 5, "rare_fraction": 0.1,
                             "max_sentences": 5000, "batch_size": 256}
    assert cfg["repetition"] == {"n": 4, "unit": "token"}
    assert set(cfg["categories"]) == {"causal", "contrastive", "sequential", "reasoning_verbs"}
    with pytest.raises(PipelineError, match="analysis.reflective_patterns.bad"):
        compile_patterns(fill_defaults({"reflective_patterns": {"bad": "(unclosed"}}))
    with pytest.raises(PipelineError, match="analysis.pivotal"):
        compile_patterns(fill_defaults({"pivotal": ["nope"]}))
    with pytest.raises(PipelineError, match="analysis.rarity.k"):
        fill_defaults({"rarity": {"k": 0}})
    with pytest.raises(PipelineError, match="empty string"):
        compile_patterns(fill_defaults({"segment_pattern": "x*"}))
    config = {"suites": {"a": {}}, "methods": {"grpo": {}}, "seeds": [0], "analysis": fill_defaults({"methods": ["ppo"]})}
    with pytest.raises(PipelineError, match="analysis.methods"):
        check_analysis_config(config)
    config["analysis"] = fill_defaults({"suite": "b"})
    with pytest.raises(PipelineError, match="analysis.suite"):
        check_analysis_config(config)


def test_config_files_validate_with_their_analysis_sections():
    from pathlib import Path

    import yaml

    from pipeline.config import check_config

    root = Path(__file__).resolve().parents[1]
    toy = check_config(yaml.safe_load((root / "config.yaml").read_text()))
    assert toy["analysis"]["segment_pattern"] == "\\n+" and "reflective_words" in toy["analysis"]["categories"]
    for path in sorted((root / "configs" / "paper").glob("*.yaml")):
        cfg = check_config(yaml.safe_load(path.read_text()))
        assert cfg["analysis"]["categories"]["causal"] == ["because", "therefore", "thus", "so"], path.name


def test_problem_and_sample_selection_is_seeded():
    ids = [f"q{i}" for i in range(10)]
    a = select_problems(ids, 4, seed=3)
    assert a == select_problems(ids, 4, seed=3) and len(a) == 4 and a == sorted(a, key=ids.index)
    assert select_problems(ids, 20, seed=0) == ids
    samples = pd.DataFrame({"problem_id": ["q1", "q1", "q1", "q0", "q2"], "sample_index": [2, 0, 1, 0, 0],
                            "text": list("abcde")})
    chosen = select_samples(samples, ["q1", "q0"], 2)
    assert list(zip(chosen["problem_id"], chosen["sample_index"])) == [("q1", 0), ("q1", 1), ("q0", 0)]
