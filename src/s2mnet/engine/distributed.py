"""Distributed data-parallel training under ``torchrun`` (PyTorch DDP): process group, sampler, agreement.

``s2m train`` needs no launcher of its own: ``torchrun --nproc_per_node N -m s2mnet.cli train ...`` starts
N copies and sets ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK``, which :func:`setup` reads (see
docs/scale.md). Without these variables every function here is a no-op for a single process, so the
training code has one path.

Choices:

* Backend: NCCL when the rank trains on CUDA (device ``cuda:LOCAL_RANK``), gloo on CPU.
* Data: :func:`make_sampler` is a :class:`~torch.utils.data.DistributedSampler` over the dataset's virtual
  epoch, also for one process. Its permutation depends only on ``(seed, epoch)``; rank ``r`` of ``W`` takes
  positions ``r, r + W, …`` of it (padded to equal shard sizes, so every rank runs the same number of
  steps). The augmentation of a sample depends on ``(seed, epoch, index)`` (:mod:`s2mnet.data.dataset`),
  so the samples seen in an epoch are fixed by the seed, whatever the world size.
* Random streams (dropout): :func:`seed_epoch` re-seeds Python, NumPy and torch at the start of every
  epoch from ``(seed, epoch, rank)``, so a run is a function of the seed and the world size only and a
  resumed run continues exactly, on any number of ranks, without storing per-rank generator states.
* Rank 0 alone prints, logs, validates and writes the run folder; decisions it takes (validation Dice,
  out of time) are sent to all ranks with :meth:`DistContext.broadcast_floats` so that all stop together.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DistributedSampler

from s2mnet.errors import S2MError

#: When set to a folder, every rank writes its final model + loss state there as ``rank<R>.safetensors``
#: (used by the distributed test to check that all ranks end identical).
RANK_DUMP_ENV = "S2MNET_DEBUG_RANK_DUMP"


@dataclass(frozen=True)
class DistContext:
    """Where this process stands in the job (one process: ``world_size == 1``, ``rank == 0``)."""

    world_size: int = 1
    rank: int = 0
    local_rank: int = 0
    backend: str | None = None

    @property
    def enabled(self) -> bool:
        """True when running under ``torchrun`` with more than one process."""
        return self.backend is not None

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that prints, logs, validates and writes."""
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def broadcast_floats(self, values: list[float]) -> list[float]:
        """Rank 0's ``values`` on every rank (float64; NaN stands for "none")."""
        if not self.enabled:
            return values
        tensor = torch.tensor(values, dtype=torch.float64, device=self._comm_device())
        dist.broadcast(tensor, src=0)
        return tensor.tolist()

    def sum_floats(self, values: list[float]) -> list[float]:
        """Element-wise sum of ``values`` over all ranks."""
        if not self.enabled:
            return values
        tensor = torch.tensor(values, dtype=torch.float64, device=self._comm_device())
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor.tolist()

    def agree(self, error: S2MError | None) -> None:
        """Raise on every rank when any rank failed a step that only some ranks ran (no rank hangs).

        Args:
            error: this rank's error of the step, or ``None``.
        """
        failed = self.sum_floats([0.0 if error is None else 1.0])[0] > 0
        if error is not None:
            raise error
        if failed:
            raise S2MError(f"rank {self.rank}: stopping because another rank failed (see its error)")

    def broadcast_buffers(self, module: torch.nn.Module) -> None:
        """Copy rank 0's buffers (BatchNorm running statistics) to all ranks.

        DDP broadcasts them before each forward, but the last forward of an epoch updates each rank's copy
        with its own batch; after this call every rank holds exactly the state that rank 0 saves.
        """
        if not self.enabled:
            return
        for buffer in module.buffers():
            dist.broadcast(buffer.data, src=0)

    def _comm_device(self) -> torch.device:
        return torch.device("cuda", self.local_rank) if self.backend == "nccl" else torch.device("cpu")


def env_world() -> tuple[int, int, int]:
    """``(WORLD_SIZE, RANK, LOCAL_RANK)`` from the environment (``(1, 0, 0)`` outside ``torchrun``)."""
    try:
        return tuple(int(os.environ.get(name, default)) for name, default in _ENV)  # type: ignore[return-value]
    except ValueError:
        raise S2MError("WORLD_SIZE/RANK/LOCAL_RANK must be integers (set by torchrun)") from None


_ENV = (("WORLD_SIZE", "1"), ("RANK", "0"), ("LOCAL_RANK", "0"))


def setup(device_name: str) -> tuple[DistContext, str]:
    """Join the ``torchrun`` process group when ``WORLD_SIZE > 1``; return the context and the device.

    Args:
        device_name: the ``--device`` flag. Under torchrun ``auto``/``cuda`` become ``cuda:LOCAL_RANK``
            (one GPU per process); ``cuda:N`` is refused because each rank needs its own GPU.

    Returns:
        ``(context, device_name)`` with the device this rank trains on.
    """
    world_size, rank, local_rank = env_world()
    if world_size <= 1:
        return DistContext(), device_name
    use_cuda = device_name in ("cuda", "auto") and torch.cuda.is_available()
    if device_name.startswith("cuda:"):
        raise S2MError(f"--device {device_name}: under torchrun use --device cuda (each rank takes its GPU)")
    if device_name == "cuda" and not use_cuda:
        raise S2MError("--device cuda: CUDA is not available on this machine (use --device cpu)")
    backend = "nccl" if use_cuda else "gloo"
    if use_cuda:
        torch.cuda.set_device(local_rank)
        device_name = f"cuda:{local_rank}"
    else:
        device_name = "cpu"
    dist.init_process_group(backend=backend)
    return DistContext(world_size, rank, local_rank, backend), device_name


def teardown(context: DistContext) -> None:
    """Leave the process group (also after an error, so that no rank leaves it dangling)."""
    if context.enabled and dist.is_initialized():
        dist.destroy_process_group()


def make_sampler(dataset: Any, context: DistContext, seed: int) -> DistributedSampler:
    """The shuffled, seeded shard of ``dataset`` for this rank (see the module docstring).

    Call ``sampler.set_epoch(epoch)`` at the start of every epoch (the :class:`Trainer` does).
    """
    return DistributedSampler(
        dataset, num_replicas=context.world_size, rank=context.rank, shuffle=True, seed=seed, drop_last=False
    )


def seed_epoch(seed: int, epoch: int, rank: int, generator: torch.Generator | None = None) -> None:
    """Re-seed Python, NumPy, torch (CPU and CUDA) and ``generator`` from ``(seed, epoch, rank)``."""
    words = np.random.SeedSequence([seed, epoch, rank]).generate_state(2, dtype=np.uint32)
    value = (int(words[0]) << 32) | int(words[1])
    random.seed(value)
    np.random.seed(int(words[0]))  # noqa: NPY002 (libraries draw from the legacy global generator)
    torch.manual_seed(value)
    if generator is not None:
        generator.manual_seed(value)


def wrap_ddp(module: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """``DistributedDataParallel(module)`` on this rank's device (the caller checks that DDP is on)."""
    from torch.nn.parallel import DistributedDataParallel

    device_ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(module, device_ids=device_ids)


def dump_rank_state(context: DistContext, tensors: dict[str, torch.Tensor]) -> Path | None:
    """Write this rank's final tensors to ``$S2MNET_DEBUG_RANK_DUMP/rank<R>.safetensors`` (tests only)."""
    folder = os.environ.get(RANK_DUMP_ENV)
    if not folder:
        return None
    from s2mnet.engine.checkpoint import save_weights

    path = Path(folder) / f"rank{context.rank}.safetensors"
    save_weights(path, tensors, {"rank": context.rank, "world_size": context.world_size})
    return path
