"""Safe loading of untrusted checkpoint files (pickled torch archives or safetensors)."""

from __future__ import annotations

import pickle
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from .errors import VisionportsError

StateDict = dict[str, torch.Tensor]


class CheckpointError(VisionportsError, ValueError):
    """A checkpoint file cannot be read or does not hold what was expected."""


def load_checkpoint_file(path: str | Path) -> Any:
    """Read a checkpoint without executing code from it.

    ``.safetensors`` files are read with safetensors; anything else with
    ``torch.load(weights_only=True)``, which refuses pickles that carry code or arbitrary objects.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint: no such file: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except Exception as err:  # safetensors raises several private error types
            raise CheckpointError(f"checkpoint: {path} is not a valid safetensors file ({err})") from err
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"checkpoint: {path} holds objects that are not plain tensors/containers (a pickle with code or "
            f"custom classes); refusing to load it. Re-save it as a plain state dict or safetensors. ({err})"
        ) from err
    except (EOFError, zipfile.BadZipFile, RuntimeError) as err:
        raise CheckpointError(f"checkpoint: {path} is truncated or corrupt ({err})") from err


def select_state_dict(
    obj: Any,
    candidates: Sequence[Sequence[str]] = (("ema", "module"), ("model",), ("state_dict",)),
) -> tuple[StateDict, str]:
    """Pick the weights from a checkpoint's top level.

    The first of ``candidates`` (paths of nested keys) that exists wins; a mapping whose values are
    all tensors is taken as the state dict itself. Returns the state dict and where it was found.
    """
    if isinstance(obj, Mapping):
        for path in candidates:
            node: Any = obj
            for key in path:
                if not isinstance(node, Mapping) or key not in node:
                    break
                node = node[key]
            else:
                if _is_state_dict(node):
                    return dict(node), ".".join(path)
        if _is_state_dict(obj):
            return dict(obj), "<top level>"
        keys = ", ".join(sorted(map(str, obj.keys()))[:10])
        raise CheckpointError(
            f"checkpoint: no state dict found; top-level keys are [{keys}], expected one of "
            + ", ".join("/".join(p) for p in candidates)
        )
    raise CheckpointError(f"checkpoint: expected a mapping at the top level, got {type(obj).__name__}")


def _is_state_dict(node: Any) -> bool:
    return (
        isinstance(node, Mapping)
        and len(node) > 0
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in node.items())
    )


def load_state_dict(path: str | Path) -> tuple[StateDict, str]:
    """Load a checkpoint file and return its weights (EMA weights when present) and their location."""
    return select_state_dict(load_checkpoint_file(path))
