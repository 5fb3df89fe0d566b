"""Box formats and pairwise overlap measures used by detection losses and matchers.

Boxes are ``(cx, cy, w, h)`` ("center") or ``(x0, y0, x1, y1)`` ("corners") in the last dimension.
"""

from __future__ import annotations

import torch


def center_to_corners(boxes: torch.Tensor, clamp_size: bool = False) -> torch.Tensor:
    """``(cx, cy, w, h)`` -> ``(x0, y0, x1, y1)``; ``clamp_size`` treats negative widths/heights as zero."""
    cx, cy, w, h = boxes.unbind(-1)
    if clamp_size:
        w, h = w.clamp(min=0.0), h.clamp(min=0.0)
    half_w, half_h = 0.5 * w, 0.5 * h
    return torch.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], dim=-1)


def corners_to_center(boxes: torch.Tensor) -> torch.Tensor:
    """``(x0, y0, x1, y1)`` -> ``(cx, cy, w, h)``."""
    x0, y0, x1, y1 = boxes.unbind(-1)
    return torch.stack([(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0], dim=-1)


def box_area(boxes: torch.Tensor) -> torch.Tensor:
    """Area of corner boxes ``[N, 4]`` -> ``[N]``."""
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def pairwise_iou(boxes1: torch.Tensor, boxes2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """IoU ``[N, M]`` of two sets of corner boxes, and the union areas ``[N, M]``."""
    area1, area2 = box_area(boxes1), box_area(boxes2)
    top_left = torch.max(boxes1[:, None, :2], boxes2[:, :2])
    bottom_right = torch.min(boxes1[:, None, 2:], boxes2[:, 2:])
    wh = (bottom_right - top_left).clamp(min=0)
    inter = wh[:, :, 0] * wh[:, :, 1]
    union = area1[:, None] + area2 - inter
    return inter / union, union


def pairwise_generalized_iou(boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
    """Generalized IoU ``[N, M]`` of two sets of corner boxes (Rezatofighi et al., 2019)."""
    for name, boxes in (("boxes1", boxes1), ("boxes2", boxes2)):
        if not bool((boxes[:, 2:] >= boxes[:, :2]).all()):
            raise ValueError(f"{name} holds degenerate boxes (x1 < x0 or y1 < y0)")
    iou, union = pairwise_iou(boxes1, boxes2)
    top_left = torch.min(boxes1[:, None, :2], boxes2[:, :2])
    bottom_right = torch.max(boxes1[:, None, 2:], boxes2[:, 2:])
    wh = (bottom_right - top_left).clamp(min=0)
    enclosing = wh[:, :, 0] * wh[:, :, 1]
    return iou - (enclosing - union) / enclosing


__all__ = [
    "box_area",
    "center_to_corners",
    "corners_to_center",
    "pairwise_generalized_iou",
    "pairwise_iou",
]
