"""Process-group helpers for training under ``torchrun`` / ``accelerate launch`` (one process is a world of one).

Before the process group exists (the trainer's arguments create it) the launcher's ``RANK`` / ``WORLD_SIZE``
environment variables answer; afterwards ``torch.distributed`` does.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def _initialised() -> bool:
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    """The number of training processes (1 without a launcher)."""
    return dist.get_world_size() if _initialised() else int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    """This process's global rank (0 without a launcher)."""
    return dist.get_rank() if _initialised() else int(os.environ.get("RANK", "0"))


def is_main_process() -> bool:
    """Whether this process is the one that writes files and prints (global rank 0)."""
    return rank() == 0


def barrier() -> None:
    """Wait for every process (nothing to wait for in a world of one)."""
    if _initialised() and dist.get_world_size() > 1:
        dist.barrier()


def mean_counts(*counts: float, device: torch.device | str = "cpu") -> tuple[float, ...]:
    """Each count summed over the processes, divided by their number, then clamped at 1.

    The loss normalisation of the original criterion (its ``num_boxes``): every process divides by the same
    average, so averaging the processes' gradients gives the gradient of the whole batch's loss.
    """
    if _initialised() and dist.get_world_size() > 1:
        total = torch.tensor(counts, dtype=torch.float32, device=device)
        dist.all_reduce(total)
        counts = tuple((total / dist.get_world_size()).tolist())
    return tuple(max(float(c), 1.0) for c in counts)


def sync_batch_norm(model: torch.nn.Module) -> torch.nn.Module:
    """``model`` with its BatchNorm layers synchronised across processes (in place)."""
    return torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)


__all__ = ["barrier", "is_main_process", "mean_counts", "rank", "sync_batch_norm", "world_size"]
