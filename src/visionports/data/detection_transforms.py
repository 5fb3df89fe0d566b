"""Per-image detection augmentations on a PIL image and its pixel boxes (the ops of DEIMv2's training pipeline).

Each op takes a :class:`DetectionSample` and a ``random.Random`` and returns a new sample; boxes are
``(x1, y1, x2, y2)`` in pixels of the sample's image and stay aligned with their class labels. The random
draws follow torchvision's documented v2 transforms (``RandomPhotometricDistort``, ``RandomZoomOut``,
``RandomIoUCrop``, ``SanitizeBoundingBoxes``, ``RandomHorizontalFlip``, ``Resize``), reimplemented with PIL,
numpy and torch.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageEnhance


@dataclass
class DetectionSample:
    """An RGB image, its boxes ``[N, 4]`` (x1, y1, x2, y2 in pixels, float32) and class labels ``[N]`` (int64)."""

    image: Image.Image
    boxes: torch.Tensor
    labels: torch.Tensor

    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)`` of the image."""
        return self.image.size

    def keep(self, mask: torch.Tensor) -> DetectionSample:
        """The sample with only the boxes (and labels) where ``mask`` is true."""
        return DetectionSample(self.image, self.boxes[mask], self.labels[mask])


def box_areas(boxes: torch.Tensor) -> torch.Tensor:
    """Areas of ``(x1, y1, x2, y2)`` boxes (0 for inverted ones)."""
    return (boxes[:, 2] - boxes[:, 0]).clamp(min=0) * (boxes[:, 3] - boxes[:, 1]).clamp(min=0)


def clamp_boxes(boxes: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """Boxes clipped to the ``width`` x ``height`` canvas."""
    limits = torch.tensor([width, height, width, height], dtype=boxes.dtype)
    return torch.minimum(boxes.clamp(min=0), limits)


def to_normalised_cxcywh(boxes: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """Pixel ``(x1, y1, x2, y2)`` -> ``(cx, cy, w, h)`` divided by the image size, within [0, 1]."""
    cxcywh = torch.cat([(boxes[:, :2] + boxes[:, 2:]) / 2, boxes[:, 2:] - boxes[:, :2]], dim=1)
    return (cxcywh / torch.tensor([width, height, width, height], dtype=boxes.dtype)).clamp(0.0, 1.0)


class PhotometricDistort:
    """Brightness, contrast, saturation, hue and a channel shuffle, each applied with probability ``p``.

    Factors are drawn uniformly from the ranges of torchvision's ``RandomPhotometricDistort``; contrast goes
    before or after saturation/hue with even odds. Boxes are untouched.
    """

    def __init__(
        self,
        p: float = 0.5,
        brightness: tuple[float, float] = (0.875, 1.125),
        contrast: tuple[float, float] = (0.5, 1.5),
        saturation: tuple[float, float] = (0.5, 1.5),
        hue: tuple[float, float] = (-0.05, 0.05),
    ) -> None:
        self.p, self.brightness, self.contrast = p, brightness, contrast
        self.saturation, self.hue = saturation, hue

    def _factor(self, rng: random.Random, bounds: tuple[float, float]) -> float | None:
        return rng.uniform(*bounds) if rng.random() < self.p else None

    def __call__(self, sample: DetectionSample, rng: random.Random) -> DetectionSample:
        brightness, contrast = self._factor(rng, self.brightness), self._factor(rng, self.contrast)
        saturation, hue = self._factor(rng, self.saturation), self._factor(rng, self.hue)
        contrast_first = rng.random() < 0.5
        permutation = rng.sample(range(3), 3) if rng.random() < self.p else None
        image = _enhance(sample.image, ImageEnhance.Brightness, brightness)
        if contrast_first:
            image = _enhance(image, ImageEnhance.Contrast, contrast)
        image = _shift_hue(_enhance(image, ImageEnhance.Color, saturation), hue)
        if not contrast_first:
            image = _enhance(image, ImageEnhance.Contrast, contrast)
        if permutation is not None:
            image = Image.fromarray(np.ascontiguousarray(np.asarray(image)[..., permutation]))
        return DetectionSample(image, sample.boxes, sample.labels)


def _enhance(image: Image.Image, enhancer: type, factor: float | None) -> Image.Image:
    return image if factor is None else enhancer(image).enhance(factor)


def _shift_hue(image: Image.Image, shift: float | None) -> Image.Image:
    """The hue channel rotated by ``shift`` of a full turn (in [-0.5, 0.5])."""
    if shift is None:
        return image
    hsv = np.array(image.convert("HSV"))
    hsv[..., 0] = ((hsv[..., 0].astype(np.int16) + round(shift * 255)) % 256).astype(np.uint8)
    return Image.fromarray(hsv, mode="HSV").convert("RGB")


class ZoomOut:
    """With probability ``p``: the image placed at a random spot of a canvas 1-4x its size filled with ``fill``."""

    def __init__(self, fill: int = 0, side_range: tuple[float, float] = (1.0, 4.0), p: float = 0.5) -> None:
        self.fill, self.side_range, self.p = fill, side_range, p

    def __call__(self, sample: DetectionSample, rng: random.Random) -> DetectionSample:
        if rng.random() >= self.p:
            return sample
        width, height = sample.size
        ratio = rng.uniform(*self.side_range)
        canvas_w, canvas_h = int(width * ratio), int(height * ratio)
        left, top = int((canvas_w - width) * rng.random()), int((canvas_h - height) * rng.random())
        canvas = Image.new("RGB", (canvas_w, canvas_h), (self.fill,) * 3)
        canvas.paste(sample.image, (left, top))
        shift = torch.tensor([left, top, left, top], dtype=sample.boxes.dtype)
        return DetectionSample(canvas, sample.boxes + shift, sample.labels)


class IoUCrop:
    """With probability ``p``: the SSD crop sampler of torchvision's ``RandomIoUCrop``.

    Draws a minimum IoU from ``options`` (1.0: keep the image as is), then up to ``trials`` crops of
    ``min_scale``-``max_scale`` of each side with an aspect ratio in range; the first crop that holds a box
    centre and overlaps a kept box by at least that IoU wins. Boxes whose centre lies outside are dropped, the
    others are clipped to the crop.
    """

    def __init__(
        self,
        p: float = 0.8,
        min_scale: float = 0.3,
        max_scale: float = 1.0,
        aspect_range: tuple[float, float] = (0.5, 2.0),
        options: Sequence[float] = (0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0),
        trials: int = 40,
        max_rounds: int = 1000,
    ) -> None:
        self.p, self.min_scale, self.max_scale, self.aspect_range = p, min_scale, max_scale, aspect_range
        self.options, self.trials, self.max_rounds = tuple(options), trials, max_rounds

    def __call__(self, sample: DetectionSample, rng: random.Random) -> DetectionSample:
        if rng.random() >= self.p or not len(sample.boxes):
            return sample
        for _ in range(self.max_rounds):
            min_iou = rng.choice(self.options)
            if min_iou >= 1.0:
                return sample
            for _ in range(self.trials):
                crop = self._try_crop(sample, rng, min_iou)
                if crop is not None:
                    return crop
        return sample

    def _try_crop(
        self, sample: DetectionSample, rng: random.Random, min_iou: float
    ) -> DetectionSample | None:
        width, height = sample.size
        span = self.max_scale - self.min_scale
        new_w = int(width * (self.min_scale + span * rng.random()))
        new_h = int(height * (self.min_scale + span * rng.random()))
        if new_h == 0 or not self.aspect_range[0] <= new_w / new_h <= self.aspect_range[1]:
            return None
        left, top = int((width - new_w) * rng.random()), int((height - new_h) * rng.random())
        right, bottom = left + new_w, top + new_h
        boxes = sample.boxes
        cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
        inside = (left < cx) & (cx < right) & (top < cy) & (cy < bottom)
        if not inside.any():
            return None
        window = torch.tensor([[left, top, right, bottom]], dtype=boxes.dtype)
        if box_iou(boxes[inside], window).max() < min_iou:
            return None
        kept = sample.keep(inside)
        shifted = kept.boxes - torch.tensor([left, top, left, top], dtype=boxes.dtype)
        image = sample.image.crop((left, top, right, bottom))
        return DetectionSample(image, clamp_boxes(shifted, new_w, new_h), kept.labels)


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pairwise IoU ``[len(a), len(b)]`` of ``(x1, y1, x2, y2)`` boxes."""
    top_left = torch.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (bottom_right - top_left).clamp(min=0).prod(-1)
    union = box_areas(a)[:, None] + box_areas(b)[None, :] - inter
    return inter / union.clamp(min=1e-9)


class SanitizeBoxes:
    """Drop boxes (with their labels) narrower or lower than ``min_size``, under ``min_area``, non-finite, or
    reaching outside the image: what torchvision's ``SanitizeBoundingBoxes`` removes."""

    def __init__(self, min_size: float = 1.0, min_area: float = 1.0) -> None:
        self.min_size, self.min_area = min_size, min_area

    def __call__(self, sample: DetectionSample, rng: random.Random | None = None) -> DetectionSample:
        boxes, (width, height) = sample.boxes, sample.size
        widths, heights = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
        valid = (widths >= self.min_size) & (heights >= self.min_size) & (widths * heights >= self.min_area)
        valid &= torch.isfinite(boxes).all(dim=1) & (boxes >= 0).all(dim=1)
        valid &= (boxes[:, 2] <= width) & (boxes[:, 3] <= height)
        return sample.keep(valid)


class HorizontalFlip:
    """With probability ``p``: the image and its boxes mirrored left to right."""

    def __init__(self, p: float = 0.5) -> None:
        self.p = p

    def __call__(self, sample: DetectionSample, rng: random.Random) -> DetectionSample:
        if rng.random() >= self.p:
            return sample
        width = sample.size[0]
        boxes = sample.boxes[:, [2, 1, 0, 3]] * torch.tensor([-1, 1, -1, 1], dtype=sample.boxes.dtype)
        boxes = boxes + torch.tensor([width, 0, width, 0], dtype=boxes.dtype)
        return DetectionSample(sample.image.transpose(Image.Transpose.FLIP_LEFT_RIGHT), boxes, sample.labels)


class Resize:
    """The image resized to ``(height, width)`` (bilinear, antialiased as PIL does; aspect ratio not kept)."""

    def __init__(self, height: int, width: int) -> None:
        self.height, self.width = height, width

    def __call__(self, sample: DetectionSample, rng: random.Random | None = None) -> DetectionSample:
        return resize_sample(sample, self.width, self.height)


def resize_sample(sample: DetectionSample, width: int, height: int) -> DetectionSample:
    """``sample`` resized to ``width`` x ``height`` pixels, boxes scaled alike."""
    old_w, old_h = sample.size
    if (old_w, old_h) == (width, height):
        return sample
    image = sample.image.resize((width, height), resample=Image.Resampling.BILINEAR)
    scale = torch.tensor([width / old_w, height / old_h] * 2, dtype=sample.boxes.dtype)
    return DetectionSample(image, sample.boxes * scale, sample.labels)


def resize_shorter_side(sample: DetectionSample, size: int) -> DetectionSample:
    """``sample`` resized so its shorter side is ``size`` (the longer one truncated, as torchvision does)."""
    width, height = sample.size
    if width <= height:
        return resize_sample(sample, size, int(size * height / width))
    return resize_sample(sample, int(size * width / height), size)


__all__ = [
    "DetectionSample",
    "HorizontalFlip",
    "IoUCrop",
    "PhotometricDistort",
    "Resize",
    "SanitizeBoxes",
    "ZoomOut",
    "box_areas",
    "box_iou",
    "clamp_boxes",
    "resize_sample",
    "resize_shorter_side",
    "to_normalised_cxcywh",
]
