"""The per-image half of DEIMv2's "dense one-to-one" training recipe and its epoch schedule.

An :class:`AugmentationPlan` holds every setting in epochs *of this run* (already scaled from the variant's
recipe); :class:`RecipeAugmentation` applies the per-image ops the plan allows at the current epoch, as the
original's ``stop_epoch`` policy with a 3-epoch list ``[start, mosaic_stop, stop]`` does:

* epochs ``< start`` and ``>= stop``: the policy ops (Mosaic, photometric distortion, zoom-out, IoU crop) are
  off; sanitize, flip and resize always run;
* ``start <= epoch < mosaic_stop``: Mosaic with probability ``mosaic_prob`` per image; a mosaicked image skips
  zoom-out and IoU crop (the two never meet in one sample); photometric distortion in both cases;
* ``mosaic_stop <= epoch < stop``: photometric distortion, zoom-out and IoU crop without Mosaic.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from .detection_mosaic import Mosaic
from .detection_transforms import (
    DetectionSample,
    HorizontalFlip,
    IoUCrop,
    PhotometricDistort,
    Resize,
    SanitizeBoxes,
    ZoomOut,
)


@dataclass(frozen=True)
class AugmentationPlan:
    """Every setting of the recipe, epochs counted from 0 in this run (an interval ``(a, b)`` is ``a <= e < b``).

    ``size``: training ``(height, width)``; ``policy_epochs``: ``(start, mosaic_stop, stop)`` of the per-image
    ops; ``min_box_size``: sanitize threshold in pixels; ``mixup_epochs`` / ``copyblend_epochs``: the
    windows of the batch mixes; ``multiscale_sizes``: square sizes a batch is resized to before
    ``multiscale_stop_epoch`` (``None``: no multi-scale).
    """

    size: tuple[int, int]
    policy_epochs: tuple[int, int, int]
    mosaic_prob: float
    min_box_size: float
    mixup_prob: float
    mixup_epochs: tuple[int, int]
    copyblend_prob: float
    copyblend_epochs: tuple[int, int]
    multiscale_stop_epoch: int
    multiscale_sizes: tuple[int, ...] | None
    flip_prob: float = 0.5
    photometric_prob: float = 0.5
    iou_crop_prob: float = 0.8
    max_cached_images: int = 50

    @property
    def mosaic_size(self) -> int:
        """Shorter side of each Mosaic tile: half the training size, as in every released recipe."""
        return max(min(self.size) // 2, 1)


def multiscale_sizes(base_size: int, base_repeat: int) -> tuple[int, ...]:
    """The original's scale list: 32-pixel steps from ~0.75x up to below ``base_size``, ``base_size`` repeated
    ``base_repeat`` times, and steps from ~1.25x down (each step rounded down to a multiple of 32)."""
    low, high = int(base_size * 0.75 / 32) * 32, int(base_size * 1.25 / 32) * 32
    steps = (base_size - low) // 32
    return (
        *(low + 32 * i for i in range(steps)),
        *(base_size,) * base_repeat,
        *(high - 32 * i for i in range(steps)),
    )


class RecipeAugmentation:
    """The per-image pipeline of :class:`AugmentationPlan` at a given epoch (``__call__(sample, epoch, rng)``).

    Holds the Mosaic cache, so each data-loading process keeps its own.
    """

    def __init__(self, plan: AugmentationPlan) -> None:
        self.plan = plan
        height, width = plan.size
        self.mosaic = Mosaic(plan.mosaic_size, max_cached=plan.max_cached_images)
        self.photometric = PhotometricDistort(plan.photometric_prob)
        self.zoom_out = ZoomOut(fill=0)
        self.iou_crop = IoUCrop(plan.iou_crop_prob)
        self.sanitize = SanitizeBoxes(plan.min_box_size)
        self.flip = HorizontalFlip(plan.flip_prob)
        self.resize = Resize(height, width)

    def stage(self, epoch: int) -> str:
        """``"plain"`` (policy ops off), ``"mosaic"`` (Mosaic allowed) or ``"distort"`` (no Mosaic)."""
        start, mosaic_stop, stop = self.plan.policy_epochs
        if epoch < start or epoch >= stop:
            return "plain"
        return "mosaic" if epoch < mosaic_stop else "distort"

    def __call__(self, sample: DetectionSample, epoch: int, rng: random.Random) -> DetectionSample:
        stage = self.stage(epoch)
        if stage != "plain":
            with_mosaic = stage == "mosaic" and rng.random() < self.plan.mosaic_prob
            if with_mosaic:
                sample = self.mosaic(sample, rng)
            sample = self.photometric(sample, rng)
            if not with_mosaic:
                sample = self.iou_crop(self.zoom_out(sample, rng), rng)
        sample = self.flip(self.sanitize(sample), rng)
        return self.sanitize(self.resize(sample))


__all__ = ["AugmentationPlan", "RecipeAugmentation", "multiscale_sizes"]
