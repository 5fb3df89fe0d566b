"""SAM3 image preprocessing and instance post-processing, as the original ``Sam3Processor`` (no torchvision)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from transformers.feature_extraction_utils import BatchFeature
from transformers.image_processing_utils import BaseImageProcessor

from ...boxes import center_to_corners
from ...images import as_image_list, to_rgb


class Sam3LiteTextImageProcessor(BaseImageProcessor):
    r"""Resize to ``size`` x ``size`` (bilinear with antialiasing on the uint8 image, aspect ratio not kept: what
    torchvision's ``Resize`` computes on uint8 tensors), scale to [0, 1], normalise with mean/std 0.5.

    ``post_process_instance_segmentation`` keeps queries whose ``sigmoid(logit) * sigmoid(presence)`` exceeds
    ``threshold`` and returns their scores, pixel boxes (not clipped) and masks at the original size.
    """

    model_input_names = ["pixel_values"]

    def __init__(self, size: int = 1008, image_mean: Sequence[float] = (0.5, 0.5, 0.5),
                 image_std: Sequence[float] = (0.5, 0.5, 0.5), threshold: float = 0.5, mask_threshold: float = 0.5,
                 **kwargs: Any) -> None:  # fmt: skip
        super().__init__(**kwargs)
        self.size = int(size)
        self.image_mean, self.image_std = list(image_mean), list(image_std)
        self.threshold, self.mask_threshold = float(threshold), float(mask_threshold)

    def _prepare(self, image: Any, name: str) -> tuple[torch.Tensor, tuple[int, int]]:
        rgb = to_rgb(image, name=name)
        pixels = torch.from_numpy(np.array(rgb, dtype=np.uint8)).permute(2, 0, 1)[None]
        if pixels.shape[-2:] != (self.size, self.size):
            pixels = F.interpolate(pixels, size=(self.size, self.size), mode="bilinear", antialias=True,
                                   align_corners=False)  # fmt: skip
        x = pixels[0].float() / 255.0
        mean = torch.tensor(self.image_mean).view(-1, 1, 1)
        std = torch.tensor(self.image_std).view(-1, 1, 1)
        return (x - mean) / std, (rgb.height, rgb.width)

    def preprocess(self, images: Any, return_tensors: str | None = "pt", **kwargs: Any) -> BatchFeature:
        """``pixel_values`` [B, 3, size, size] and ``original_sizes`` [B, 2] (height, width)."""
        if kwargs:
            raise TypeError(
                f"unexpected arguments for Sam3LiteTextImageProcessor: {', '.join(sorted(kwargs))}"
            )
        prepared = [self._prepare(image, f"images[{i}]") for i, image in enumerate(as_image_list(images))]
        data = {"pixel_values": torch.stack([p for p, _ in prepared]),
                "original_sizes": torch.tensor([s for _, s in prepared])}  # fmt: skip
        return BatchFeature(data=data, tensor_type="pt")

    def post_process_instance_segmentation(
        self,
        outputs: Any,
        threshold: float | None = None,
        mask_threshold: float | None = None,
        target_sizes: Sequence[Sequence[int]] | torch.Tensor | None = None,
    ) -> list[dict[str, torch.Tensor]]:
        """Per image: ``scores`` [K], ``boxes`` [K, 4] (x0, y0, x1, y1 pixels), ``mask_probs`` and ``masks`` [K, H, W]."""
        threshold = self.threshold if threshold is None else float(threshold)
        mask_threshold = self.mask_threshold if mask_threshold is None else float(mask_threshold)
        for name, value in (("threshold", threshold), ("mask_threshold", mask_threshold)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        logits, presence = outputs["pred_logits"], outputs["presence_logits"]
        boxes, masks = outputs["pred_boxes"], outputs["pred_masks"]  # boxes: normalised (cx, cy, w, h)
        batch = logits.shape[0]
        if target_sizes is None:
            raise ValueError("target_sizes: give the (height, width) of every original image")
        sizes = torch.as_tensor(target_sizes)
        if sizes.ndim != 2 or sizes.shape != (batch, 2):
            raise ValueError(
                f"target_sizes must hold {batch} (height, width) pairs, got shape {list(sizes.shape)}"
            )
        results = []
        for b in range(batch):
            scores = torch.sigmoid(logits[b, :, 0]) * torch.sigmoid(presence[b].reshape(()))
            keep = scores > threshold
            height, width = (int(v) for v in sizes[b])
            scale = torch.tensor([width, height, width, height], dtype=boxes.dtype)
            kept_masks = F.interpolate(masks[b][keep][:, None], size=(height, width), mode="bilinear",
                                       align_corners=False).sigmoid()  # fmt: skip
            results.append({"scores": scores[keep], "boxes": center_to_corners(boxes[b][keep]) * scale,
                            "mask_probs": kept_masks[:, 0], "masks": kept_masks[:, 0] > mask_threshold})  # fmt: skip
        return results
