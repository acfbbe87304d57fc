"""The dress-rehearsal fixtures (issue 15): local hub-layout mirrors of every dataset and the tiny
Qwen2 "hub" model, checked the way the paper configs would use them.

* Mirrors: exact repository layouts (files, splits, configs, columns, dtypes) and quirks;
  every mirror loads through ``pipeline.data.hub`` and the real ``datasets`` library with the
  paper configs' loader entries where only the data location and ``expected_rows`` differ.
* Model: built once per session and cached in pytest's cache directory, keyed by the source of
  ``rehearsal/`` (the first build takes about two minutes of CPU, later runs reuse it); bf16 on
  disk, Qwen2 architecture, the Qwen2.5 chat template, an exact tokenizer round trip through
  ``AutoTokenizer``, loading with ``pipeline.models.load_model_and_tokenizer``, and sampling with
  ``pipeline.sampling.hf.HFSampler`` that yields well-formed, sometimes correct answers under the
  ``answer_line`` and ``math_verify`` graders (graded in worker processes, as the score stage does).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import yaml

from pipeline.data.hub import BENCHMARKS, DAPO_PREFIX, load_benchmark_from_config, provenance
from pipeline.data.prepare_hub import loader_config
from rehearsal import mirrors as mirrors_mod
from rehearsal.mirrors import LocalHub, overlay, read_manifest, write_mirrors

ROOT = Path(__file__).resolve().parents[1]
PAPER_CONFIGS = sorted((ROOT / "configs" / "paper").glob("*.yaml"))

EXPECTED_FILES = {
    "HuggingFaceH4/MATH-500": ["README.md", "test.jsonl"],
    "HuggingFaceH4/aime_2024": ["README.md", "data/train-00000-of-00001.parquet"],
    "opencompass/AIME2025": ["README.md", "aime2025-I.jsonl", "aime2025-II.jsonl"],
    "AI-MO/aimo-validation-amc": ["README.md", "data/train-00000-of-00001.parquet"],
    "BytedTsinghua-SIA/DAPO-Math-17k": ["README.md", "data/dapo-math-17k.parquet"],
    "math-ai/aime25": ["README.md", "test.jsonl"],
    "math-ai/aime24": ["README.md", "test-00000-of-00001.parquet"],
    "math-ai/amc23": ["README.md", "test-00000-of-00001.parquet"],
}
# Column -> datasets feature (repr of the Value / List / dict), per benchmark, as on the hub.
S = "Value('string')"
EXPECTED_FEATURES = {
    "math500": {"problem": S, "solution": S, "answer": S, "subject": S, "level": "Value('int64')", "unique_id": S},
    "aime24": {"id": "Value('int64')", "problem": S, "solution": S, "answer": S, "url": S, "year": S},
    "aime25": {"question": S, "answer": S},
    "amc23": {"id": "Value('int64')", "problem": S, "answer": "Value('float64')", "url": S},
    "dapo17k": {
        "data_source": S, "prompt": "List({'content': Value('string'), 'role': Value('string')})", "ability": S,
        "reward_model": "{'ground_truth': Value('string'), 'style': Value('string')}",
        "extra_info": "{'index': Value('string')}",
    },
    "aime25_mathai": {"problem": S, "answer": S, "id": S},
    "aime24_mathai": {"id": "Value('int64')", "problem": S, "solution": S, "url": S},
    "amc23_mathai": {"id": "Value('int64')", "question": S, "answer": "Value('float64')", "url": S},
}


@pytest.fixture(scope="session")
def mirrors(tmp_path_factory):
    root = tmp_path_factory.mktemp("mirrors")
    write_mirrors(root, seed=0)
    return root


@pytest.fixture
def cache(tmp_path):
    return str(tmp_path / "hf-cache")


def _digest(root: Path) -> dict[str, str]:
    return {str(f.relative_to(root)): hashlib.sha256(f.read_bytes()).hexdigest() for f in sorted(root.rglob("*")) if f.is_file()}


# --------------------------------------------------------------------------- mirrors


def test_mirrors_are_deterministic_and_seeded(mirrors, tmp_path):
    write_mirrors(tmp_path / "again", seed=0)
    assert _digest(tmp_path / "again") == _digest(mirrors)
    write_mirrors(tmp_path / "other", seed=1)
    assert _digest(tmp_path / "other")["HuggingFaceH4/MATH-500/test.jsonl"] != _digest(mirrors)["HuggingFaceH4/MATH-500/test.jsonl"]


def test_mirrors_cli(tmp_path, capsys):
    assert mirrors_mod.main(["--out", str(tmp_path / "m"), "--seed", "0"]) == 0
    assert "dapo17k" in capsys.readouterr().out
    assert (tmp_path / "m" / "mirrors.json").is_file()


def test_manifest_pins_each_repository(mirrors):
    manifest = read_manifest(mirrors)
    assert set(manifest["benchmarks"]) == set(BENCHMARKS)
    for name, spec in BENCHMARKS.items():
        repo = manifest["repos"][spec.hub_id]
        assert repo["revision"] == spec.known_revision and repo["path"] == spec.hub_id
        assert manifest["benchmarks"][name]["hub_id"] == spec.hub_id
    assert {hub_id: repo["files"] for hub_id, repo in manifest["repos"].items()} == EXPECTED_FILES


@pytest.mark.parametrize("name", sorted(BENCHMARKS))
def test_mirror_layout_splits_configs_and_dtypes(mirrors, name, cache):
    """Each mirror, opened with the real ``datasets`` as a repository directory, has exactly the
    hub's files, splits, configs, columns and dtypes."""
    import datasets

    spec = BENCHMARKS[name]
    repo = mirrors / spec.hub_id
    assert sorted(str(f.relative_to(repo)) for f in repo.rglob("*") if f.is_file()) == EXPECTED_FILES[spec.hub_id]
    for config in spec.configs:
        loaded = datasets.load_dataset(str(repo), config, cache_dir=cache)
        assert list(loaded) == [spec.split], (name, config)
        features = loaded[spec.split].features
        assert {k: repr(v) for k, v in features.items()} == EXPECTED_FEATURES[name], (name, config)
        assert list(features) == list(EXPECTED_FEATURES[name])  # column order too
    if spec.configs != (None,):
        with pytest.raises(ValueError, match="Config name is missing"):
            datasets.load_dataset(str(repo), cache_dir=cache)  # like the hub: AIME2025 needs a config


def test_mirror_quirks(mirrors):
    import pyarrow.parquet as pq

    # AIME 2025: the degree sign sits in AIME2025-II, not in I.
    part_i = [json.loads(x) for x in (mirrors / "opencompass/AIME2025/aime2025-I.jsonl").read_text().splitlines()]
    part_ii = [json.loads(x) for x in (mirrors / "opencompass/AIME2025/aime2025-II.jsonl").read_text().splitlines()]
    assert [r["answer"] for r in part_ii if "\\circ" in r["answer"]] == ["70^\\circ"]
    assert not any("\\circ" in r["answer"] for r in part_i)
    # AMC: float answers, one of them not an integer; 2022 and 2023 halves like the 83-row set.
    amc = pq.read_table(mirrors / "AI-MO/aimo-validation-amc/data/train-00000-of-00001.parquet").to_pylist()
    assert all(isinstance(r["answer"], float) for r in amc) and any(r["answer"] % 1 for r in amc)
    years = [("2022_AMC" in r["url"], "2023_AMC" in r["url"]) for r in amc]
    assert all(a != b for a, b in years) and 0 < sum(b for _, b in years) < len(amc)
    amc40 = pq.read_table(mirrors / "math-ai/amc23/test-00000-of-00001.parquet").to_pylist()
    assert len(amc40) == sum(b for _, b in years) and all("2023_AMC" in r["url"] for r in amc40)
    # MATH-500: levels 1-5, subjects, unique ids test/<subject>/<n>.json, a LaTeX answer.
    math = [json.loads(x) for x in (mirrors / "HuggingFaceH4/MATH-500/test.jsonl").read_text().splitlines()]
    assert {r["level"] for r in math} == {1, 2, 3, 4, 5} and len({r["subject"] for r in math}) == 7
    assert all(r["unique_id"].startswith("test/") and r["unique_id"].endswith(".json") for r in math)
    assert any(r["answer"].startswith("\\frac") for r in math)
    # DAPO: ~10x duplicates with distinct uuids, DAPO's instruction, one conflicting problem.
    dapo = pq.read_table(mirrors / "BytedTsinghua-SIA/DAPO-Math-17k/data/dapo-math-17k.parquet").to_pylist()
    contents = [r["prompt"][0]["content"] for r in dapo]
    assert all(c.startswith(DAPO_PREFIX) for c in contents) and all(r["prompt"][0]["role"] == "user" for r in dapo)
    assert len(dapo) >= 8 * len(set(contents)) and len({r["extra_info"]["index"] for r in dapo}) == len(dapo)
    answers: dict[str, set] = {}
    for c, r in zip(contents, dapo):
        answers.setdefault(c, set()).add(r["reward_model"]["ground_truth"])
    assert sum(len(a) > 1 for a in answers.values()) == 1
    assert {r["data_source"] for r in dapo} == {"math_dapo"} and {r["ability"] for r in dapo} == {"MATH"}
    # math-ai/aime24: no answer column; the answer is the solution's last box.
    aime24 = pq.read_table(mirrors / "math-ai/aime24/test-00000-of-00001.parquet").to_pylist()
    assert all("\\boxed{" in r["solution"] for r in aime24)


def test_problems_are_simple_arithmetic_in_latex_prose(mirrors):
    math = [json.loads(x) for x in (mirrors / "HuggingFaceH4/MATH-500/test.jsonl").read_text().splitlines()]
    assert all("$" in r["problem"] for r in math)
    numeric = [int(r["answer"]) for r in math if r["answer"].isdigit()]
    assert len(numeric) == len(math) - 1 and max(numeric) <= 999


@pytest.mark.parametrize("config", PAPER_CONFIGS, ids=lambda p: p.stem)
def test_every_mirror_loads_like_the_paper_config_with_only_location_and_counts_changed(config, mirrors, cache):
    cfg = yaml.safe_load(config.read_text())
    entries = {**{f"suite {s}": e for s, e in cfg["suites"].items()}, "train_data": cfg["train_data"]}
    manifest = read_manifest(mirrors)
    for where, entry in entries.items():
        patched = {**entry, **overlay(mirrors, entry["benchmark"]), "cache_dir": cache}
        changed = {k for k in patched if patched.get(k) != entry.get(k)}
        assert changed == {"path", "expected_rows", "cache_dir"}, where  # nothing but data location and counts
        frame = load_benchmark_from_config(entry["benchmark"], loader_config(patched))
        prov = provenance(frame)
        assert prov["source"] == "path" and prov["revision"] == entry["revision"], where
        expected = manifest["benchmarks"][entry["benchmark"]]
        if entry["benchmark"] == "dapo17k":
            assert prov["raw_rows"] == expected["raw_rows"] and prov["distinct_problems"] == expected["expected_rows"]
            assert len(frame) == expected["kept_rows"] and prov["dropped_conflicting"] == 1
            assert not any(p.startswith("Solve the following") for p in frame["problem"])
        else:
            assert len(frame) == expected["expected_rows"], where
    # The loader's own counts stay asserted: without the overlay's expected_rows the mirror is refused.
    from pipeline.errors import PipelineError

    with pytest.raises(PipelineError, match="expected 30 rows, got 16"):
        load_benchmark_from_config("aime25", {"path": overlay(mirrors, "aime25")["path"], "cache_dir": cache})


def test_prepare_hub_data_stage_on_the_mirrors(mirrors, tmp_path):
    """The data stage as the rehearsal runs it: decontamination finds the planted overlap, DAPO's
    conflicting problem is dropped, provenance is in the report."""
    from pipeline.cli import main

    cfg = yaml.safe_load(PAPER_CONFIGS[0].read_text())
    suites = {s: {**{k: v for k, v in e.items() if k not in ("k", "n_samples")}, **overlay(mirrors, e["benchmark"])}
              for s, e in cfg["suites"].items()}
    train = {**cfg["train_data"], **overlay(mirrors, "dapo17k")}
    args = ["prepare-hub-data", "--suites-json", json.dumps(suites), "--train-json", json.dumps(train),
            "--suites-dir", str(tmp_path / "suites"), "--train-out", str(tmp_path / "train.parquet"),
            "--report", str(tmp_path / "report.json")]
    assert main(args) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["total_overlap"] == 1 and report["suites"]["math500"]["overlap"] == 1
    assert report["provenance"]["train"]["conflicting_problems"][0]["answers"]
    assert main(args + ["--fail-on-overlap"]) == 2


def test_local_hub_serves_only_the_pinned_revision(mirrors, cache):
    hub = LocalHub(mirrors)
    spec = BENCHMARKS["amc23"]
    ds = hub.load_dataset(spec.hub_id, None, split="train", revision=spec.known_revision, cache_dir=cache)
    assert len(ds) == read_manifest(mirrors)["benchmarks"]["amc23"]["expected_rows"]
    with pytest.raises(ValueError, match="Revision"):
        hub.load_dataset(spec.hub_id, None, split="train", revision="f" * 40, cache_dir=cache)
    with pytest.raises(FileNotFoundError):
        hub.load_dataset("nobody/nothing", None, split="train", revision=spec.known_revision, cache_dir=cache)
    assert [c["revision"] for c in hub.calls] == [spec.known_revision, "f" * 40, spec.known_revision]
    # In-process route for the rehearsal: the loader's hub path goes through the stand-in.
    with hub.installed():
        frame = load_benchmark_from_config("amc23", {"revision": spec.known_revision, "cache_dir": cache,
                                                     "expected_rows": len(ds)})
    assert provenance(frame)["source"] == "hub" and hub.calls[-1]["revision"] == spec.known_revision


# --------------------------------------------------------------------------- the tiny model


def test_model_build_is_deterministic(tmp_path):
    """Same seed, same files (a short SFT; the full build runs in the session fixture)."""
    from rehearsal.tiny_model import build_tiny_model

    for name in ("a", "b"):
        build_tiny_model(tmp_path / name, seed=0, steps=3, report=False)
    a, b = _digest(tmp_path / "a"), _digest(tmp_path / "b")
    a.pop("build_info.json"), b.pop("build_info.json")  # holds wall times
    assert a == b


def test_model_is_a_bf16_qwen2_hub_snapshot(tiny_model, tmp_path):
    from safetensors import safe_open

    from pipeline.models import check_model_dir, fetch_base_model

    files = {f.name for f in tiny_model.iterdir()}
    assert {"config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
            "special_tokens_map.json", "vocab.json", "merges.txt", "README.md"} <= files
    config = json.loads((tiny_model / "config.json").read_text())
    assert config["architectures"] == ["Qwen2ForCausalLM"] and config["model_type"] == "qwen2"
    assert config["dtype"] == config["torch_dtype"] == "bfloat16"
    head_dim = config["hidden_size"] // config["num_attention_heads"]
    assert head_dim >= 32 and config["num_key_value_heads"] < config["num_attention_heads"]  # GQA, vLLM-CPU ok
    assert config["tie_word_embeddings"] is False and config["max_position_embeddings"] == 512
    with safe_open(str(tiny_model / "model.safetensors"), "pt") as f:
        dtypes = {str(f.get_slice(k).get_dtype()) for k in f.keys()}
        assert "lm_head.weight" in f.keys()  # untied: its own tensor
    assert dtypes == {"BF16"}
    generation = json.loads((tiny_model / "generation_config.json").read_text())
    assert generation["max_new_tokens"] == 2048 and generation["do_sample"] is False
    # fetch-base-model takes it as base_model.hub.local_path.
    check_model_dir(tiny_model)
    linked = fetch_base_model(tmp_path / "base", None, None, str(tiny_model))
    assert (linked / "model.safetensors").is_file()


def test_tokenizer_round_trip_and_chat_template(tiny_model, mirrors):
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer

    from rehearsal.tiny_model import QWEN25_CHAT_TEMPLATE, ROUNDTRIP_SAMPLES

    raw = Tokenizer.from_file(str(tiny_model / "tokenizer.json"))
    tok = AutoTokenizer.from_pretrained(tiny_model)
    assert type(tok).__name__ == "Qwen2Tokenizer"
    config = json.loads((tiny_model / "tokenizer_config.json").read_text())
    assert config["chat_template"] == QWEN25_CHAT_TEMPLATE == tok.chat_template
    assert config["tokenizer_class"] == "Qwen2Tokenizer"
    assert tok.eos_token == tok.pad_token == "<|endoftext|>" and tok.bos_token is None
    templates = {yaml.safe_load(p.read_text())["prompt"]["template"] for p in PAPER_CONFIGS}
    assert len(templates) == 2
    problems = [r["problem"] for r in map(json.loads, (mirrors / "HuggingFaceH4/MATH-500/test.jsonl").read_text().splitlines())]
    samples = list(ROUNDTRIP_SAMPLES) + [t.format(problem=p) for t in templates for p in problems]
    for s in samples:
        ids = raw.encode(s).ids
        assert tok(s).input_ids == ids, s
        assert tok.decode(ids) == raw.decode(ids, skip_special_tokens=False) == s, s
    # Qwen2.5's chat layout, special tokens as single ids.
    text = tok.apply_chat_template([{"role": "user", "content": "What is $1+1$?"}], tokenize=False, add_generation_prompt=True)
    assert text == ("<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
                    "<|im_start|>user\nWhat is $1+1$?<|im_end|>\n<|im_start|>assistant\n")
    ids = tok(text).input_ids
    assert ids.count(tok.convert_tokens_to_ids("<|im_start|>")) == 3 and ids.count(tok.convert_tokens_to_ids("<|im_end|>")) == 2
    config_json = json.loads((tiny_model / "config.json").read_text())
    assert config_json["vocab_size"] > len(tok)  # embedding rows beyond the tokenizer, like Qwen2.5-7B's


@pytest.mark.parametrize(("template_of", "grader"), [("cheng2025_table2_qwen25_7b", "answer_line"),
                                                     ("cheng2025_table2_qwen25_math_7b", "math_verify")])
def test_model_samples_well_formed_and_sometimes_correct_answers(tiny_model, mirrors, template_of, grader):
    import torch

    from pipeline.eval.grading import grade_many
    from pipeline.models import load_model_and_tokenizer
    from pipeline.prompts import render_prompts
    from pipeline.sampling.base import SamplingParams
    from pipeline.sampling.hf import HFSampler

    cfg = yaml.safe_load((ROOT / "configs" / "paper" / f"{template_of}.yaml").read_text())
    model, tok = load_model_and_tokenizer(tiny_model)
    assert {p.dtype for p in model.parameters()} == {torch.float32}  # fp32 master weights from a bf16 file
    problems, answers = [], []
    for name in ("math500", "aime25", "amc23"):
        frame = load_benchmark_from_config(name, overlay(mirrors, name))
        problems += frame["problem"].tolist()
        answers += frame["answer"].tolist()
    prompts = render_prompts(problems, cfg["prompt"]["template"], tok, cfg["prompt"]["chat_template"])
    params = SamplingParams(n=4, temperature=cfg["sampling"]["temperature"], top_p=cfg["sampling"]["top_p"],
                            max_new_tokens=64, seed=0)
    outs = HFSampler(model, tok, batch_size=512).generate(prompts, params)
    completions = [c for o in outs for c in o.completions]
    texts = [c.text for c in completions]
    golds = [a for a in answers for _ in range(params.n)]
    verdicts = grade_many(texts, golds, grader=grader, timeout_s=10.0, workers=2)
    correct = sum(v.correct for v in verdicts)
    eos = sum(c.finish_reason == "stop" for c in completions) / len(completions)
    mean_tokens = sum(c.num_tokens for c in completions) / len(completions)
    marker = "Answer:" if grader == "answer_line" else "\\boxed{"
    well_formed = sum(marker in t for t in texts) / len(texts)
    assert eos > 0.9 and mean_tokens <= 48 and well_formed > 0.9, (eos, mean_tokens, well_formed, texts[:3])
    assert 0 < correct < len(texts), (correct, texts[:5])
