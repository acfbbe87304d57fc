"""Optional metric sinks beside metrics.jsonl (which stays the record): TensorBoard.

``logging.tensorboard: true`` in the config makes every training job write its per-update
metrics as scalars under ``results/train/<method>/seed<s>/tensorboard/`` (needs the
``tensorboard`` package: ``pip install -e '.[tracking]'``); ``tensorboard --logdir
results/train`` then shows every run side by side.
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
