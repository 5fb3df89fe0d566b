"""Reading an original state dict while converting it: wrapper prefixes, shapes, indexed blocks."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

import torch

from .checkpoint import CheckpointError

StateDict = Mapping[str, torch.Tensor]


def strip_wrapper_prefix(sd: StateDict, prefixes: Iterable[str]) -> dict[str, torch.Tensor]:
    """Drop, repeatedly, any of ``prefixes`` shared by every key (``module.`` of DistributedDataParallel,
    a flattened ``ema.module.`` / ``model.`` top level)."""
    prefixes = tuple(prefixes)
    out = dict(sd)
    while out:
        prefix = next((p for p in prefixes if all(k.startswith(p) for k in out)), None)
        if prefix is None:
            break
        out = {k[len(prefix) :]: v for k, v in out.items()}
    return out


def strip_key_prefixes(sd: StateDict, prefixes: Iterable[str]) -> dict[str, torch.Tensor]:
    """Drop each of ``prefixes`` in turn from every key that starts with it (keys need not share it)."""
    out = dict(sd)
    for prefix in prefixes:
        out = {(k[len(prefix) :] if k.startswith(prefix) else k): v for k, v in out.items()}
    return out


def shape_of(sd: StateDict, key: str, checkpoint: str) -> tuple[int, ...]:
    """Shape of ``sd[key]``; a :class:`CheckpointError` naming the ``checkpoint`` kind when it is absent."""
    if key not in sd:
        raise CheckpointError(f"expected key {key!r} in the {checkpoint} checkpoint")
    return tuple(sd[key].shape)


def block_indices(sd: StateDict, pattern: str) -> list[int]:
    """Sorted distinct integers captured by group 1 of ``pattern`` (matched at the start of each key)."""
    regex = re.compile(pattern)
    return sorted({int(m.group(1)) for k in sd if (m := regex.match(k))})


def count_blocks(sd: StateDict, pattern: str) -> int:
    """Number of distinct indexed blocks (group 1 of ``pattern``) in ``sd``."""
    return len(block_indices(sd, pattern))
