"""Turning DEIMv2 outputs into detections (the original's focal-loss PostProcessor)."""

from __future__ import annotations

import torch

from ...core.errors import NonFiniteOutputError
from ...data.coco import COCO_CATEGORY_IDS
from ...utils.boxes import center_to_corners


def _tracing() -> bool:
    compiler = torch.compiler
    return (
        torch.jit.is_tracing()
        or compiler.is_compiling()
        or compiler.is_exporting()
        or torch.onnx.is_in_onnx_export()
    )


def check_finite_outputs(logits: torch.Tensor, boxes: torch.Tensor) -> None:
    """Raise :class:`NonFiniteOutputError` when ``logits`` or ``boxes`` hold NaN/inf (skipped while tracing
    or exporting, where a data-dependent check cannot run)."""
    if _tracing():
        return
    for name, tensor in (("logits", logits), ("pred_boxes", boxes)):
        bad = int((~torch.isfinite(tensor)).sum())
        if bad:
            raise NonFiniteOutputError(
                f"the model's {name} hold {bad} NaN/inf value(s) of {tensor.numel()} ({tensor.dtype}); "
                "refusing to turn them into detections. Half-precision overflow or a broken checkpoint is "
                "the usual cause: run the model in float32 to compare"
            )


def select_detections(
    logits: torch.Tensor, boxes: torch.Tensor, target_sizes_wh: torch.Tensor, num_top_queries: int = 300
) -> dict[str, torch.Tensor]:
    """Top-k (query, class) pairs by sigmoid score.

    Args:
        logits: ``[B, Q, C]`` class logits; boxes: ``[B, Q, 4]`` normalised (cx, cy, w, h).
        target_sizes_wh: ``[B, 2]`` (width, height) of the original images, in the original's order.
        num_top_queries: detections kept per image (capped at ``Q * C``).

    Returns ``labels`` (0..C-1), ``boxes`` (x1, y1, x2, y2 in pixels), ``scores`` and ``query_indices``,
    each ``[B, k]`` (boxes ``[B, k, 4]``), sorted by descending score.
    Raises :class:`NonFiniteOutputError` when ``logits`` or ``boxes`` hold NaN/inf.
    """
    check_finite_outputs(logits, boxes)
    num_classes = logits.shape[-1]
    pixel_boxes = center_to_corners(boxes) * target_sizes_wh.repeat(1, 2).unsqueeze(1)
    k = min(num_top_queries, logits.shape[1] * num_classes)
    scores, index = torch.topk(torch.sigmoid(logits).flatten(1), k, dim=-1)
    labels = index - index // num_classes * num_classes
    queries = index // num_classes
    picked = pixel_boxes.gather(1, queries.unsqueeze(-1).expand(-1, -1, 4))
    return {"labels": labels, "boxes": picked, "scores": scores, "query_indices": queries}


def to_coco_category_ids(labels: torch.Tensor) -> torch.Tensor:
    """Contiguous COCO labels 0..79 -> COCO category ids 1..90."""
    table = torch.tensor(COCO_CATEGORY_IDS, dtype=torch.int64, device=labels.device)
    return table[labels]
