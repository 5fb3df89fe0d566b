"""Checks of the tensors a model is called with (shared by every family's ``forward``)."""

from __future__ import annotations

import torch


def check_pixel_dtype(pixel_values: torch.Tensor, model: torch.nn.Module) -> None:
    """``TypeError`` unless ``pixel_values`` is floating and of the model's parameter dtype."""
    if not pixel_values.is_floating_point():
        raise TypeError(f"pixel_values must be a floating tensor, got {pixel_values.dtype}")
    expected = next(model.parameters()).dtype
    if pixel_values.dtype != expected:
        raise TypeError(
            f"pixel_values has dtype {pixel_values.dtype} but the model is {expected}; cast one of them"
        )


__all__ = ["check_pixel_dtype"]
