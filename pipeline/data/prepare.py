"""Stage ``prepare-data``: write the evaluation suites and the RL training split.

Every problem file, toy or real, has the same normalised schema (see
:mod:`pipeline.data.schema`), so sampling, grading and tables never know which world
they are in. Toy suites are generated from seeds derived from the world seed and the
suite name; the training split never contains an evaluation problem.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import pandas as pd

from pipeline import io
from pipeline.data.schema import problems_frame
from pipeline.errors import PipelineError
from pipeline.toy.world import generate_problems

log = logging.getLogger(__name__)


def custom_toy_suite(name: str, entry: dict) -> pd.DataFrame:
    """A toy-world suite from your own file (``benchmark: custom``), through the same loader,
    normalisation and checks as the hub world's; every character must be one the toy
    tokenizer has (an unknown one would reach the model as <unk>)."""
    from pipeline.data.hub import load_benchmark_from_config
    from pipeline.data.prepare_hub import _without_attrs, loader_config
    from pipeline.toy.tokenizer import CHARACTERS

    frame = load_benchmark_from_config("custom", {**loader_config(entry), "name": name})
    known = set(CHARACTERS)
    for column in ("problem", "answer"):
        for pid, text in zip(frame["id"], frame[column]):
            unknown = sorted(set(text) - known)
            if unknown:
                raise PipelineError(
                    f"suite {name}: {column} of {pid} has characters the toy tokenizer lacks: "
                    f"{', '.join(map(repr, unknown))} (it knows digits, ASCII letters, space, newline and + - * / ( ) = : , . ?)"
                )
    return _without_attrs(frame)  # pandas would store the loader's provenance in the Parquet metadata


def toy_suites(toy: dict, suites: dict) -> tuple[dict[str, pd.DataFrame], pd.DataFrame]:
    seen: set[str] = set()
    frames = {}
    for name, suite in suites.items():
        if suite.get("benchmark") == "custom":
            frames[name] = custom_toy_suite(name, suite)
            seen |= set(frames[name]["problem"])  # the training split and SFT never contain them
            continue
        problems = generate_problems(
            io.stable_seed(toy["seed"], "suite", name), suite["difficulties"], suite["problems"],
            source=name, exclude=seen, max_value=toy["max_value"],
            two_digit_prob=suite.get("two_digit_prob", toy["two_digit_prob"]),
        )
        seen |= {p.problem for p in problems}
        frames[name] = problems_frame(problems)
    split = toy["train_split"]
    train = generate_problems(
        io.stable_seed(toy["seed"], "train"), split["difficulties"], split["problems"],
        source="toy-train", exclude=seen, max_value=toy["max_value"], two_digit_prob=toy["two_digit_prob"],
    )
    return frames, problems_frame(train)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--world", required=True, choices=["toy"])
    parser.add_argument("--world-json", required=True, help="the world's config slice (JSON)")
    parser.add_argument("--suites-json", required=True, help="the suites config slice (JSON)")
    parser.add_argument("--suites-dir", required=True, help="directory for <suite>.parquet")
    parser.add_argument("--train-out", required=True, help="Parquet file for the RL training split")


def run(args: argparse.Namespace) -> int:
    world_cfg, suites_cfg = json.loads(args.world_json), json.loads(args.suites_json)
    frames, train = toy_suites(world_cfg, suites_cfg)
    overlap = set(train["problem"]) & set().union(*(set(f["problem"]) for f in frames.values()))
    if overlap:  # impossible by construction; guard against a future change breaking it
        raise PipelineError(f"training split overlaps evaluation suites on {len(overlap)} problems")
    for name, frame in frames.items():
        io.write_parquet(Path(args.suites_dir) / f"{name}.parquet", frame)
        log.info("suite %s: %d problems, difficulty %s", name, len(frame), sorted(frame["difficulty"].unique()))
    io.write_parquet(args.train_out, train)
    log.info("training split: %d problems", len(train))
    return 0
