"""Reading an original state dict while converting it: wrapper prefixes, shapes, indexed blocks, and checks of
what is inferred from it (settings, configuration values)."""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

import torch
from huggingface_hub.errors import StrictDataclassError

from .checkpoint import CheckpointError

StateDict = Mapping[str, torch.Tensor]
T = TypeVar("T")


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


def dim_of(sd: StateDict, key: str, axis: int, checkpoint: str, minimum: int = 1) -> int:
    """``sd[key].shape[axis]``; a :class:`CheckpointError` when the key is absent, the tensor has too few
    dimensions or that size is below ``minimum`` (a damaged or crafted table)."""
    shape = shape_of(sd, key, checkpoint)
    if not -len(shape) <= axis < len(shape) or shape[axis] < minimum:
        raise CheckpointError(
            f"{key} has shape {list(shape)} in the {checkpoint} checkpoint; expected a size >= {minimum} at "
            f"dimension {axis}"
        )
    return shape[axis]


def config_keys(config_class: type) -> set[str]:
    """Names a configuration class accepts as settings: its fields, ``attribute_map`` aliases, ``num_labels``."""
    return (
        {f.name for f in dataclasses.fields(config_class)} | set(config_class.attribute_map) | {"num_labels"}
    )


def check_overrides(known: Iterable[str], overrides: Mapping[str, Any], what: str) -> None:
    """Refuse override keys not in ``known`` (a ValueError naming each, with close matches)."""
    known = sorted(known)
    unknown = [key for key in overrides if key not in known]
    if not unknown:
        return
    hints = []
    for key in unknown:
        close = difflib.get_close_matches(key, known, n=3)
        hints.append(f"{key!r}" + (f" (did you mean {' / '.join(close)}?)" if close else ""))
    raise ValueError(f"unknown {what} setting {', '.join(hints)}")


def build_config(factory: Callable[..., T], *args: Any, **values: Any) -> T:
    """``factory(*args, **values)``, a failed validation reported as one ValueError line (the validator's
    message, not huggingface_hub's two-line wrapper)."""
    try:
        return factory(*args, **values)
    except StrictDataclassError as err:
        message = str(err.__cause__) if err.__cause__ is not None else " ".join(str(err).split())
        raise ValueError(message) from err


def block_indices(sd: StateDict, pattern: str) -> list[int]:
    """Sorted distinct integers captured by group 1 of ``pattern`` (matched at the start of each key)."""
    regex = re.compile(pattern)
    return sorted({int(m.group(1)) for k in sd if (m := regex.match(k))})


def count_blocks(sd: StateDict, pattern: str) -> int:
    """Number of distinct indexed blocks (group 1 of ``pattern``) in ``sd``."""
    return len(block_indices(sd, pattern))


def _is_int(value: Any, minimum: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def _is_number(value: Any, positive: bool) -> bool:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    return ok and (value > 0 or not positive)


def invalid_values(
    config: Any,
    counts: Iterable[str] = (),
    optional: Iterable[str] = (),
    int_lists: Iterable[str] = (),
    positive: Iterable[str] = (),
    finite: Iterable[str] = (),
) -> list[str]:
    """Messages for fields of ``config`` that break their kind: ``counts`` integers >= 1 (``optional`` ones
    may be 0), ``int_lists`` non-empty lists of integers >= 1, ``positive`` / ``finite`` numbers."""
    checks = [
        (counts, lambda v: _is_int(v, 1), "an integer >= 1"),
        (optional, lambda v: _is_int(v, 0), "an integer >= 0"),
        (int_lists, lambda v: isinstance(v, list | tuple) and v and all(_is_int(x, 1) for x in v),
         "a non-empty list of integers >= 1"),
        (positive, lambda v: _is_number(v, True), "a finite number > 0"),
        (finite, lambda v: _is_number(v, False), "a finite number"),
    ]  # fmt: skip
    return [
        f"{name} must be {kind}, got {getattr(config, name)!r}"
        for names, ok, kind in checks
        for name in names
        if not ok(getattr(config, name))
    ]
