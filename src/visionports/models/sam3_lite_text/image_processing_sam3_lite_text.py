"""SAM3 image preprocessing and instance post-processing, as the original ``Sam3Processor`` (no torchvision)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from transformers.image_utils import ChannelDimension
from transformers.utils import TensorType

from ...core.processing_options import RgbImageProcessor, normalize, rescale, to_layout
from ...utils.boxes import center_to_corners
from ...utils.images import to_rgb


class Sam3LiteTextImageProcessor(RgbImageProcessor):
    r"""Resize to ``size`` x ``size`` (bilinear with antialiasing on the uint8 image, aspect ratio not kept: what
    torchvision's ``Resize`` computes on uint8 tensors), scale to [0, 1], normalise with mean/std 0.5.

    ``post_process_instance_segmentation`` keeps queries whose ``sigmoid(logit) * sigmoid(presence)`` exceeds
    ``threshold`` and returns their scores, pixel boxes (not clipped) and masks at the original size.
    """

    model_input_names = ["pixel_values"]
    _reader = "SAM3"

    def __init__(
        self,
        size: int = 1008,
        image_mean: Sequence[float] = (0.5, 0.5, 0.5),
        image_std: Sequence[float] = (0.5, 0.5, 0.5),
        threshold: float = 0.5,
        mask_threshold: float = 0.5,
        do_resize: bool = True,
        do_rescale: bool = True,
        rescale_factor: float = 1 / 255,
        do_normalize: bool = True,
        do_convert_rgb: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.size = int(size)
        self.image_mean, self.image_std = list(image_mean), list(image_std)
        self.threshold, self.mask_threshold = float(threshold), float(mask_threshold)
        self.do_resize, self.do_rescale, self.do_normalize = (
            bool(do_resize),
            bool(do_rescale),
            bool(do_normalize),
        )
        self.rescale_factor = float(rescale_factor)
        self.do_convert_rgb = bool(do_convert_rgb)

    def _options(
        self, given: Mapping[str, Any], unknown: Mapping[str, Any], return_tensors: str | TensorType | None
    ) -> dict[str, Any]:
        """A ``size`` mapping must be square; the settings' ``size`` is an ``int``."""
        size = given["size"]
        if isinstance(size, Mapping):
            if size.get("height") != size.get("width"):
                raise ValueError(f"size must be square (SAM3 reads size x size images), got {dict(size)}")
            given = {**given, "size": size["height"]}
        options = super()._options(given, unknown, return_tensors)
        options["size"] = int(options["size"])
        return options

    def _batch(
        self, prepared: list[tuple[torch.Tensor, tuple[int, int]]], data_format: str | ChannelDimension
    ) -> dict[str, torch.Tensor]:
        """``pixel_values`` [B, 3, size, size] and ``original_sizes`` [B, 2] (height, width)."""
        shapes = {tuple(p.shape) for p, _ in prepared}
        if len(shapes) > 1:
            raise ValueError(
                f"images of different sizes cannot be stacked without do_resize: {sorted(shapes)}"
            )
        pixels = to_layout(torch.stack([p for p, _ in prepared]), data_format)
        return {"pixel_values": pixels, "original_sizes": torch.tensor([s for _, s in prepared])}

    def _prepare(
        self, image: Any, name: str, options: Mapping[str, Any]
    ) -> tuple[torch.Tensor, tuple[int, int]]:
        rgb = to_rgb(image, name=name)
        pixels = torch.from_numpy(np.array(rgb, dtype=np.uint8)).permute(2, 0, 1)[None]
        side = options["size"]
        if options["do_resize"] and pixels.shape[-2:] != (side, side):
            pixels = F.interpolate(
                pixels, size=(side, side), mode="bilinear", antialias=True, align_corners=False
            )
        x = pixels[0].float()
        if options["do_rescale"]:
            x = rescale(x, options["rescale_factor"])
        if options["do_normalize"]:
            x = normalize(x, options["image_mean"], options["image_std"])
        return x, (rgb.height, rgb.width)

    def post_process_instance_segmentation(
        self,
        outputs: Any,
        threshold: float | Sequence[float] | None = None,
        mask_threshold: float | None = None,
        target_sizes: Sequence[Sequence[int]] | torch.Tensor | None = None,
    ) -> list[dict[str, Any]]:
        """One result per query (an image/prompt pair): ``scores`` [K], ``boxes`` [K, 4] (x0, y0, x1, y1 pixels),
        ``mask_probs`` and ``masks`` [K, H, W], ``image_index`` and ``prompt_index``.

        ``target_sizes`` holds the (height, width) of every image the outputs' ``image_ids`` refer to (of every
        query when the outputs carry no ids); ``threshold`` is one value or one per query.
        """
        mask_threshold = self.mask_threshold if mask_threshold is None else float(mask_threshold)
        logits, presence = outputs["pred_logits"], outputs["presence_logits"]
        boxes, masks = outputs["pred_boxes"], outputs["pred_masks"]  # boxes: normalised (cx, cy, w, h)
        queries = logits.shape[0]
        thresholds = _per_query(self.threshold if threshold is None else threshold, queries)
        for name, value in [("threshold", t) for t in thresholds] + [("mask_threshold", mask_threshold)]:
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        image_ids, text_ids = _ids(outputs, "image_ids", queries), _ids(outputs, "text_ids", queries)
        sizes = _target_sizes(target_sizes, image_ids, exact=_get(outputs, "image_ids") is None)
        results = []
        for q in range(queries):
            image = int(image_ids[q])
            height, width = (int(v) for v in sizes[image])
            result = _select(
                logits[q], presence[q], boxes[q], masks[q], thresholds[q], mask_threshold, height, width
            )
            results.append({**result, "image_index": image, "prompt_index": int(text_ids[q])})
        return results


def _select(
    logits: torch.Tensor,
    presence: torch.Tensor,
    boxes: torch.Tensor,
    masks: torch.Tensor,
    threshold: float,
    mask_threshold: float,
    height: int,
    width: int,
) -> dict[str, torch.Tensor]:
    """The original ``Sam3Processor`` selection for one query: score, pixel boxes, resized masks."""
    scores = torch.sigmoid(logits[:, 0]) * torch.sigmoid(presence.reshape(()))
    keep = scores > threshold
    scale = torch.tensor([width, height, width, height], dtype=boxes.dtype, device=boxes.device)
    kept = F.interpolate(masks[keep][:, None], size=(height, width), mode="bilinear", align_corners=False)
    probs = kept.sigmoid()[:, 0]
    return {"scores": scores[keep], "boxes": center_to_corners(boxes[keep]) * scale, "mask_probs": probs,
            "masks": probs > mask_threshold}  # fmt: skip


def _per_query(threshold: float | Sequence[float] | torch.Tensor, queries: int) -> list[float]:
    if isinstance(threshold, int | float):
        return [float(threshold)] * queries
    values = [float(t) for t in threshold]
    if len(values) != queries:
        raise ValueError(f"threshold: give one value or one per query ({queries}), got {len(values)}")
    return values


def _get(outputs: Any, name: str) -> Any:
    return outputs.get(name) if hasattr(outputs, "get") else getattr(outputs, name, None)


def _target_sizes(target_sizes: Any, image_ids: torch.Tensor, exact: bool) -> torch.Tensor:
    """[images, 2] (height, width); exactly one per query when the outputs name no images."""
    if target_sizes is None:
        raise ValueError("target_sizes: give the (height, width) of every original image")
    sizes = torch.as_tensor(target_sizes)
    needed = int(image_ids.max()) + 1
    if sizes.ndim != 2 or sizes.shape[1] != 2 or len(sizes) < needed or (exact and len(sizes) != needed):
        raise ValueError(
            f"target_sizes must hold {needed} (height, width) pairs, got shape {list(sizes.shape)}"
        )
    return sizes


def _ids(outputs: Any, name: str, queries: int) -> torch.Tensor:
    ids = _get(outputs, name)
    return torch.arange(queries) if ids is None else torch.as_tensor(ids).reshape(-1).cpu()
