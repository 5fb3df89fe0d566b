"""The batch half of DEIMv2's training recipe: Mixup, CopyBlend and multi-scale resizing in the collate step.

Batches are ``pixel_values`` ``[B, 3, H, W]`` and one ``labels`` dict per image with ``class_labels`` and
normalised ``(cx, cy, w, h)`` ``boxes`` (what :class:`~visionports.data.detection_data.CocoDetectionDataset`
yields).
"""

from __future__ import annotations

import random
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import get_worker_info

from .detection_data import collate_detection
from .detection_recipe import AugmentationPlan


def _with_extra(target: dict[str, Any], boxes: torch.Tensor, labels: torch.Tensor) -> dict[str, Any]:
    """``target`` with ``boxes`` / ``labels`` appended to its own."""
    return {
        **target,
        "boxes": torch.cat([target["boxes"], boxes.to(target["boxes"].dtype)]),
        "class_labels": torch.cat([target["class_labels"], labels.to(target["class_labels"].dtype)]),
    }


def mixup(pixels: torch.Tensor, targets: list[dict[str, Any]], weight: float) -> tuple[torch.Tensor, list]:
    """Each image blended with the previous one of the batch (``weight`` for its own pixels), and the union of
    both images' boxes."""
    mixed = pixels * weight + pixels.roll(shifts=1, dims=0) * (1.0 - weight)
    previous = targets[-1:] + targets[:-1]
    return mixed, [
        _with_extra(t, p["boxes"], p["class_labels"]) for t, p in zip(targets, previous, strict=True)
    ]


def copy_blend(
    pixels: torch.Tensor,
    targets: list[dict[str, Any]],
    weight: float,
    rng: random.Random,
    min_area: float = 100.0,
    num_objects: int = 3,
    expand_ratios: tuple[float, float] = (0.1, 0.25),
) -> tuple[torch.Tensor, list[dict[str, Any]]]:
    """Paste ``num_objects`` objects of the batch into each image at random spots, blended (``weight`` for the
    destination's pixels), each with a margin of ``expand_ratios`` of its size as context.

    Candidates are the batch's boxes of at least ``min_area`` pixels; the new boxes keep their labels and are
    the pasted object's extent without the margin.
    """
    height, width = pixels.shape[-2:]
    pool = _object_pool(targets, width, height, min_area)
    if not pool:
        return pixels, targets
    blended, updated = pixels.clone(), []
    for index, target in enumerate(targets):
        boxes, labels = [], []
        for source, box, label in rng.sample(pool, min(num_objects, len(pool))):
            placed = _paste(pixels[source], blended[index], box, weight, rng, expand_ratios)
            if placed is not None:
                boxes.append(placed)
                labels.append(label)
        if boxes:
            target = _with_extra(target, torch.stack(boxes), torch.stack(labels))
        updated.append(target)
    return blended, updated


def _object_pool(
    targets: list[dict[str, Any]], width: int, height: int, min_area: float
) -> list[tuple[int, torch.Tensor, torch.Tensor]]:
    """``(image index, normalised cxcywh box, label)`` of every box of at least ``min_area`` pixels."""
    pool = []
    for index, target in enumerate(targets):
        areas = target["boxes"][:, 2] * target["boxes"][:, 3] * (width * height)
        for box, label, area in zip(target["boxes"], target["class_labels"], areas, strict=True):
            if area >= min_area:
                pool.append((index, box, label))
    return pool


def _paste(
    source: torch.Tensor,
    destination: torch.Tensor,
    box: torch.Tensor,
    weight: float,
    rng: random.Random,
    expand_ratios: tuple[float, float],
) -> torch.Tensor | None:
    """Blend ``box`` of ``source`` (plus a margin) into ``destination`` in place; its new normalised box."""
    height, width = source.shape[-2:]
    cx, cy, w, h = box.tolist()
    sx1, sy1 = max(int((cx - w / 2) * width), 0), max(int((cy - h / 2) * height), 0)
    sx2, sy2 = min(int((cx + w / 2) * width), width), min(int((cy + h / 2) * height), height)
    box_w, box_h = sx2 - sx1, sy2 - sy1
    if box_w <= 0 or box_h <= 0:
        return None
    dx1 = rng.randint(0, width - box_w) if box_w < width else 0
    dy1 = rng.randint(0, height - box_h) if box_h < height else 0
    new_box = torch.tensor(
        [(dx1 + box_w / 2) / width, (dy1 + box_h / 2) / height, box_w / width, box_h / height]
    )
    ratio = rng.uniform(*expand_ratios)
    margin_w, margin_h = int(box_w * ratio), int(box_h * ratio)
    # the same margin on both images, as far as both have room for it
    left = min(sx1, dx1, margin_w)
    top = min(sy1, dy1, margin_h)
    right = min(width - sx2, width - (dx1 + box_w), margin_w)
    bottom = min(height - sy2, height - (dy1 + box_h), margin_h)
    patch = source[:, sy1 - top : sy2 + bottom, sx1 - left : sx2 + right]
    region = destination[:, dy1 - top : dy1 + box_h + bottom, dx1 - left : dx1 + box_w + right]
    region.mul_(weight).add_(patch * (1.0 - weight))
    return new_box.to(box.dtype)


class RecipeCollate:
    """Stack a batch, then Mixup or else CopyBlend, then multi-scale resizing, as the plan allows at the epoch.

    Per batch: a blend weight in [0.45, 0.55]; Mixup with ``mixup_prob`` inside its window (batches of at least
    two images); otherwise CopyBlend with ``copyblend_prob`` inside its window; before
    ``multiscale_stop_epoch``, the batch resized (nearest neighbour, as the original) to a random size of
    ``multiscale_sizes``. Boxes are normalised, so resizing leaves them as they are. Draws come from a
    generator keyed on (seed, rank, epoch, loader worker), so processes and workers differ and runs repeat.
    """

    def __init__(self, plan: AugmentationPlan, seed: int = 0, rank: int = 0) -> None:
        self.plan, self.seed, self.rank = plan, seed, rank
        self.epoch = 0
        self._rng: random.Random | None = None
        self._rng_key: tuple[int, int] | None = None

    def set_epoch(self, epoch: int) -> None:
        """Use the settings of ``epoch`` (0-based) from the next batch on."""
        self.epoch = epoch

    def rng(self) -> random.Random:
        """This epoch's (and loader worker's) generator."""
        worker = get_worker_info()
        key = (self.epoch, worker.id if worker is not None else -1)
        if self._rng is None or key != self._rng_key:
            self._rng = random.Random(f"collate:{self.seed}:{self.rank}:{key[0]}:{key[1]}")
            self._rng_key = key
        return self._rng

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        batch = collate_detection(items)
        pixels, targets = batch["pixel_values"], batch["labels"]
        rng, plan, epoch = self.rng(), self.plan, self.epoch
        weight = rng.uniform(0.45, 0.55)
        if _within(epoch, plan.mixup_epochs) and len(items) > 1 and rng.random() < plan.mixup_prob:
            pixels, targets = mixup(pixels, targets, weight)
        elif _within(epoch, plan.copyblend_epochs) and rng.random() < plan.copyblend_prob:
            pixels, targets = copy_blend(pixels, targets, weight, rng)
        if plan.multiscale_sizes and epoch < plan.multiscale_stop_epoch:
            size = rng.choice(plan.multiscale_sizes)
            pixels = F.interpolate(pixels, size=(size, size), mode="nearest")
        return {"pixel_values": pixels, "labels": targets}


def _within(epoch: int, window: tuple[int, int]) -> bool:
    return window[0] <= epoch < window[1]


__all__ = ["RecipeCollate", "copy_blend", "mixup"]
