"""Where and in which precision a model runs: ``--device auto|cpu|cuda[:N]|mps`` and ``--dtype``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from .errors import VisionportsError

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
_ALIASES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16", "half": "float16"}


class DeviceError(VisionportsError, ValueError):
    """A device or precision this machine or model cannot run."""


def resolve_device(name: str | torch.device | None = "auto") -> torch.device:
    """``auto`` (or ``None``): CUDA when present, else Apple MPS, else the CPU; others are checked to exist."""
    if isinstance(name, torch.device):
        return name
    name = (name or "auto").strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if _mps_available() else torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise DeviceError(f"--device: expected auto, cpu, cuda, cuda:N or mps, got {name!r}") from err
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise DeviceError(f"--device {name}: CUDA is not available on this machine (use cpu or auto)")
        if device.index is not None and device.index >= count:
            raise DeviceError(f"--device {name}: this machine has {count} CUDA device(s), numbered from 0")
    elif device.type == "mps" and not _mps_available():
        raise DeviceError(f"--device {name}: Apple MPS is not available on this machine (use cpu or auto)")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise DeviceError(f"--device: expected auto, cpu, cuda, cuda:N or mps, got {name!r}")
    return device


def resolve_dtype(name: str | torch.dtype | None = "float32") -> torch.dtype:
    """``float32`` (default), ``bfloat16`` or ``float16`` (``fp32`` / ``bf16`` / ``fp16`` / ``half`` too)."""
    if isinstance(name, torch.dtype):
        if name not in DTYPES.values():
            raise DeviceError(f"--dtype: expected one of {', '.join(DTYPES)}, got {name}")
        return name
    key = (name or "float32").strip().lower().removeprefix("torch.")
    key = _ALIASES.get(key, key)
    if key not in DTYPES:
        raise DeviceError(f"--dtype: expected one of {', '.join(DTYPES)}, got {name!r}")
    return DTYPES[key]


def run_settings(device: str | torch.device | None, dtype: str | torch.dtype | None) -> dict[str, str]:
    """What a results file records about where a run ran: ``{"device": "cuda:0", "dtype": "bfloat16"}``.

    ``auto`` is resolved, so results of different machines or precisions are told apart (and not resumed
    into one another)."""
    where = resolve_device(device)
    if where.type == "cuda" and where.index is None:
        where = torch.device("cuda", torch.cuda.current_device())
    precision = resolve_dtype(dtype)
    return {"device": str(where), "dtype": next(k for k, v in DTYPES.items() if v == precision)}


def place(model: torch.nn.Module, device: torch.device, dtype: torch.dtype) -> torch.nn.Module:
    """``model`` moved to ``device`` in ``dtype`` (its floating-point weights; integer buffers keep theirs)."""
    return model.to(device=device, dtype=dtype)


def to_model(inputs: Mapping[str, Any], model: torch.nn.Module) -> dict[str, Any]:
    """The processor's ``inputs`` on the model's device, floating tensors in the model's dtype."""
    weight = next(model.parameters())
    moved = {}
    for key, value in inputs.items():
        if isinstance(value, torch.Tensor):
            value = value.to(weight.device)
            if value.is_floating_point():
                value = value.to(weight.dtype)
        moved[key] = value
    return moved


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())
