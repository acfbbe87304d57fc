"""Optional metric sinks beside metrics.jsonl (which stays the record): TensorBoard, W&B.

``logging.tensorboard: true`` in the config makes every training job write its per-update
metrics as scalars under ``results/train/<method>/seed<s>/tensorboard/`` (needs the
``tensorboard`` package: ``pip install -e '.[tracking]'``); ``tensorboard --logdir
results/train`` then shows every run side by side. ``logging.wandb: {project: P}`` logs the
same to Weights & Biases (run name ``<method>/seed<s>``, the resolved method as its config;
``mode: offline`` by default: runs are written under ``…/wandb/`` and uploaded with
``wandb sync``; ``online`` needs a login). Only the main process logs.
"""

from __future__ import annotations

import math
from pathlib import Path

from pipeline.errors import PipelineError


def open_tensorboard(directory: str | Path, run: str):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as err:  # torch's writer needs the tensorboard package
        raise PipelineError(
            f"logging.tensorboard: the tensorboard package is not installed ({err}); pip install -e '.[tracking]'"
        ) from None
    writer = SummaryWriter(log_dir=str(directory))
    writer.add_text("run", run)
    return writer


def log_scalars(writer, record: dict, step: int) -> None:
    """Every finite number of one metrics record, as ``train/<key>`` at the update index."""
    for key, value in record.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or key in ("update", "rollout"):
            continue
        if math.isfinite(value):
            writer.add_scalar(f"train/{key}", value, step)


class WandbSink:
    """A W&B run that takes the same records as :func:`log_scalars`."""

    def __init__(self, project: str, name: str, directory: str | Path, mode: str, config: dict):
        try:
            import wandb
        except ImportError as err:
            raise PipelineError(f"logging.wandb: the wandb package is not installed ({err}); pip install -e '.[tracking]'") from None
        Path(directory).mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(project=project, name=name, dir=str(directory), mode=mode, config=config, reinit="create_new")

    def add_scalar(self, tag: str, value: float, step: int) -> None:
        self.run.log({tag: value}, step=step)

    def close(self) -> None:
        self.run.finish()


class Sinks:
    """Every configured sink behind one ``add_scalar`` / ``close`` (for :func:`log_scalars`)."""

    def __init__(self, sinks: list):
        self.sinks = sinks

    def add_scalar(self, tag: str, value: float, step: int) -> None:
        for sink in self.sinks:
            sink.add_scalar(tag, value, step)

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()


def open_sinks(args, run: str, spec: dict):
    """The sinks the trainer's arguments ask for, or None."""
    sinks = []
    if args.tensorboard_dir:
        sinks.append(open_tensorboard(args.tensorboard_dir, run))
    if args.wandb_project:
        sinks.append(WandbSink(args.wandb_project, run, args.wandb_dir, args.wandb_mode, spec))
    return Sinks(sinks) if sinks else None
