"""The trainer's processes: one (CPU, or one GPU) or several under ``accelerate launch``.

A thin layer over :class:`accelerate.Accelerator`, so that the training loop reads the
same for one process and for many. With ``W`` processes each one samples and trains on
its own ``1/W`` of a rollout's prompts (whole GRPO groups, so group statistics stay
local); what must be global is summed across processes here:

* the loss denominators (tokens or sequences of the whole mini-batch), so that the
  gradient DDP averages equals the single-process gradient of the same mini-batch;
* the rollout's mean entropy and accuracy (logged; AER adapts its coefficient on them)
  and the per-prompt accuracies AER allocates its weights from.

Parameters are replicated (DDP, through accelerate) or sharded over the processes
(``--sharding fsdp``: torch's ``fully_shard`` on every decoder layer and the root, so
weights, gradients and AdamW moments take 1/W of the memory each; the full weights are
gathered for rollouts, snapshots and checkpoints). Launch examples::

    accelerate launch --config_file envs/accelerate/multi_gpu.yaml -m pipeline train ... [--sharding fsdp]
    accelerate launch --multi_gpu --num_processes 2 -m pipeline train ...  # no GPU: DDP on CPU (gloo)

(``accelerate launch --cpu`` starts a single process; ``--multi_gpu`` starts the workers
through torch's launcher, and without CUDA the Accelerator below joins them over gloo.)
"""

from __future__ import annotations

import contextlib

import torch


class Processes:
    """Rank, world size, device, mixed precision and the few collectives the loop needs."""

    def __init__(self, precision: str = "fp32", sharding: str = "ddp"):
        from accelerate import Accelerator
        from accelerate.utils import DistributedType

        if sharding not in ("ddp", "fsdp"):
            raise ValueError(f"unknown sharding {sharding!r}; expected ddp or fsdp")
        cuda = torch.cuda.is_available()
        self.precision = precision
        # Mixed precision is this class's own autocast (``autocast`` below), the same for one
        # process, DDP and FSDP; accelerate's would wrap only DDP models (and its state is a
        # per-process singleton that refuses a second precision in one interpreter).
        self.accelerator = Accelerator(mixed_precision="no", cpu=not cuda)
        self.world = self.accelerator.num_processes
        self.rank = self.accelerator.process_index
        self.device = self.accelerator.device
        self.is_main = self.accelerator.is_main_process
        self.distributed = self.world > 1
        if self.accelerator.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED):
            raise ValueError(
                "the trainer shards with torch's FSDP itself (distributed.sharding: fsdp); launch it with a "
                "plain multi-GPU accelerate config such as envs/accelerate/multi_gpu.yaml, not accelerate's FSDP/DeepSpeed plugin"
            )
        # FSDP (torch's fully_shard, "FSDP2"): every decoder layer and the root are sharded
        # over the processes, parameters, gradients and AdamW moments alike.
        self.sharded = sharding == "fsdp" and self.distributed

    # ------------------------------------------------------------------ wrapping
    def wrap_model(self, model):
        """DDP (through accelerate) or FSDP2 shards; the model itself with one process.
        Build the optimizer on the returned model's parameters."""
        if not self.distributed:
            return model
        if not self.sharded:
            return self.accelerator.prepare_model(model)
        from torch.distributed.fsdp import fully_shard

        layer_types = tuple(getattr(model, "_no_split_modules", None) or ())
        for module in model.modules():
            if type(module).__name__ in layer_types:
                fully_shard(module)
        fully_shard(model)
        return model

    def wrap_optimizer(self, optimizer):
        return self.accelerator.prepare_optimizer(optimizer) if self.distributed and not self.sharded else optimizer

    def unwrap(self, model):
        return self.accelerator.unwrap_model(model) if not self.sharded else model

    def full_state_dict(self, model, everywhere: bool = False) -> dict:
        """The whole model's weights: on the main process (``everywhere``: on every one).
        A collective under FSDP: every process must call it."""
        if not self.sharded:
            return self.unwrap(model).state_dict()
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=not everywhere))

    def optimizer_state_dict(self, model, optimizer) -> dict:
        if not self.sharded:
            return optimizer.state_dict()
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

        return get_optimizer_state_dict(model, optimizer, options=StateDictOptions(full_state_dict=True, cpu_offload=True))

    def load_optimizer_state_dict(self, model, optimizer, state: dict) -> None:
        """Restore a checkpoint's optimizer state (under FSDP every process passes the full state)."""
        if not self.sharded:
            optimizer.load_state_dict(state)
            return
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

        set_optimizer_state_dict(model, optimizer, optim_state_dict=state, options=StateDictOptions(full_state_dict=True))

    def autocast(self):
        """Forward passes in the configured precision (bf16 autocast, or nothing)."""
        if self.precision != "bf16":
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)

    def no_sync(self, model, skip: bool):
        """No gradient all-reduce / reduce-scatter for this backward (accumulating micro-batches) when ``skip``."""
        if not (skip and self.distributed):
            return contextlib.nullcontext()
        if self.sharded:
            return _fsdp_no_sync(model)
        return self.accelerator.no_sync(model)

    def backward(self, loss: torch.Tensor) -> None:
        self.accelerator.backward(loss)

    def clip_grad_norm_(self, parameters, max_norm: float) -> torch.Tensor:
        if self.sharded:
            norm = torch.nn.utils.clip_grad_norm_(parameters, max_norm)
            return norm.full_tensor() if hasattr(norm, "full_tensor") else norm
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

    def gather_cat(self, local: torch.Tensor) -> torch.Tensor:
        """A 1-D tensor of every process, concatenated in rank order (sizes may differ)."""
        if not self.distributed:
            return local
        sizes = [int(n) for n in self.sum([float(local.numel()) if r == self.rank else 0.0 for r in range(self.world)])]
        padded = torch.zeros(max(sizes), dtype=local.dtype, device=self.device)
        padded[: local.numel()] = local.to(self.device)
        stacked = self.accelerator.gather(padded[None]).cpu()  # [W, max size]
        return torch.cat([stacked[r, : sizes[r]] for r in range(self.world)]).to(local.device)

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
        if self.distributed and torch.distributed.is_initialized():
            self.accelerator.end_training()


@contextlib.contextmanager
def _fsdp_no_sync(model):
    model.set_requires_gradient_sync(False)
    try:
        yield
    finally:
        model.set_requires_gradient_sync(True)
