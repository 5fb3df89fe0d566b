"""``VideomtVideoProcessor``: the original evaluation preprocessing of videos and video-level post-processing."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from transformers.feature_extraction_utils import BatchFeature
from transformers.image_processing_utils import BaseImageProcessor

from ...images import ImageInputError, to_rgb
from .postprocessing_videomt import instance_segmentation, panoptic_segmentation, semantic_segmentation


def shortest_edge_size(height: int, width: int, short: int, max_size: int) -> tuple[int, int]:
    """Output size of detectron2's ResizeShortestEdge at test time (aspect ratio kept, long side capped)."""
    scale = short / min(height, width)
    new_h, new_w = (short, scale * width) if height < width else (scale * height, short)
    if max(new_h, new_w) > max_size:
        cap = max_size / max(new_h, new_w)
        new_h, new_w = new_h * cap, new_w * cap
    return int(new_h + 0.5), int(new_w + 0.5)


class VideomtVideoProcessor(BaseImageProcessor):
    r"""Prepares videos for VidEoMT as the original evaluation and post-processes its outputs per video.

    Frames (PIL images, arrays or tensors; a video is a list of frames or a [T, H, W, 3] / [T, 3, H, W]
    array) are converted to RGB, resized with PIL bilinear so the short side is ``min_size`` (long side at
    most ``max_size``), normalised as ``(x - image_mean) / image_std`` on the 0..255 scale, and zero-padded
    (bottom/right) to a multiple of ``size_divisibility``. Videos of one batch are padded to a common size.
    """

    model_input_names = ["pixel_values"]

    def __init__(
        self,
        min_size: int = 448,
        max_size: int = 1333,
        size_divisibility: int = 32,
        image_mean: Sequence[float] = (123.675, 116.28, 103.53),
        image_std: Sequence[float] = (58.395, 57.12, 57.375),
        task: str = "instance",
        max_instances: int = 10,
        object_threshold: float = 0.8,
        overlap_threshold: float = 0.8,
        num_thing_classes: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.min_size, self.max_size, self.size_divisibility = (
            int(min_size),
            int(max_size),
            int(size_divisibility),
        )
        self.image_mean, self.image_std = list(image_mean), list(image_std)
        self.task = task
        self.max_instances = int(max_instances)
        self.object_threshold, self.overlap_threshold = float(object_threshold), float(overlap_threshold)
        self.num_thing_classes = num_thing_classes

    def _frames(self, video: Any, name: str) -> list[Image.Image]:
        if isinstance(video, np.ndarray | torch.Tensor):
            if video.ndim != 4:
                raise ImageInputError(
                    f"{name}: expected frames [T, H, W, 3] or [T, 3, H, W], got {list(video.shape)}"
                )
            video = list(video)
        if not isinstance(video, Sequence) or isinstance(video, str | bytes) or len(video) == 0:
            raise ImageInputError(f"{name}: a video is a non-empty list of frames or a 4-D array")
        frames = [to_rgb(frame, name=f"{name}[{t}]") for t, frame in enumerate(video)]
        if len({f.size for f in frames}) > 1:
            raise ImageInputError(f"{name}: frames have different sizes {sorted({f.size for f in frames})}")
        return frames

    def _normalised(self, frame: Image.Image, size: tuple[int, int]) -> torch.Tensor:
        resized = frame.resize((size[1], size[0]), resample=Image.BILINEAR)
        x = torch.from_numpy(np.array(resized, dtype=np.uint8)).permute(2, 0, 1).float()
        mean = torch.tensor(self.image_mean, dtype=torch.float32).view(-1, 1, 1)
        std = torch.tensor(self.image_std, dtype=torch.float32).view(-1, 1, 1)
        return (x - mean) / std

    def preprocess(self, videos: Any, return_tensors: str | None = "pt", **kwargs: Any) -> BatchFeature:
        """``pixel_values`` [B, T, 3, H, W] plus ``original_sizes`` and ``resized_sizes`` [B, 2] (h, w)."""
        if kwargs:
            raise TypeError(f"unexpected arguments for VideomtVideoProcessor: {', '.join(sorted(kwargs))}")
        single = isinstance(videos, np.ndarray | torch.Tensor) and videos.ndim == 4
        single = single or (isinstance(videos, Sequence) and len(videos) > 0 and not _is_video(videos[0]))
        batch = [videos] if single else list(videos)
        clips, originals, resized = [], [], []
        for b, video in enumerate(batch):
            frames = self._frames(video, f"videos[{b}]")
            size = shortest_edge_size(frames[0].height, frames[0].width, self.min_size, self.max_size)
            clips.append(torch.stack([self._normalised(f, size) for f in frames]))
            originals.append((frames[0].height, frames[0].width))
            resized.append(size)
        if len({c.shape[0] for c in clips}) > 1:
            raise ImageInputError("videos of one batch must have the same number of frames")
        div = self.size_divisibility
        height = -(-max(s[0] for s in resized) // div) * div
        width = -(-max(s[1] for s in resized) // div) * div
        pixels = torch.stack([F.pad(c, (0, width - c.shape[-1], 0, height - c.shape[-2])) for c in clips])
        data = {
            "pixel_values": pixels,
            "original_sizes": torch.tensor(originals),
            "resized_sizes": torch.tensor(resized),
        }
        return BatchFeature(data=data, tensor_type="pt")

    def post_process(
        self, outputs: Any, original_sizes: Any, resized_sizes: Any, task: str | None = None
    ) -> list[dict | torch.Tensor]:
        """Per video: instance (``scores``, ``labels``, ``track_ids``, ``masks`` [N, T, H, W]), semantic (a
        [T, H, W] class map) or panoptic (``segmentation`` [T, H, W] and ``segments``)."""
        task = task or self.task
        if task not in ("instance", "semantic", "panoptic"):
            raise ValueError(f"task must be instance, semantic or panoptic, got {task!r}")
        classes, masks = outputs["class_queries_logits"], outputs["masks_queries_logits"]
        original_sizes, resized_sizes = torch.as_tensor(original_sizes), torch.as_tensor(resized_sizes)
        if len(original_sizes) != classes.shape[0] or len(resized_sizes) != classes.shape[0]:
            raise ValueError(
                f"original_sizes/resized_sizes need one (height, width) per video ({classes.shape[0]}), got "
                f"{len(original_sizes)} and {len(resized_sizes)}"
            )
        padded = (masks.shape[-2] * 4, masks.shape[-1] * 4)
        results = []
        for b in range(classes.shape[0]):
            args = (classes[b], masks[b].transpose(0, 1), padded, tuple(resized_sizes[b].tolist()),
                    tuple(original_sizes[b].tolist()))  # fmt: skip
            if task == "instance":
                results.append(instance_segmentation(*args, max_instances=self.max_instances))
            elif task == "semantic":
                results.append(semantic_segmentation(*args))
            else:
                if self.num_thing_classes is None:
                    raise ValueError("panoptic post-processing needs num_thing_classes (things-first labels)")
                results.append(panoptic_segmentation(*args, num_thing_classes=self.num_thing_classes,
                                                     object_threshold=self.object_threshold,
                                                     overlap_threshold=self.overlap_threshold))  # fmt: skip
        return results


def _is_video(item: Any) -> bool:
    if isinstance(item, np.ndarray | torch.Tensor):
        return item.ndim == 4
    return isinstance(item, Sequence) and not isinstance(item, str | bytes)
