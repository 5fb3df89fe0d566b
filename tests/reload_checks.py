"""Helpers of the reload checks: poisoned fresh memory and every tensor a model holds."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


@contextlib.contextmanager
def poisoned_memory() -> Iterator[None]:
    """Every uninitialised tensor PyTorch allocates (torch.empty & co.) starts as NaN / the largest integer."""
    previous = (
        torch.are_deterministic_algorithms_enabled(),
        torch.utils.deterministic.fill_uninitialized_memory,
    )
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.utils.deterministic.fill_uninitialized_memory = True
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous[0])
        torch.utils.deterministic.fill_uninitialized_memory = previous[1]


def model_tensors(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Copies of every parameter and buffer (persistent or not, shared ones under each name)."""
    tensors = dict(model.named_parameters(remove_duplicate=False))
    tensors.update(model.named_buffers(remove_duplicate=False))
    return {name: value.detach().clone() for name, value in tensors.items()}
