"""--device / --dtype: resolved and checked once, models and their inputs placed together."""

from __future__ import annotations

import pytest
import torch

from visionports.core.devices import DeviceError, place, resolve_device, resolve_dtype, to_model
from visionports.core.errors import VisionportsError


def available_devices() -> list[str]:
    """The devices present on this machine (the parametrised device tests run on each)."""
    found = ["cpu"]
    if torch.cuda.is_available():
        found.append("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        found.append("mps")
    return found


def test_auto_picks_the_best_available() -> None:
    expected = "cuda" if torch.cuda.is_available() else ("mps" if "mps" in available_devices() else "cpu")
    assert resolve_device("auto").type == expected == resolve_device(None).type


def test_unavailable_or_malformed_devices_are_refused() -> None:
    assert issubclass(DeviceError, VisionportsError)
    with pytest.raises(DeviceError, match="expected auto, cpu, cuda, cuda:N or mps"):
        resolve_device("tpu")
    with pytest.raises(DeviceError, match="expected auto"):
        resolve_device("cuda:x")
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="CUDA is not available"):
            resolve_device("cuda:0")
    else:
        with pytest.raises(DeviceError, match="CUDA device"):
            resolve_device(f"cuda:{torch.cuda.device_count()}")


def test_dtypes_and_their_aliases() -> None:
    assert resolve_dtype(None) is torch.float32
    assert resolve_dtype("bf16") is torch.bfloat16 and resolve_dtype("torch.float16") is torch.float16
    assert resolve_dtype("half") is torch.float16 and resolve_dtype(torch.bfloat16) is torch.bfloat16
    for bad in ("float64", "int8", torch.int8):
        with pytest.raises(DeviceError, match="expected one of float32, bfloat16, float16"):
            resolve_dtype(bad)


@pytest.mark.parametrize("device", available_devices())
@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16"])
def test_inputs_follow_the_model(device: str, dtype: str) -> None:
    model = place(torch.nn.Linear(3, 2), resolve_device(device), resolve_dtype(dtype))
    moved = to_model(
        {"pixel_values": torch.rand(1, 3), "ids": torch.ones(1, dtype=torch.long), "n": 3}, model
    )
    assert moved["pixel_values"].dtype is resolve_dtype(dtype) and moved["pixel_values"].device.type == device
    assert moved["ids"].dtype is torch.long and moved["n"] == 3
