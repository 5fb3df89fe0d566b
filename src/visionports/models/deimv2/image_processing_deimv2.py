"""``Deimv2ImageProcessor``: the original DEIMv2 evaluation preprocessing and post-processing."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image
from transformers.image_utils import ChannelDimension
from transformers.utils import TensorType

from ...core.processing_options import RgbImageProcessor, normalize, rescale, to_layout
from ...utils.images import to_rgb
from .postprocessing_deimv2 import select_detections


class Deimv2ImageProcessor(RgbImageProcessor):
    r"""Prepares images for DEIMv2 exactly as the original evaluation pipeline and turns outputs into detections.

    Preprocessing: RGB (EXIF orientation honoured, grayscale replicated, alpha over white, 16-bit scaled to
    8-bit) -> PIL bilinear resize to ``size`` (aspect ratio not kept; what torchvision's ``Resize`` does on a
    PIL image) -> ``float32 / 255`` -> ``(x - image_mean) / image_std`` when ``do_normalize`` (the DINOv3
    variants S/M/L/X; the HGNetV2 variants use no normalisation).

    Args:
        size: ``{"height": h, "width": w}``, the variant's evaluation size.
        do_normalize: apply ImageNet-style normalisation with ``image_mean`` / ``image_std``.
        num_top_queries: detections kept per image before thresholding (the original's 300).
    """

    model_input_names = ["pixel_values"]
    _reader = "DEIMv2"

    def __init__(
        self,
        size: Mapping[str, int] | None = None,
        do_normalize: bool = False,
        image_mean: Sequence[float] | None = None,
        image_std: Sequence[float] | None = None,
        num_top_queries: int = 300,
        do_resize: bool = True,
        do_rescale: bool = True,
        rescale_factor: float = 1 / 255,
        do_convert_rgb: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.size = dict(size or {"height": 640, "width": 640})
        self.do_resize, self.do_rescale = bool(do_resize), bool(do_rescale)
        self.rescale_factor = float(rescale_factor)
        self.do_convert_rgb = bool(do_convert_rgb)
        self.do_normalize = bool(do_normalize)
        self.image_mean = list(image_mean) if image_mean is not None else None
        self.image_std = list(image_std) if image_std is not None else None
        self.num_top_queries = int(num_top_queries)
        if self.do_normalize and (self.image_mean is None or self.image_std is None):
            raise ValueError("do_normalize=True needs image_mean and image_std")

    def _converts_rgb(self, do_convert_rgb: bool | None) -> bool:
        """Only an explicit ``do_convert_rgb=False`` is refused: images are always converted to RGB."""
        return do_convert_rgb is not False

    def _options(
        self, given: Mapping[str, Any], unknown: Mapping[str, Any], return_tensors: str | TensorType | None
    ) -> dict[str, Any]:
        options = super()._options(given, unknown, return_tensors)
        if options["do_normalize"] and (options["image_mean"] is None or options["image_std"] is None):
            raise ValueError("do_normalize=True needs image_mean and image_std")
        return options

    def _batch(
        self, prepared: list[torch.Tensor], data_format: str | ChannelDimension
    ) -> dict[str, torch.Tensor]:
        """``pixel_values`` [B, 3, H, W] float32."""
        return {"pixel_values": to_layout(torch.stack(prepared), data_format)}

    def _prepare(self, image: Any, name: str, options: Mapping[str, Any]) -> torch.Tensor:
        rgb = to_rgb(image, name=name)
        if options["do_resize"]:
            rgb = rgb.resize((options["size"]["width"], options["size"]["height"]), resample=Image.BILINEAR)
        x = torch.from_numpy(np.asarray(rgb, dtype=np.uint8).copy()).permute(2, 0, 1).float()
        if options["do_rescale"]:
            x = rescale(x, options["rescale_factor"])
        if options["do_normalize"]:
            x = normalize(x, options["image_mean"], options["image_std"])
        return x

    def post_process_object_detection(
        self,
        outputs: Any,
        threshold: float = 0.5,
        target_sizes: torch.Tensor | Sequence[Sequence[int]] | None = None,
        top_k: int | None = None,
    ) -> list[dict[str, torch.Tensor]]:
        """Detections per image: ``scores``, ``labels`` and ``boxes`` (x1, y1, x2, y2).

        The original's post-processor: sigmoid scores over every (query, class), the ``top_k`` best
        (default ``num_top_queries``), boxes scaled to ``target_sizes`` given as (height, width) per image
        (normalised boxes when omitted); then detections with a score above ``threshold`` are kept.
        """
        logits, boxes = outputs["logits"], outputs["pred_boxes"]
        if not 0.0 <= float(threshold) <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {threshold}")
        top_k = self.num_top_queries if top_k is None else int(top_k)
        if top_k < 1:
            raise ValueError(f"top_k must be a positive integer, got {top_k}")
        batch = logits.shape[0]
        if target_sizes is None:
            sizes_wh = torch.ones(batch, 2, dtype=torch.int64, device=logits.device)
        else:
            sizes = torch.as_tensor(target_sizes)
            if sizes.ndim != 2 or sizes.shape[1] != 2:
                raise ValueError(
                    f"target_sizes must hold one (height, width) pair per image, got shape {list(sizes.shape)}"
                )
            if sizes.shape[0] != batch:
                raise ValueError(
                    f"target_sizes has {sizes.shape[0]} entries but the batch has {batch} images"
                )
            sizes_wh = sizes.flip(1).to(device=logits.device, dtype=torch.int64)
        picked = select_detections(logits, boxes, sizes_wh, top_k)
        results = []
        for scores, labels, pixel_boxes in zip(
            picked["scores"], picked["labels"], picked["boxes"], strict=True
        ):
            keep = scores > threshold
            results.append({"scores": scores[keep], "labels": labels[keep], "boxes": pixel_boxes[keep]})
        return results
