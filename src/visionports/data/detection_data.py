"""COCO-format detection data as a torch data set of ``pixel_values`` and normalised box targets."""

from __future__ import annotations

import random
from typing import Any

import torch
from torch.utils.data import Dataset

from ..utils.images import open_image
from .coco_dataset import CocoImage, CocoSplit
from .detection_recipe import RecipeAugmentation
from .detection_transforms import DetectionSample, to_normalised_cxcywh


class CocoDetectionDataset(Dataset):
    """Images of a :class:`CocoSplit` through an image processor, with ``labels`` for detection training.

    Each item: ``pixel_values`` ``[3, H, W]`` and ``labels`` = ``{"class_labels", "boxes", "image_id",
    "orig_size"}``; boxes are ``(cx, cy, w, h)`` divided by the image size (so they are unchanged by the
    processor's resize), class labels index the split's sorted category ids. ``horizontal_flip`` is the
    probability of a mirrored copy (0: augmentation-free, as the recipe's final epochs).

    With ``augmentation`` (the dense one-to-one recipe) each image goes through it at the epoch given by
    :meth:`set_epoch` before the processor (whose resize then has nothing left to do); its draws come from a
    generator keyed on (``seed``, ``rank``, epoch, index): the same in every run, different across processes.
    """

    def __init__(
        self,
        split: CocoSplit,
        processor: Any,
        horizontal_flip: float = 0.0,
        seed: int = 0,
        augmentation: RecipeAugmentation | None = None,
        rank: int = 0,
    ):
        if not 0.0 <= horizontal_flip <= 1.0:
            raise ValueError(f"horizontal_flip must be a probability in [0, 1], got {horizontal_flip}")
        self.split, self.processor, self.horizontal_flip = split, processor, horizontal_flip
        self.random = random.Random(seed)
        self.augmentation, self.seed, self.rank, self.epoch = augmentation, seed, rank, 0

    def set_epoch(self, epoch: int) -> None:
        """Augment as the recipe does at ``epoch`` (0-based) from the next item on."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.split.images)

    def __getitem__(self, index: int) -> dict[str, Any]:
        if self.augmentation is not None:
            return self._augmented_item(index)
        image = self.split.images[index]
        pixel_values = self.processor(open_image(image.path), return_tensors="pt")["pixel_values"][0]
        boxes = torch.tensor(image.boxes_xywh, dtype=torch.float32).reshape(-1, 4)
        scale = torch.tensor([image.width, image.height] * 2, dtype=torch.float32)
        boxes = torch.cat([boxes[:, :2] + boxes[:, 2:] / 2, boxes[:, 2:]], dim=1) / scale
        if self.horizontal_flip and self.random.random() < self.horizontal_flip:
            pixel_values = pixel_values.flip(-1)
            boxes[:, 0] = 1 - boxes[:, 0]
        return _item(pixel_values, self._labels(image), boxes, image)

    def _labels(self, image: CocoImage) -> torch.Tensor:
        return torch.tensor([self.split.label_of(c) for c in image.category_ids], dtype=torch.int64)

    def load_sample(self, index: int) -> DetectionSample:
        """Image ``index`` un-augmented: RGB pixels, ``(x1, y1, x2, y2)`` pixel boxes, class labels."""
        image = self.split.images[index]
        pixels = open_image(image.path)
        boxes = torch.tensor(image.boxes_xywh, dtype=torch.float32).reshape(-1, 4)
        boxes = torch.cat([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]], dim=1)
        if pixels.size != (image.width, image.height):  # annotated at another size than decoded
            scale = [pixels.width / image.width, pixels.height / image.height] * 2
            boxes = boxes * torch.tensor(scale, dtype=torch.float32)
        return DetectionSample(pixels, boxes, self._labels(image))

    def _augmented_item(self, index: int) -> dict[str, Any]:
        rng = random.Random(f"item:{self.seed}:{self.rank}:{self.epoch}:{index}")
        sample = self.augmentation(self.load_sample(index), self.epoch, rng)
        pixel_values = self.processor(sample.image, return_tensors="pt")["pixel_values"][0]
        boxes = to_normalised_cxcywh(sample.boxes, *sample.size)
        return _item(pixel_values, sample.labels, boxes, self.split.images[index])


def _item(pixel_values: torch.Tensor, labels: torch.Tensor, boxes: torch.Tensor, image: CocoImage) -> dict:
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
