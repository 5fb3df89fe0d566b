"""The original VidEoMT YouTube-VIS training augmentation, drawn once per clip and applied to frames and masks.

Reproduces ``build_augmentation`` with the released YouTube-VIS configs (``configs/ytvis*/Base_R50.yaml``, which
the VidEoMT configs inherit; ``MIN_SIZE_TRAIN_SAMPLING: choice_by_clip``, ``RANDOM_FLIP: flip_by_clip``), in
this order, each draw shared by all frames of a clip:

1. with probability 0.5 (``CROP.ENABLED: True``): resize the short side to one of (400, 500, 600) (long side at
   most 1333), then crop a random (h, w) with each side drawn from [384, 600] (``absolute_range``, clipped to
   the image) at a random offset;
2. resize the short side to one of ``MIN_SIZE_TRAIN`` = (320, 352, ..., 640), long side at most
   ``MAX_SIZE_TRAIN`` = 768;
3. horizontal flip with probability 0.5.

Frames are resized with PIL bilinear and masks with PIL nearest, as detectron2 does. Evaluation clips get only
the test resize (short side ``MIN_SIZE_TEST``, long side at most 1333). :meth:`ClipAugmentation.scaled`
multiplies every size, so CPU tests and benchmarks can train on small frames with the same recipe.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np
from PIL import Image

YTVIS_MIN_SIZES_TRAIN = (320, 352, 392, 416, 448, 480, 512, 544, 576, 608, 640)
"""``INPUT.MIN_SIZE_TRAIN`` of the released YouTube-VIS configs."""


@dataclass(frozen=True)
class ClipAugmentation:
    """Settings of the clip augmentation (defaults: the released YouTube-VIS recipe) and the normalisation."""

    min_sizes: tuple[int, ...] = YTVIS_MIN_SIZES_TRAIN
    max_size: int = 768
    crop_probability: float = 0.5
    crop_min_sizes: tuple[int, ...] = (400, 500, 600)
    crop_max_size: int = 1333
    crop_size_range: tuple[int, int] = (384, 600)
    flip_probability: float = 0.5
    test_min_size: int = 448
    test_max_size: int = 1333
    image_mean: tuple[float, float, float] = (123.675, 116.28, 103.53)
    image_std: tuple[float, float, float] = (58.395, 57.12, 57.375)

    def __post_init__(self) -> None:
        for name in ("min_sizes", "crop_min_sizes"):
            sizes = getattr(self, name)
            if not sizes or min(sizes) < 1:
                raise ValueError(f"{name} must be a non-empty list of positive sizes, got {sizes!r}")
        for name in ("max_size", "crop_max_size", "test_min_size", "test_max_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)!r}")
        low, high = self.crop_size_range
        if not 1 <= low <= high:
            raise ValueError(
                f"crop_size_range must be (min, max) with 1 <= min <= max, got {self.crop_size_range}"
            )
        for name in ("crop_probability", "flip_probability"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be a probability in [0, 1], got {getattr(self, name)!r}")
        if len(self.image_mean) != 3 or len(self.image_std) != 3 or min(self.image_std) <= 0:
            raise ValueError(
                f"image_mean / image_std must be 3 values (std > 0), got {self.image_mean}, {self.image_std}"
            )

    @classmethod
    def from_processor(cls, processor: Any, **overrides: Any) -> ClipAugmentation:
        """The default recipe with a VidEoMT video processor's mean, std and test resize."""
        try:
            values = {
                "image_mean": tuple(float(v) for v in processor.image_mean),
                "image_std": tuple(float(v) for v in processor.image_std),
                "test_min_size": int(processor.min_size),
                "test_max_size": int(processor.max_size),
            }
        except (AttributeError, TypeError) as err:
            raise ValueError(
                f"processor must have image_mean, image_std, min_size and max_size, got {type(processor).__name__}"
            ) from err
        return cls(**{**values, **overrides})

    def scaled(self, factor: float) -> ClipAugmentation:
        """The same recipe with every size multiplied by ``factor`` (rounded, at least 1)."""
        if factor <= 0:
            raise ValueError(f"size scale factor must be positive, got {factor}")
        if factor == 1:
            return self
        size_fields = ("min_sizes", "max_size", "crop_min_sizes", "crop_max_size", "crop_size_range",
                       "test_min_size", "test_max_size")  # fmt: skip
        changes = {}
        for field in fields(self):
            if field.name in size_fields:
                value = getattr(self, field.name)
                scale = lambda v: max(1, int(round(v * factor)))  # noqa: E731
                changes[field.name] = (
                    tuple(scale(v) for v in value) if isinstance(value, tuple) else scale(value)
                )
        return replace(self, **changes)


@dataclass(frozen=True)
class ClipTransform:
    """One drawn augmentation: optional pre-crop resize, optional crop (top, left, h, w), resize, flip."""

    input_size: tuple[int, int]
    crop_resize: tuple[int, int] | None
    crop: tuple[int, int, int, int] | None
    resize: tuple[int, int]
    flip: bool

    @property
    def output_size(self) -> tuple[int, int]:
        return self.resize

    def apply_image(self, image: np.ndarray) -> np.ndarray:
        """A uint8 [H, W, 3] frame through the transform (bilinear resizes)."""
        return self._apply(image, Image.BILINEAR)

    def apply_mask(self, mask: np.ndarray) -> np.ndarray:
        """A bool [H, W] mask through the transform (nearest resizes)."""
        return self._apply(mask.astype(np.uint8), Image.NEAREST).astype(bool)

    def _apply(self, array: np.ndarray, resample: int) -> np.ndarray:
        if array.shape[:2] != self.input_size:
            raise ValueError(f"expected an array of size {self.input_size}, got {array.shape[:2]}")
        if self.crop_resize is not None:
            array = _resized(array, self.crop_resize, resample)
        if self.crop is not None:
            top, left, height, width = self.crop
            array = array[top : top + height, left : left + width]
        array = _resized(array, self.resize, resample)
        return np.array(array[:, ::-1] if self.flip else array)  # a writable copy


def _resized(array: np.ndarray, size: tuple[int, int], resample: int) -> np.ndarray:
    if array.shape[:2] == size:
        return array
    return np.asarray(Image.fromarray(array).resize((size[1], size[0]), resample=resample))


def _short_edge(height: int, width: int, short: int, max_size: int) -> tuple[int, int]:
    """detectron2's ResizeShortestEdge output size (as the processor's ``shortest_edge_size``, which lives in
    the model package; not imported so that the data pipeline does not load the model)."""
    scale = short / min(height, width)
    new_h, new_w = (short, scale * width) if height < width else (scale * height, short)
    if max(new_h, new_w) > max_size:
        cap = max_size / max(new_h, new_w)
        new_h, new_w = new_h * cap, new_w * cap
    return max(int(new_h + 0.5), 1), max(int(new_w + 0.5), 1)


def _choice(sizes: Sequence[int], rng: np.random.Generator) -> int:
    return int(sizes[int(rng.integers(len(sizes)))])


def sample_clip_transform(
    settings: ClipAugmentation, height: int, width: int, rng: np.random.Generator
) -> ClipTransform:
    """Draw the training augmentation of one clip whose frames are ``height`` x ``width``."""
    size = (height, width)
    crop_resize = crop = None
    if rng.random() < settings.crop_probability:
        short = _choice(settings.crop_min_sizes, rng)
        size = crop_resize = _short_edge(height, width, short, settings.crop_max_size)
        low, high = settings.crop_size_range
        crop_h, crop_w = (int(rng.integers(min(side, low), min(side, high) + 1)) for side in size)
        top, left = int(rng.integers(size[0] - crop_h + 1)), int(rng.integers(size[1] - crop_w + 1))
        crop, size = (top, left, crop_h, crop_w), (crop_h, crop_w)
    resize = _short_edge(*size, _choice(settings.min_sizes, rng), settings.max_size)
    flip = bool(rng.random() < settings.flip_probability)
    return ClipTransform((height, width), crop_resize, crop, resize, flip)


def eval_clip_transform(settings: ClipAugmentation, height: int, width: int) -> ClipTransform:
    """The evaluation transform: only the test-time shortest-edge resize."""
    resize = _short_edge(height, width, settings.test_min_size, settings.test_max_size)
    return ClipTransform((height, width), None, None, resize, False)


__all__ = [
    "YTVIS_MIN_SIZES_TRAIN",
    "ClipAugmentation",
    "ClipTransform",
    "sample_clip_transform",
    "eval_clip_transform",
]
