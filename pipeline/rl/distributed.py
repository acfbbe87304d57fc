"""The trainer's processes: one (CPU, or one GPU) or several under ``accelerate launch``.

A thin layer over :class:`accelerate.Accelerator`, so that the training loop reads the
same for one process and for many. With ``W`` processes each one samples and trains on
its own ``1/W`` of a rollout's prompts (whole GRPO groups, so group statistics stay
local); what must be global is summed across processes here:

* the loss denominators (tokens or sequences of the whole mini-batch), so that the
  gradient DDP averages equals the single-process gradient of the same mini-batch;
* the rollout's mean entropy and accuracy (logged; AER adapts its coefficient on them)
  and the per-prompt accuracies AER allocates its weights from.

Launch examples (config files in ``envs/accelerate/``)::

    accelerate launch --config_file envs/accelerate/ddp.yaml -m pipeline train ...
    accelerate launch --config_file envs/accelerate/fsdp.yaml -m pipeline train ...
    accelerate launch --multi_gpu --num_processes 2 -m pipeline train ...  # no GPU: DDP on CPU (gloo)

(``accelerate launch --cpu`` starts a single process; ``--multi_gpu`` starts the workers
through torch's launcher, and without CUDA the Accelerator below joins them over gloo.)
"""

from __future__ import annotations

import contextlib

import torch


class Processes:
    """Rank, world size, device, mixed precision and the few collectives the loop needs."""

    def __init__(self, precision: str = "fp32"):
        from accelerate import Accelerator

        cuda = torch.cuda.is_available()
        self.precision = precision
        self.accelerator = Accelerator(mixed_precision="bf16" if precision == "bf16" else "no", cpu=not cuda)
        self.world = self.accelerator.num_processes
        self.rank = self.accelerator.process_index
        self.device = self.accelerator.device
        self.is_main = self.accelerator.is_main_process
        self.distributed = self.world > 1

    # ------------------------------------------------------------------ wrapping
    def prepare(self, *objects):
        return self.accelerator.prepare(*objects)

    def unwrap(self, model):
        return self.accelerator.unwrap_model(model)

    def full_state_dict(self, model) -> dict:
        """The whole model's state (gathered under FSDP), on every process."""
        return self.accelerator.get_state_dict(model, unwrap=True)

    def autocast(self):
        """Forward passes in the configured precision (bf16 autocast, or nothing)."""
        if self.precision != "bf16":
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)

    def no_sync(self, model, skip: bool):
        """No gradient all-reduce for this backward (accumulating micro-batches) when ``skip``."""
        if skip and self.distributed:
            return self.accelerator.no_sync(model)
        return contextlib.nullcontext()

    def backward(self, loss: torch.Tensor) -> None:
        self.accelerator.backward(loss)

    def clip_grad_norm_(self, parameters, max_norm: float) -> torch.Tensor:
        return self.accelerator.clip_grad_norm_(parameters, max_norm)

    # ------------------------------------------------------------------ collectives
    def sum(self, values: list[float]) -> list[float]:
        """Element-wise sum of a list of floats over every process."""
        if not self.distributed:
            return [float(v) for v in values]
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        return [float(v) for v in self.accelerator.reduce(t, reduction="sum").cpu()]

    def any(self, flag: bool) -> bool:
        return self.sum([1.0 if flag else 0.0])[0] > 0

    def gather_interleaved(self, local: torch.Tensor) -> torch.Tensor:
        """Per-prompt values of every process in global prompt order.

        Process ``k`` holds prompts ``k, k + W, k + 2W, ...`` of the rollout, so its local
        row ``i`` is global row ``i * W + k``.
        """
        if not self.distributed:
            return local
        stacked = self.accelerator.gather(local.to(self.device)[None]).cpu()  # [W, n_local]
        return stacked.T.reshape(-1)

    def barrier(self) -> None:
        if self.distributed:
            self.accelerator.wait_for_everyone()

    def end(self) -> None:
        if self.distributed:
            self.accelerator.end_training()
