"""Stage ``prepare-hub-data``: the paper-scale suites and training set from real datasets.

Each suite and the training set are loaded through :mod:`pipeline.data.hub` (pinned hub
revision, or local ``data_files`` / ``path`` mirrors in the dataset's own layout), mapped
to the normalised schema, row counts asserted. The training set is checked for overlap
with every evaluation suite (normalised text): the overlap is logged and written to a
report; ``decontamination.fail: true`` in the config turns it into an error.

The report also carries each dataset's provenance (``"provenance": {"suites": {suite:
...}, "train": ...}``: hub id, configs, split, the configured revision, where the rows
were read from, raw and kept row counts, DAPO's dropped conflicting problems), so a run
records exactly which revision of which repository it used. The Parquet files themselves
carry no provenance (a moved mirror must not change their bytes).
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from pipeline import io
from pipeline.errors import PipelineError
from pipeline.data.hub import check_decontamination, decontamination_report, load_benchmark_from_config, provenance

log = logging.getLogger(__name__)

LOADER_KEYS = ("revision", "data_files", "path", "cache_dir", "expected_rows",
               "repo_id", "config", "split", "fields", "answer_from_boxed")


def loader_config(entry: dict) -> dict:
    return {k: entry[k] for k in LOADER_KEYS if entry.get(k) is not None}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--suites-json", required=True, help="the suites config slice (JSON)")
    parser.add_argument("--train-json", required=True, help="the train_data config slice (JSON; null: no training set)")
    parser.add_argument("--fail-on-overlap", action="store_true")
    parser.add_argument("--suites-dir", required=True)
    parser.add_argument("--train-out", default=None, help="the training set Parquet (needed unless --train-json is null)")
    parser.add_argument("--report", required=True, help="decontamination report JSON")


def run(args: argparse.Namespace) -> int:
    suites_cfg, train_cfg = json.loads(args.suites_json), json.loads(args.train_json)
    frames = {}
    for name, entry in suites_cfg.items():
        # a custom suite's ids and source carry the suite's name
        extra = {"name": name} if entry["benchmark"] == "custom" else {}
        frames[name] = load_benchmark_from_config(entry["benchmark"], {**loader_config(entry), **extra})
        log.info("suite %s (%s): %d problems", name, entry["benchmark"], len(frames[name]))
    if train_cfg is None:  # evaluation only: no training set to load or decontaminate against
        report = {"train": None, "suites": {}, "provenance": {"suites": {n: provenance(f) for n, f in frames.items()}, "train": None}}
        io.write_json(args.report, report)
        for name, frame in frames.items():
            io.write_parquet(Path(args.suites_dir) / f"{name}.parquet", _without_attrs(frame))
        return 0
    if args.train_out is None:
        raise PipelineError("--train-out: needed with a training set (--train-json)")
    train = load_benchmark_from_config(train_cfg["benchmark"], loader_config(train_cfg))
    log.info("training set (%s): %d problems", train_cfg["benchmark"], len(train))
    report = decontamination_report(train, frames)
    report["provenance"] = {
        "suites": {name: provenance(frame) for name, frame in frames.items()},
        "train": provenance(train),
    }
    io.write_json(args.report, report)
    check_decontamination(report, fail=args.fail_on_overlap)  # raises only after the report is written
    for name, frame in frames.items():
        io.write_parquet(Path(args.suites_dir) / f"{name}.parquet", _without_attrs(frame))
    io.write_parquet(args.train_out, _without_attrs(train))
    return 0


def _without_attrs(frame):
    """``frame`` without ``attrs`` (pandas would store them in the Parquet metadata)."""
    frame = frame.copy(deep=False)
    frame.attrs = {}
    return frame
