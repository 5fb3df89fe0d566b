"""``PackedImageProcessor``: images of any size -> packed ``hidden_states`` + ``grid_thw`` for the packed encoders."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image
from transformers.feature_extraction_utils import BatchFeature
from transformers.image_processing_utils import BaseImageProcessor

from .images import as_image_list, to_rgb
from .packing import pack_images

CLIP_MEAN, CLIP_STD = [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]
IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


class PackedImageProcessor(BaseImageProcessor):
    r"""Resize each image (aspect kept) so its pixel count lies in ``[min_pixels, max_pixels]`` with both sides
    multiples of ``patch_size`` — or to ``fixed_size``² for fixed-size encoders — then rescale, normalise and pack.

    Returns ``hidden_states [sum h*w, patch_size² * 3]`` and ``grid_thw [n, 3]``.
    """

    model_input_names = ["hidden_states", "grid_thw"]

    def __init__(self, patch_size: int = 14, image_mean: Sequence[float] = CLIP_MEAN, image_std: Sequence[float] = CLIP_STD,
                 min_pixels: int = 56 * 56, max_pixels: int = 448 * 448, fixed_size: int | None = None,
                 **kwargs: Any) -> None:  # fmt: skip
        super().__init__(**kwargs)
        self.patch_size = int(patch_size)
        self.image_mean, self.image_std = list(image_mean), list(image_std)
        self.min_pixels, self.max_pixels = int(min_pixels), int(max_pixels)
        self.fixed_size = fixed_size
        if self.min_pixels > self.max_pixels:
            raise ValueError(f"min_pixels ({min_pixels}) must not exceed max_pixels ({max_pixels})")

    @classmethod
    def for_config(cls, config: Any, **kwargs: Any) -> PackedImageProcessor:
        """The standard normalisation of an AIMv2, SigLIP2 or DINOv3 vision config."""
        kind = type(config).__name__
        mean, std = {
            "Siglip2VisionConfig": ([0.5] * 3, [0.5] * 3),
            "DINOv3ViTConfig": (IMAGENET_MEAN, IMAGENET_STD),
        }.get(kind, (CLIP_MEAN, CLIP_STD))
        fixed = config.image_size if kind == "Aimv2VisionConfig" and not config.is_native else None
        return cls(patch_size=config.patch_size, image_mean=mean, image_std=std, fixed_size=fixed, **kwargs)

    def target_size(self, height: int, width: int) -> tuple[int, int]:
        """(height, width) after resizing: multiples of the patch size within the pixel budget."""
        if self.fixed_size:
            return self.fixed_size, self.fixed_size
        p = self.patch_size
        scale = 1.0
        if height * width > self.max_pixels:
            scale = math.sqrt(self.max_pixels / (height * width))
        elif height * width < self.min_pixels:
            scale = math.sqrt(self.min_pixels / (height * width))
        h = max(p, round(height * scale / p) * p)
        w = max(p, round(width * scale / p) * p)
        while h * w > self.max_pixels and max(h, w) > p:  # rounding up may overshoot the budget
            h, w = (h - p, w) if h >= w else (h, w - p)
        return h, w

    def preprocess(self, images: Any, return_tensors: str | None = "pt", **kwargs: Any) -> BatchFeature:
        if kwargs:
            raise TypeError(f"unexpected arguments for PackedImageProcessor: {', '.join(sorted(kwargs))}")
        tensors = []
        mean = torch.tensor(self.image_mean).view(-1, 1, 1)
        std = torch.tensor(self.image_std).view(-1, 1, 1)
        for i, image in enumerate(as_image_list(images)):
            rgb = to_rgb(image, name=f"images[{i}]")
            h, w = self.target_size(rgb.height, rgb.width)
            resized = rgb.resize((w, h), resample=Image.BICUBIC)
            x = torch.from_numpy(np.array(resized, dtype=np.uint8)).permute(2, 0, 1).float() / 255.0
            tensors.append((x - mean) / std)
        hidden_states, grid_thw = pack_images(tensors, self.patch_size)
        return BatchFeature(data={"hidden_states": hidden_states, "grid_thw": grid_thw}, tensor_type="pt")
