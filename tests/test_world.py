import random
import re

import pytest

from pipeline.eval.grading import grade
from pipeline.toy.world import evaluate, generate_problems, make_problem, render_problem, solution_trace


def test_render_is_left_to_right_with_parentheses():
    assert render_problem((12,), ()) == "12"
    assert render_problem((12, 7), ("+",)) == "12+7"
    assert render_problem((12, 7, 3, 5), ("+", "*", "-")) == "((12+7)*3)-5"
    assert evaluate((12, 7, 3, 5), ("+", "*", "-")) == 52


@pytest.mark.parametrize("difficulty", [1, 2, 3, 4, 5])
def test_problems_have_d_operations_and_bounded_values(difficulty):
    rng = random.Random(difficulty)
    for _ in range(200):
        p = make_problem(rng, difficulty, "x", "t", max_value=99)
        assert len(p.operators) == difficulty
        value = p.operands[0]
        for op, b in zip(p.operators, p.operands[1:]):
            value = {"+": value + b, "-": value - b, "*": value * b}[op]
            assert 0 <= value <= 99
        assert p.answer == str(value)


def test_traces_are_correct_and_gradable_with_reflection():
    rng = random.Random(0)
    problems = generate_problems(1, [1, 2, 3, 4, 5], 300, "t")
    traces = [solution_trace(p, rng, slip_prob=0.3, check_prob=0.5) for p in problems]
    for p, t in zip(problems, traces):
        assert t.splitlines()[-1] == f"Answer: {p.answer}"
        assert grade(t, p.answer, "answer_line")
        # every step line that is not a slip is arithmetically right
        for line in t.splitlines():
            m = re.fullmatch(r"(?:wait, )?(\d+)([+\-*])(\d+)=(\d+)", line)
            if m and line.startswith("wait"):
                a, op, b, c = m.groups()
                assert evaluate((int(a), int(b)), (op,)) == int(c)
    assert any("wait, " in t for t in traces)
    assert any("check: " in t for t in traces)


def test_generation_is_deterministic_distinct_and_excludes():
    a = generate_problems(3, [2, 3], 50, "s")
    b = generate_problems(3, [2, 3], 50, "s")
    assert [p.problem for p in a] == [p.problem for p in b]
    assert len({p.problem for p in a}) == 50
    c = generate_problems(3, [2, 3], 50, "s", exclude={p.problem for p in a[:10]})
    assert not {p.problem for p in c} & {p.problem for p in a[:10]}


def test_sft_micro_batches_take_the_step_of_one_pass(tiny_model_dir):
    """Length-sorted micro-batches with accumulated gradients: the same SFT step as one
    padded pass over the batch (the loss is normalised over the whole batch's targets)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from pipeline.toy.build import sft, sft_examples

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    problems = generate_problems(0, [1, 3, 5], 24, "sft")
    examples = sft_examples(tok, "{problem}\n", problems, random.Random(0), {"slip_prob": 0.3, "check_prob": 0.3})
    assert len({len(ids) for ids, _ in examples}) > 5  # lengths vary: micro-batches differ in width
    cfg = {"seed": 0, "lr": 1e-3, "weight_decay": 0.0, "steps": 2, "warmup_steps": 1, "batch_size": 12}
    runs = {}
    for micro in (12, 5):
        model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
        history = sft(model, examples, {**cfg, "micro_batch_size": micro}, tok.pad_token_id, progress=False)
        runs[micro] = (history, {k: v.detach().clone() for k, v in model.state_dict().items()})
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir).state_dict()
    moved = max(float((runs[12][1][k] - base[k]).abs().max()) for k in base)
    diff = max(float((runs[12][1][k] - runs[5][1][k]).abs().max()) for k in base)
    assert moved > 1e-4 and diff < 1e-3 * moved
    assert runs[5][0][0]["loss"] == pytest.approx(runs[12][0][0]["loss"], rel=1e-5)


def test_a_custom_toy_suite_must_use_the_toy_alphabet(tmp_path):
    import json

    import pytest

    from pipeline.data.prepare import toy_suites
    from pipeline.errors import PipelineError

    path = tmp_path / "mine.jsonl"
    path.write_text(json.dumps({"q": "Wie viel ist 3·4?", "a": "12"}) + "\n")
    world = {"seed": 1, "max_value": 99, "two_digit_prob": 0.3, "train_split": {"problems": 8, "difficulties": [1]}}
    suites = {"mine": {"benchmark": "custom", "data_files": str(path), "fields": {"problem": "q", "answer": "a"}}}
    with pytest.raises(PipelineError, match=r"suite mine: problem of mine-0 has characters the toy tokenizer lacks: '·'"):
        toy_suites(world, suites)


def test_toy_world_suites_are_generated_or_custom():
    import copy
    from pathlib import Path

    import pytest
    import yaml

    from pipeline.config import ConfigError, check_config

    cfg = yaml.safe_load((Path(__file__).resolve().parents[1] / "config.yaml").read_text())
    bad = copy.deepcopy(cfg)
    bad["suites"]["toy-aime"] = {"benchmark": "aime24", "k": 4, "n_samples": 4}
    with pytest.raises(ConfigError, match="suites.toy-aime.benchmark': a toy-world suite is generated"):
        check_config(bad)
    bad["suites"]["toy-aime"] = {"benchmark": "custom", "data_files": "x.jsonl", "k": 4, "n_samples": 4}
    with pytest.raises(ConfigError, match="suites.toy-aime.fields"):
        check_config(bad)


def test_a_weak_sft_seed_is_named():
    """Seeds whose SFT did not learn the easiest level (as two of the AVX2 study's five did)."""
    from pipeline.toy.build import weak_sft_warning

    assert weak_sft_warning({1: 0.9, 2: 0.89, 5: 0.75}, seed=0) is None
    message = weak_sft_warning({1: 0.27, 2: 0.43, 5: 0.15}, seed=4)
    assert message.startswith("SFT seed 4 learned the task poorly: greedy accuracy 0.27 on level 1")
    assert weak_sft_warning({}, seed=0) is None
