"""Mosaic: four images tiled on a 2x2 grid, then one random affine transform of the whole (DEIMv2's ``Mosaic``)."""

from __future__ import annotations

import math
import random

import torch
from PIL import Image

from .detection_transforms import DetectionSample, clamp_boxes, resize_shorter_side


class Mosaic:
    """Tile the sample with three recently seen images and warp the tiling by a random affine transform.

    Every image is first resized so its shorter side is ``output_size``. The sample goes in the top-left cell,
    the other three are drawn (with replacement) from a cache of the last ``max_cached`` resized images, the
    sample included; when the cache overflows, a random entry other than the newest (``random_pop``) or the
    oldest is evicted. Each cell is as large as the largest image, so the canvas is twice that; cells are
    pasted at their top-left corner on a black (``fill``) canvas. The affine transform (rotation of up to
    ``rotation`` degrees, translation of up to ``translation`` of each side, scaling in ``scaling``, about the
    canvas centre, nearest-neighbour pixels) keeps the canvas size; each box becomes the axis-aligned box of its
    warped corners, clipped to the canvas (boxes that leave it become degenerate, for a later sanitize).
    """

    def __init__(
        self,
        output_size: int,
        rotation: float = 10.0,
        translation: tuple[float, float] = (0.1, 0.1),
        scaling: tuple[float, float] = (0.5, 1.5),
        fill: int = 0,
        max_cached: int = 50,
        random_pop: bool = True,
    ) -> None:
        self.output_size, self.rotation, self.translation, self.scaling = (
            output_size,
            rotation,
            translation,
            scaling,
        )
        self.fill, self.max_cached, self.random_pop = fill, max_cached, random_pop
        self.cache: list[DetectionSample] = []

    def __call__(self, sample: DetectionSample, rng: random.Random) -> DetectionSample:
        current = resize_shorter_side(sample, self.output_size)
        self._remember(current, rng)
        others = [self.cache[rng.randrange(len(self.cache))] for _ in range(3)]
        return self._warp(tile([current, *others], self.fill), rng)

    def _remember(self, sample: DetectionSample, rng: random.Random) -> None:
        self.cache.append(sample)
        if len(self.cache) > self.max_cached:
            self.cache.pop(rng.randint(0, len(self.cache) - 2) if self.random_pop else 0)

    def _warp(self, sample: DetectionSample, rng: random.Random) -> DetectionSample:
        width, height = sample.size
        angle = math.radians(rng.uniform(-self.rotation, self.rotation))
        shift_x = round(rng.uniform(-self.translation[0] * width, self.translation[0] * width))
        shift_y = round(rng.uniform(-self.translation[1] * height, self.translation[1] * height))
        scale = rng.uniform(*self.scaling)
        forward = affine_matrix(angle, scale, (width / 2, height / 2), (shift_x, shift_y))
        return warp_affine(sample, forward, self.fill)


def tile(samples: list[DetectionSample], fill: int = 0) -> DetectionSample:
    """Four samples on a 2x2 grid of cells as large as the largest, each at its cell's top-left corner."""
    cell_w = max(s.size[0] for s in samples)
    cell_h = max(s.size[1] for s in samples)
    canvas = Image.new("RGB", (2 * cell_w, 2 * cell_h), (fill,) * 3)
    boxes, labels = [], []
    for index, sample in enumerate(samples):
        left, top = (index % 2) * cell_w, (index // 2) * cell_h
        canvas.paste(sample.image, (left, top))
        boxes.append(sample.boxes + torch.tensor([left, top, left, top], dtype=sample.boxes.dtype))
        labels.append(sample.labels)
    return DetectionSample(canvas, torch.cat(boxes), torch.cat(labels))


def affine_matrix(
    angle: float, scale: float, centre: tuple[float, float], shift: tuple[float, float]
) -> torch.Tensor:
    """``[2, 3]`` map of pixel coordinates: rotate by ``angle`` radians (counter-clockwise on screen) and scale
    about ``centre``, then translate by ``shift``."""
    cos, sin = math.cos(angle) * scale, math.sin(angle) * scale
    cx, cy = centre
    linear = torch.tensor([[cos, sin], [-sin, cos]], dtype=torch.float64)
    offset = torch.tensor([cx + shift[0], cy + shift[1]], dtype=torch.float64) - linear @ torch.tensor(
        [cx, cy], dtype=torch.float64
    )
    return torch.cat([linear, offset[:, None]], dim=1)


def warp_affine(sample: DetectionSample, forward: torch.Tensor, fill: int = 0) -> DetectionSample:
    """The image warped by the ``[2, 3]`` pixel map ``forward`` (canvas size kept) and its boxes alike."""
    width, height = sample.size
    inverse = torch.linalg.inv(torch.cat([forward, torch.tensor([[0.0, 0.0, 1.0]], dtype=forward.dtype)]))
    coefficients = tuple(inverse[:2].flatten().tolist())
    image = sample.image.transform(
        (width, height), Image.Transform.AFFINE, coefficients, Image.Resampling.NEAREST, fillcolor=(fill,) * 3
    )
    x1, y1, x2, y2 = sample.boxes.double().unbind(-1)
    corners = torch.stack(
        [torch.stack([x, y, torch.ones_like(x)], -1) for x in (x1, x2) for y in (y1, y2)], 1
    )
    warped = corners @ forward.T  # [N, 4 corners, 2]
    boxes = torch.cat([warped.amin(dim=1), warped.amax(dim=1)], dim=1).to(sample.boxes.dtype)
    return DetectionSample(image, clamp_boxes(boxes, width, height), sample.labels)


__all__ = ["Mosaic", "affine_matrix", "tile", "warp_affine"]
