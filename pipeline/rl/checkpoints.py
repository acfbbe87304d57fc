"""A training run's durable state: checkpoints, random-number state, preemption, snapshots.

The trainer (:mod:`pipeline.rl.trainer`) calls these; nothing here knows a method.

* **Checkpoints** (below): atomic directories with an integrity marker; a restarted job
  resumes from the newest intact one of the same run configuration (:func:`run_id`).
* **Random state**: every global generator (torch, CUDA, Python, NumPy) is saved with a
  checkpoint and restored on resume, so a resumed run continues exactly.
* **SIGTERM** (:class:`SigtermGuard`): a SLURM preemption or time limit lets the policy update
  in progress finish, then the trainer checkpoints and exits with :data:`PREEMPTED_EXIT_CODE`,
  which makes Snakemake retry the job.
* **Non-finite state** is never persisted (:class:`NonFiniteError`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import random
import re
import shutil
import signal
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pipeline import io
from pipeline.errors import PipelineError
from pipeline.models import model_fingerprint

log = logging.getLogger(__name__)


class NonFiniteError(PipelineError):
    """A loss, advantage, gradient or parameter became nan/inf: training stops at once,
    before anything non-finite can reach a checkpoint."""


def check_state_finite(obj, path: str = "state") -> None:
    """Refuse to persist a nan/inf anywhere in a checkpoint (weights, optimizer moments)."""
    if isinstance(obj, torch.Tensor):
        if obj.is_floating_point() and not bool(torch.isfinite(obj).all()):
            raise NonFiniteError(f"non-finite values in {path}; the checkpoint is not written")
    elif isinstance(obj, dict):
        for key, value in obj.items():
            check_state_finite(value, f"{path}.{key}")
    elif isinstance(obj, (list, tuple)):
        for i, value in enumerate(obj):
            check_state_finite(value, f"{path}[{i}]")
    elif isinstance(obj, float) and not math.isfinite(obj):
        raise NonFiniteError(f"non-finite value {obj} in {path}; the checkpoint is not written")


# --------------------------------------------------------------------------- checkpoints
#
# A checkpoint is a directory ``step-<rollouts done>`` (at a rollout boundary) or
# ``step-<rollouts done>-u<updates done>`` (written on SIGTERM in the middle of a rollout)
# holding ``state.pt`` (torch.save, loadable with weights_only=True), ``metrics.jsonl``
# (the records of every update it contains) and, written last, ``COMPLETE``: JSON with
# the counters and the sha256 and size of both files. It is built in a temporary
# directory, fsynced and renamed into place; a directory without a valid ``COMPLETE``
# (a crash while writing, a truncated copy) is never loaded.

CHECKPOINT_FORMAT = 1
MARKER = "COMPLETE"
PREEMPTED_EXIT_CODE = 75  # EX_TEMPFAIL: "try again later" (SIGTERM, e.g. SLURM preemption)
_NAME = re.compile(r"^step-(\d+)(?:-u(\d+))?$")


class Preempted(Exception):
    """SIGTERM was received; the trainer checkpoints and exits with PREEMPTED_EXIT_CODE."""


@dataclass
class Checkpoint:
    path: Path
    state: dict
    metrics: str  # the metrics JSONL of the updates the state contains


def checkpoint_name(rollout: int, update: int, partial: bool) -> str:
    return f"step-{rollout:06d}-u{update:08d}" if partial else f"step-{rollout:06d}"


def _order(path: Path) -> tuple[int, int, int]:
    m = _NAME.match(path.name)
    return int(m[1]), m[2] is not None, int(m[2] or 0)


def list_checkpoints(ckpt_dir: Path) -> list[Path]:
    """Checkpoint directories, oldest first (complete or not)."""
    if not ckpt_dir.is_dir():
        return []
    return sorted((p for p in ckpt_dir.iterdir() if p.is_dir() and _NAME.match(p.name)), key=_order)


def save_checkpoint(ckpt_dir: Path, state: dict, metrics: str, keep: int) -> Path:
    """Write a checkpoint atomically (temp dir, fsync, ``COMPLETE`` last, rename), then keep
    the newest ``keep`` complete ones. Refuses a state holding a nan/inf."""
    check_state_finite({k: v for k, v in state.items() if k not in ("rng", "partial")})
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    name = checkpoint_name(state["rollout"], state["update"], state.get("partial") is not None)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{name}.", dir=ckpt_dir))
    try:
        with io.atomic_stream(tmp / "state.pt") as fh:
            torch.save(state, fh)
        files = {"state.pt": {"sha256": fh.sha256.hexdigest(), "bytes": fh.tell()}}
        data = metrics.encode("utf-8")
        files["metrics.jsonl"] = {"sha256": io.write_bytes(tmp / "metrics.jsonl", data), "bytes": len(data)}
        io.write_json(tmp / MARKER, {
            "format": CHECKPOINT_FORMAT, "rollout": state["rollout"], "update": state["update"],
            "partial": state.get("partial") is not None, "files": files,
        })
        os.chmod(tmp, 0o755)
        io.fsync_dir(tmp)
        io.replace_dir(tmp, ckpt_dir / name)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    prune_checkpoints(ckpt_dir, keep)
    return ckpt_dir / name


def prune_checkpoints(ckpt_dir: Path, keep: int) -> None:
    """Keep the newest ``keep`` complete checkpoints; remove every checkpoint older than them."""
    complete = [p for p in list_checkpoints(ckpt_dir) if (p / MARKER).is_file()]
    if len(complete) <= keep:
        return
    oldest_kept = _order(complete[-keep])
    for old in list_checkpoints(ckpt_dir):
        if _order(old) < oldest_kept:
            shutil.rmtree(old, ignore_errors=True)


def verify_checkpoint(path: Path) -> dict:
    """The ``COMPLETE`` record of a checkpoint whose files match it; ValueError otherwise."""
    try:
        marker = json.loads((path / MARKER).read_text())
    except FileNotFoundError:
        raise ValueError(f"no {MARKER} marker (incompletely written)") from None
    except (OSError, ValueError) as err:
        raise ValueError(f"unreadable {MARKER} marker ({err})") from None
    if not isinstance(marker, dict) or marker.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"unknown checkpoint format {marker.get('format') if isinstance(marker, dict) else marker!r}")
    for fname, meta in marker["files"].items():
        f = path / fname
        if not f.is_file():
            raise ValueError(f"{fname} is missing")
        if f.stat().st_size != meta["bytes"]:
            raise ValueError(f"{fname} has {f.stat().st_size} bytes, {MARKER} says {meta['bytes']}")
        if io.file_sha256(f) != meta["sha256"]:
            raise ValueError(f"{fname} does not match its sha256 in {MARKER}")
    return marker


def load_latest_checkpoint(ckpt_dir: Path, run_id: str | None = None, max_rollout: int | None = None) -> Checkpoint | None:
    """The newest complete, intact checkpoint of this run (``run_id``); others are skipped.

    Checkpoints of another run configuration (a changed method, seed, data or base model)
    and checkpoints past this run's last rollout (``max_rollout``, a shortened run) are
    removed: they can never be resumed by this job.
    """
    for candidate in reversed(list_checkpoints(ckpt_dir)):
        try:
            marker = verify_checkpoint(candidate)
            state = torch.load(candidate / "state.pt", map_location="cpu", weights_only=True)
            if (state.get("rollout"), state.get("update")) != (marker["rollout"], marker["update"]):
                raise ValueError("state.pt does not hold the counters of its marker")
            metrics = (candidate / "metrics.jsonl").read_text()
        except Exception as err:  # noqa: BLE001 - any defect: fall back to the previous checkpoint
            log.warning("skipping checkpoint %s: %s", candidate, str(err).splitlines()[0] if str(err) else type(err).__name__)
            continue
        if run_id is not None and state.get("run") != run_id:
            log.warning("removing checkpoint %s: it belongs to another run configuration", candidate)
            shutil.rmtree(candidate, ignore_errors=True)
            continue
        if max_rollout is not None and state["rollout"] > max_rollout:
            log.warning("removing checkpoint %s: it is past this run's %d rollouts", candidate, max_rollout)
            shutil.rmtree(candidate, ignore_errors=True)
            continue
        return Checkpoint(candidate, state, metrics)
    return None


def rng_state() -> dict:
    """Every global random state (the loop seeds its own draws, but a model or library may not)."""
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": {
            "name": np_state[0], "keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4]),
        },
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]))
    if "cuda" in state and torch.cuda.is_available() and torch.cuda.device_count() == len(state["cuda"]):
        torch.cuda.set_rng_state_all(state["cuda"])


class SigtermGuard:
    """SIGTERM (a SLURM preemption or time limit, Snakemake stopping) sets a flag: the
    trainer finishes the policy update in progress, checkpoints and exits with
    PREEMPTED_EXIT_CODE. During sampling (which changes no state) it interrupts at once."""

    def __init__(self, interruptible_sampling: bool = True):
        self.requested = False
        self._interruptible = False
        self._previous = None
        # Several processes must leave their collectives together: they never interrupt
        # sampling, they finish the rollout step and agree to stop at its end.
        self._sampling_interruptible = interruptible_sampling

    def __enter__(self) -> "SigtermGuard":
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)

    def _handle(self, signum, frame) -> None:
        if not self.requested:
            log.warning("SIGTERM: checkpointing after the current policy update, then exiting")
        self.requested = True
        if self._interruptible:
            self._interruptible = False
            raise Preempted()

    @contextlib.contextmanager
    def interruptible(self):
        if not self._sampling_interruptible:
            yield
            return
        if self.requested:
            raise Preempted()
        self._interruptible = True
        try:
            yield
        finally:
            self._interruptible = False


def run_id(args: argparse.Namespace, spec: dict) -> str:
    """What a checkpoint must match to be resumed: everything the run's trajectory depends
    on except its length (a run may be extended by raising ``rollouts``)."""
    spec = {**spec, "training": {k: v for k, v in spec["training"].items() if k != "rollouts"}}
    return io.stable_hash({
        "spec": spec, "seed": args.seed, "template": args.template, "chat_template": bool(args.chat_template),
        "grader": args.grader, "base_model": model_fingerprint(args.base_model),
        "train_problems": io.file_sha256(args.train_problems),
    }, length=32)



def publish_snapshots(store: Path, out: Path) -> None:
    """Copy the run's policy snapshots into the job's output directory (atomically)."""
    io.remove_stale_temps(out.parent, out.name)
    with io.atomic_dir(out) as tmp:
        for snap in sorted(store.glob("rollout-*")) if store.is_dir() else []:
            if (snap / "config.json").is_file():
                shutil.copytree(snap, Path(tmp) / snap.name)
