"""Streaming export of VidEoMT: one ONNX graph for one frame, the carried queries in and out.

The state between frames is only the queries ``[B, Q, C]`` (``VideomtState.queries``), so one graph serves
every frame: ``(pixel_values [B, 3, H, W], queries)`` -> ``(class_queries_logits [B, Q, K + 1],
masks_queries_logits [B, Q, H/4, W/4], next_queries)``. "No state yet" is exact without a flag or a second
graph: a new video's state is the learned queries (:func:`initial_queries`), which is what the model itself
starts from. The frame size is fixed per graph and the batch axis dynamic. The DINOv2 position table is
resampled to the frame's grid in torch at export time (:class:`FixedGridDinov2Embeddings`) and stored in
the graph: the same values the eager model computes, where the runtimes' own antialiased bicubic resize
differs (OpenVINO's by up to 2.5e-3 on ViT-S mask logits).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

from ...core.onnx_export import DEFAULT_OPSET, write_onnx
from .modeling_videomt import (
    VideomtDinov2Embeddings,
    VideomtForUniversalSegmentation,
    VideomtState,
    resample_position_table,
)

STEP_INPUTS = ("pixel_values", "queries")
STEP_OUTPUTS = ("class_queries_logits", "masks_queries_logits", "next_queries")


class VideomtStepExport(nn.Module):
    """One frame of a stream: ``(pixel_values, queries)`` -> (class logits, mask logits, next queries)."""

    def __init__(self, model: VideomtForUniversalSegmentation):
        super().__init__()
        self.model = model

    def forward(
        self, pixel_values: torch.Tensor, queries: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        out = self.model(pixel_values, state=VideomtState(queries=queries), return_dict=True)
        return out.class_queries_logits[:, 0], out.masks_queries_logits[:, 0], out.state.queries


class FixedGridDinov2Embeddings(nn.Module):
    """DINOv2 embeddings for one patch grid: the position table resampled once, kept as a buffer."""

    def __init__(self, source: VideomtDinov2Embeddings, grid: tuple[int, int]):
        super().__init__()
        self.source = source
        with torch.no_grad():
            table = resample_position_table(source.position_embeddings, source.grid, *grid)
        self.register_buffer("positions", table.detach().clone(), persistent=False)

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        source = self.source
        patches = source.patch_embeddings(pixel_values).permute(0, 2, 3, 1)
        batch, height, width, dim = patches.shape
        patches = patches.reshape(batch, -1, dim) + self.positions
        prefix = [source.cls_token.expand(batch, -1, -1), source.register_tokens.expand(batch, -1, -1)]
        return torch.cat([*prefix, patches], dim=1), (height, width)


@contextmanager
def fixed_grid(model: VideomtForUniversalSegmentation, frame_size: tuple[int, int]) -> Iterator[None]:
    """``model`` with its DINOv2 position table resampled for ``frame_size`` once (restored on exit)."""
    source = model.embeddings
    if not isinstance(source, VideomtDinov2Embeddings):
        yield
        return
    patch = model.config.patch_size
    model.embeddings = FixedGridDinov2Embeddings(source, (frame_size[0] // patch, frame_size[1] // patch))
    try:
        yield
    finally:
        model.embeddings = source


def initial_queries(model: VideomtForUniversalSegmentation, batch_size: int = 1) -> torch.Tensor:
    """The state of videos that have not started (the learned queries), ``[B, Q, C]``, as a plain tensor."""
    return model.initial_state(batch_size).queries.detach().clone()


def example_inputs(
    model: VideomtForUniversalSegmentation, frame_size: tuple[int, int], batch_size: int = 2
) -> tuple[torch.Tensor, torch.Tensor]:
    """A random frame of ``frame_size`` (height, width; multiples of the patch size) and the initial queries."""
    height, width = frame_size
    patch = model.config.patch_size
    if height % patch or width % patch or height < patch or width < patch:
        raise ValueError(f"frame_size must be positive multiples of {patch}, got {height}x{width}")
    param = next(model.parameters())
    pixels = torch.randn(batch_size, 3, height, width, dtype=param.dtype, device=param.device)
    return pixels, initial_queries(model, batch_size)


def export_step_onnx(
    model: VideomtForUniversalSegmentation,
    output_path: str | os.PathLike,
    frame_size: tuple[int, int],
    *,
    opset: int = DEFAULT_OPSET,
) -> Path:
    """Write the single-step streaming graph of ``model`` (eval mode) for ``frame_size`` frames, atomically."""
    return write_onnx(
        VideomtStepExport(model), example_inputs(model, frame_size), output_path, input_names=STEP_INPUTS,
        output_names=STEP_OUTPUTS, opset=opset, context=fixed_grid(model, frame_size),
    )  # fmt: skip
