"""COCO-format detection data as a torch data set of ``pixel_values`` and normalised box targets."""

from __future__ import annotations

import random
from typing import Any

import torch
from torch.utils.data import Dataset

from ..utils.images import open_image
from .coco_dataset import CocoSplit


class CocoDetectionDataset(Dataset):
    """Images of a :class:`CocoSplit` through an image processor, with ``labels`` for detection training.

    Each item: ``pixel_values`` ``[3, H, W]`` and ``labels`` = ``{"class_labels", "boxes", "image_id",
    "orig_size"}``; boxes are ``(cx, cy, w, h)`` divided by the image size (so they are unchanged by the
    processor's resize), class labels index the split's sorted category ids. ``horizontal_flip`` is the
    probability of a mirrored copy (0: augmentation-free, as the recipe's final epochs).
    """

    def __init__(self, split: CocoSplit, processor: Any, horizontal_flip: float = 0.0, seed: int = 0):
        if not 0.0 <= horizontal_flip <= 1.0:
            raise ValueError(f"horizontal_flip must be a probability in [0, 1], got {horizontal_flip}")
        self.split, self.processor, self.horizontal_flip = split, processor, horizontal_flip
        self.random = random.Random(seed)

    def __len__(self) -> int:
        return len(self.split.images)

    def __getitem__(self, index: int) -> dict[str, Any]:
        image = self.split.images[index]
        pixel_values = self.processor(open_image(image.path), return_tensors="pt")["pixel_values"][0]
        boxes = torch.tensor(image.boxes_xywh, dtype=torch.float32).reshape(-1, 4)
        scale = torch.tensor([image.width, image.height] * 2, dtype=torch.float32)
        boxes = torch.cat([boxes[:, :2] + boxes[:, 2:] / 2, boxes[:, 2:]], dim=1) / scale
        if self.horizontal_flip and self.random.random() < self.horizontal_flip:
            pixel_values = pixel_values.flip(-1)
            boxes[:, 0] = 1 - boxes[:, 0]
        labels = torch.tensor([self.split.label_of(c) for c in image.category_ids], dtype=torch.int64)
        return {
            "pixel_values": pixel_values,
            "labels": {
                "class_labels": labels,
                "boxes": boxes.clamp(0.0, 1.0),
                "image_id": torch.tensor(image.image_id),
                "orig_size": torch.tensor([image.height, image.width]),
            },
        }


def collate_detection(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack ``pixel_values``; keep ``labels`` as one dict per image."""
    return {
        "pixel_values": torch.stack([item["pixel_values"] for item in items]),
        "labels": [item["labels"] for item in items],
    }


__all__ = ["CocoDetectionDataset", "collate_detection"]
