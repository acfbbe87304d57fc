"""Stage ``fetch-base-model``: the paper-scale base model, from a pinned hub revision or a local mirror."""

from __future__ import annotations

import argparse
import json

from pipeline.models import fetch_base_model


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--hub-json", required=True, help="the base_model.hub config slice (JSON)")
    parser.add_argument("--out", required=True)


def run(args: argparse.Namespace) -> int:
    cfg = json.loads(args.hub_json)
    fetch_base_model(args.out, cfg.get("repo_id"), cfg.get("revision"), cfg.get("local_path"))
    return 0
