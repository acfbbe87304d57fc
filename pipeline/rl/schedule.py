"""Learning-rate schedules of the policy optimizer, as pure functions of the update index.

Neither paper schedules the RL learning rate (Cheng et al. and Zhang et al. use a constant
lr, verl's default), so ``constant`` with no warm-up is the default; warm-up and cosine
decay are offered because verl (``lr_warmup_steps``, ``warmup_style: cosine``) and TRL
(``lr_scheduler_type``, ``warmup_ratio``) do. The lr of policy update ``u`` (0-based,
counting policy updates only: a PPO critic warm-up does not advance it) out of ``total``:

* warm-up (``warmup_updates`` = w > 0): ``lr * (u + 1) / w`` for ``u < w`` — linear, and
  the first update already moves (lr / w), unlike schedules that start at exactly 0 (our
  choice);
* then ``constant``: ``lr``; ``cosine``: ``lr * (m + (1 - m) * (1 + cos(pi * p)) / 2)`` with
  ``p = (u - w) / max(total - w - 1, 1)`` clipped to [0, 1] (the last update reaches
  ``m * lr``) and ``m = min_lr_ratio``.

Computed from the update index, the lr needs no scheduler state in a checkpoint: a resumed
run recomputes it. The value of every update is logged as ``lr`` in metrics.jsonl.
"""

from __future__ import annotations

import math
from typing import Callable

ScheduleFn = Callable[[float, int, int, int, float], float]
SCHEDULES: dict[str, ScheduleFn] = {}


def register_schedule(name: str):
    def wrap(fn: ScheduleFn) -> ScheduleFn:
        SCHEDULES[name] = fn
        return fn

    return wrap


def _warmup(lr: float, update: int, warmup: int) -> float | None:
    return lr * (update + 1) / warmup if update < warmup else None


@register_schedule("constant")
def constant_lr(lr: float, update: int, total: int, warmup: int = 0, min_lr_ratio: float = 0.0) -> float:
    """``lr`` after an optional linear warm-up."""
    warm = _warmup(lr, update, warmup)
    return lr if warm is None else warm


@register_schedule("cosine")
def cosine_lr(lr: float, update: int, total: int, warmup: int = 0, min_lr_ratio: float = 0.0) -> float:
    """Linear warm-up, then cosine decay from ``lr`` to ``min_lr_ratio * lr`` at the last update."""
    warm = _warmup(lr, update, warmup)
    if warm is not None:
        return warm
    progress = min(max((update - warmup) / max(total - warmup - 1, 1), 0.0), 1.0)
    return lr * (min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress)))


def learning_rate(lr: float, schedule: dict, update: int, total: int) -> float:
    """The lr of policy update ``update`` of ``total`` under ``schedule`` (the config's
    ``training.lr_schedule``: ``{name, warmup_updates, min_lr_ratio}``)."""
    name = schedule.get("name", "constant")
    if name not in SCHEDULES:
        raise ValueError(f"unknown lr schedule {name!r}; known: {sorted(SCHEDULES)}")
    return SCHEDULES[name](lr, update, total, int(schedule.get("warmup_updates", 0)), float(schedule.get("min_lr_ratio", 0.0)))
