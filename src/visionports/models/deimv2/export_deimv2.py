"""Deployment export of DEIMv2: ONNX graphs and ``torch.export`` programs.

The wrappers live here, outside the model classes, so the model keeps its typed outputs and the exported
graph keeps plain tensors: ``logits``/``pred_boxes``, or with post-processing inside, ``labels`` (0..C-1),
``boxes`` (absolute x1, y1, x2, y2) and ``scores`` from a top-k over queries x classes, as the original's
deploy export (no NMS, no COCO id remapping).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from ...core.onnx_export import DEFAULT_OPSET, write_onnx
from .modeling_deimv2 import Deimv2ForObjectDetection
from .postprocessing_deimv2 import select_detections

RAW_OUTPUTS = ("logits", "pred_boxes")
DETECTION_OUTPUTS = ("labels", "boxes", "scores")


class Deimv2RawExport(nn.Module):
    """``pixel_values`` -> (``logits`` ``[B, Q, C]``, ``pred_boxes`` ``[B, Q, 4]`` normalised cx, cy, w, h)."""

    def __init__(self, model: Deimv2ForObjectDetection):
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.model(pixel_values, return_dict=True)
        return out.logits, out.pred_boxes


class Deimv2DetectionExport(nn.Module):
    """``pixel_values``, ``orig_target_sizes`` ``[B, 2]`` (width, height) -> ``labels``, ``boxes``, ``scores``."""

    def __init__(self, model: Deimv2ForObjectDetection, num_top_queries: int = 300):
        super().__init__()
        self.model = model
        self.num_top_queries = num_top_queries

    def forward(
        self, pixel_values: torch.Tensor, orig_target_sizes: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        out = self.model(pixel_values, return_dict=True)
        picked = select_detections(
            out.logits, out.pred_boxes, orig_target_sizes.to(out.pred_boxes.dtype), self.num_top_queries
        )
        return picked["labels"], picked["boxes"], picked["scores"]


def export_wrapper(
    model: Deimv2ForObjectDetection, postprocess: bool, num_top_queries: int = 300
) -> nn.Module:
    """The module that is exported, in eval mode."""
    wrapper = Deimv2DetectionExport(model, num_top_queries) if postprocess else Deimv2RawExport(model)
    return wrapper.eval()


def example_inputs(model: Deimv2ForObjectDetection, batch_size: int, image_size: tuple[int, int] | None,
                   postprocess: bool) -> tuple[torch.Tensor, ...]:  # fmt: skip
    """Random example inputs at the model's evaluation size (or ``image_size`` as (height, width))."""
    height, width = image_size or tuple(model.config.eval_image_size)
    stride = model.config.largest_stride
    if height % stride or width % stride or height < stride or width < stride:
        raise ValueError(
            f"image_size must be positive multiples of {stride}, got (height={height}, width={width})"
        )
    param = next(model.parameters())
    pixels = torch.rand(batch_size, 3, height, width, dtype=param.dtype, device=param.device)
    if not postprocess:
        return (pixels,)
    sizes = torch.tensor([[width, height]] * batch_size, dtype=torch.int64, device=param.device)
    return pixels, sizes


def export_onnx(
    model: Deimv2ForObjectDetection,
    output_path: str | os.PathLike,
    *,
    dynamic_batch: bool = True,
    postprocess: bool = False,
    opset: int = DEFAULT_OPSET,
    image_size: tuple[int, int] | None = None,
    num_top_queries: int = 300,
) -> Path:
    """Write an ONNX graph of ``model`` to ``output_path`` atomically and return the path.

    The spatial size is fixed (the model's evaluation size unless ``image_size`` is given); the batch axis
    is dynamic with ``dynamic_batch``. Raises ``ImportError`` without the ``onnx`` package.
    """
    wrapper = export_wrapper(model, postprocess, num_top_queries)
    inputs = example_inputs(model, 2 if dynamic_batch else 1, image_size, postprocess)
    return write_onnx(
        wrapper, inputs, output_path, input_names=["pixel_values", "orig_target_sizes"][: len(inputs)],
        output_names=DETECTION_OUTPUTS if postprocess else RAW_OUTPUTS, dynamic_batch=dynamic_batch, opset=opset,
    )  # fmt: skip


def export_program(
    model: Deimv2ForObjectDetection,
    *,
    dynamic_batch: bool = True,
    postprocess: bool = False,
    image_size: tuple[int, int] | None = None,
    num_top_queries: int = 300,
) -> torch.export.ExportedProgram:
    """A ``torch.export`` program of ``model`` (optionally with the detection post-processing inside)."""
    wrapper = export_wrapper(model, postprocess, num_top_queries)
    inputs = example_inputs(model, 2 if dynamic_batch else 1, image_size, postprocess)
    dynamic_shapes = None
    if dynamic_batch:
        batch = torch.export.Dim("batch", min=1, max=1024)
        dynamic_shapes = tuple({0: batch} for _ in inputs)
    with torch.no_grad():
        return torch.export.export(wrapper, inputs, dynamic_shapes=dynamic_shapes)
