"""``VideomtVideoProcessor``: the original evaluation preprocessing of videos and video-level post-processing."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from transformers.feature_extraction_utils import BatchFeature
from transformers.image_processing_utils import BaseImageProcessor
from transformers.image_utils import ChannelDimension
from transformers.utils import TensorType

from ...core.processing_options import call_options, channels_last, normalize, to_layout
from ...utils.images import ImageInputError, check_real_pixels, to_numpy, to_rgb
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
    most ``max_size``; detectron2's test-time ResizeShortestEdge), normalised as ``(x - image_mean) /
    image_std`` on the 0..255 scale, and zero-padded (bottom/right) to a multiple of ``size_divisibility``.
    Videos of one batch are padded to a common size.

    ``do_resize=False`` takes frames already resized (as the original's data mapper hands them to the model)
    and only normalises and pads them; ``do_normalize`` / ``do_pad`` switch those steps off;
    ``do_convert_rgb=False`` uses 3-channel arrays as given (no PIL round trip, no 16-bit scaling).
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
        do_resize: bool = True,
        do_normalize: bool = True,
        do_pad: bool = True,
        do_convert_rgb: bool = True,
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
        self.do_resize, self.do_normalize = bool(do_resize), bool(do_normalize)
        self.do_pad, self.do_convert_rgb = bool(do_pad), bool(do_convert_rgb)

    def _frames(self, video: Any, name: str, options: Mapping[str, Any]) -> list[torch.Tensor]:
        """The frames of one video as uint8 [3, H, W] tensors."""
        if isinstance(video, np.ndarray | torch.Tensor):
            if video.ndim != 4:
                raise ImageInputError(
                    f"{name}: expected frames [T, H, W, 3] or [T, 3, H, W], got {list(video.shape)}"
                )
            video = list(video)
        if not isinstance(video, Sequence) or isinstance(video, str | bytes) or len(video) == 0:
            raise ImageInputError(f"{name}: a video is a non-empty list of frames or a 4-D array")
        frames = [self._frame(frame, f"{name}[{t}]", options) for t, frame in enumerate(video)]
        if len({tuple(f.shape) for f in frames}) > 1:
            sizes = sorted({tuple(f.shape[1:]) for f in frames})
            raise ImageInputError(f"{name}: frames have different sizes {sizes}")
        return frames

    @staticmethod
    def _frame(frame: Any, name: str, options: Mapping[str, Any]) -> torch.Tensor:
        layout = options["input_data_format"]
        frame = channels_last(frame, layout)
        if options["do_convert_rgb"]:
            array = np.asarray(to_rgb(frame, name=name), dtype=np.uint8)
        else:
            array = _raw_frame(frame, name, layout)
        return torch.from_numpy(np.array(array, dtype=array.dtype, copy=True)).permute(2, 0, 1)

    def _target_size(self, original: tuple[int, int], resize: bool, name: str) -> tuple[int, int]:
        """The frames' size after resizing; ``ImageInputError`` when a side would shrink to nothing."""
        size = shortest_edge_size(*original, self.min_size, self.max_size) if resize else original
        if min(size) < 1:
            raise ImageInputError(
                f"{name}: frames of {original[0]}x{original[1]} are too elongated: with the short side at "
                f"{self.min_size} and the long side at most {self.max_size} they would be {size[0]}x{size[1]}"
            )
        return size

    @staticmethod
    def _resized(frame: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """PIL bilinear resize of a uint8 [3, H, W] frame to ``size`` (h, w)."""
        if tuple(frame.shape[1:]) == size:
            return frame
        if frame.dtype != torch.uint8 and (frame.min() < 0 or frame.max() > 255):
            raise ImageInputError(f"frames resized without RGB conversion must hold values in 0..255, got "
                                  f"{frame.min().item()}..{frame.max().item()}")  # fmt: skip
        pil = Image.fromarray(frame.permute(1, 2, 0).to(torch.uint8).numpy())
        resized = pil.resize((size[1], size[0]), resample=Image.BILINEAR)
        return torch.from_numpy(np.array(resized, dtype=np.uint8)).permute(2, 0, 1)

    @staticmethod
    def _normalised(frame: torch.Tensor, options: Mapping[str, Any]) -> torch.Tensor:
        x = frame.float()
        return normalize(x, options["image_mean"], options["image_std"]) if options["do_normalize"] else x

    def preprocess(
        self,
        videos: Any,
        return_tensors: str | TensorType | None = "pt",
        do_convert_rgb: bool | None = None,
        do_resize: bool | None = None,
        do_normalize: bool | None = None,
        do_pad: bool | None = None,
        image_mean: Sequence[float] | None = None,
        image_std: Sequence[float] | None = None,
        data_format: str | ChannelDimension = ChannelDimension.FIRST,
        input_data_format: str | ChannelDimension | None = None,
        **kwargs: Any,
    ) -> BatchFeature:
        """``pixel_values`` [B, T, 3, H, W] (``[B, T, H, W, 3]`` with ``data_format="channels_last"``) plus
        ``original_sizes`` and ``resized_sizes`` [B, 2] (h, w). The standard arguments override the
        processor's settings for this call; ``input_data_format`` says whether arrays are channels-first or
        -last (inferred when omitted); ``return_tensors`` is ``"pt"`` (or None, also torch) or ``"np"``."""
        given = {"do_convert_rgb": do_convert_rgb, "do_resize": do_resize, "do_normalize": do_normalize,
                 "do_pad": do_pad, "image_mean": image_mean, "image_std": image_std}  # fmt: skip
        options = call_options(self, given, kwargs, return_tensors, tensor_types=("pt", "np"))
        options["input_data_format"] = input_data_format
        clips, originals, resized = [], [], []
        for b, video in enumerate(_video_batch(videos)):
            frames = self._frames(video, f"videos[{b}]", options)
            original = tuple(frames[0].shape[1:])
            size = self._target_size(original, options["do_resize"], f"videos[{b}]")
            clips.append(torch.stack([self._normalised(self._resized(f, size), options) for f in frames]))
            originals.append(original)
            resized.append(size)
        if len({c.shape[0] for c in clips}) > 1:
            raise ImageInputError("videos of one batch must have the same number of frames")
        pixels = self._batched(clips, resized, options["do_pad"])
        pixels = to_layout(pixels, data_format)
        data = {
            "pixel_values": pixels,
            "original_sizes": torch.tensor(originals),
            "resized_sizes": torch.tensor(resized),
        }
        return BatchFeature(
            data=data, tensor_type="np" if return_tensors in ("np", TensorType.NUMPY) else "pt"
        )

    def _batched(self, clips: list[torch.Tensor], sizes: list[tuple[int, int]], pad: bool) -> torch.Tensor:
        """Zero-pad (bottom/right) every clip to the largest size rounded up to ``size_divisibility``."""
        if not pad:
            if len(set(sizes)) > 1:
                raise ImageInputError(f"do_pad=False needs videos of one size, got {sorted(set(sizes))}")
            return torch.stack(clips)
        div = max(self.size_divisibility, 1)
        height = -(-max(s[0] for s in sizes) // div) * div
        width = -(-max(s[1] for s in sizes) // div) * div
        return torch.stack([F.pad(c, (0, width - c.shape[-1], 0, height - c.shape[-2])) for c in clips])

    def post_process_instance_segmentation(
        self, outputs: Any, original_sizes: Any, resized_sizes: Any, max_instances: int | None = None
    ) -> list[dict]:
        """Per video: the best (query, class) pairs as ``scores``, ``labels``, ``track_ids`` (query slots) and
        ``masks`` [N, T, H, W] bool; ``max_instances`` overrides the processor's setting."""
        top = self.max_instances if max_instances is None else int(max_instances)
        videos = _per_video(outputs, original_sizes, resized_sizes)
        return [instance_segmentation(*args, max_instances=top) for args in videos]

    def post_process_semantic_segmentation(
        self, outputs: Any, original_sizes: Any, resized_sizes: Any
    ) -> list[torch.Tensor]:
        """Per video: a [T, H, W] class map."""
        return [semantic_segmentation(*args) for args in _per_video(outputs, original_sizes, resized_sizes)]

    def post_process_panoptic_segmentation(
        self,
        outputs: Any,
        original_sizes: Any,
        resized_sizes: Any,
        num_thing_classes: int | None = None,
        object_threshold: float | None = None,
        overlap_threshold: float | None = None,
    ) -> list[dict]:
        """Per video: ``segmentation`` [T, H, W] (0 = void) and ``segments``; labels are things-first, so
        ``num_thing_classes`` is needed (here or on the processor). The arguments override its settings."""
        things = self.num_thing_classes if num_thing_classes is None else num_thing_classes
        if things is None:
            raise ValueError("panoptic post-processing needs num_thing_classes (things-first labels)")
        settings = {
            "num_thing_classes": int(things),
            "object_threshold": self.object_threshold
            if object_threshold is None
            else float(object_threshold),
            "overlap_threshold": self.overlap_threshold
            if overlap_threshold is None
            else float(overlap_threshold),
        }
        videos = _per_video(outputs, original_sizes, resized_sizes)
        return [panoptic_segmentation(*args, **settings) for args in videos]

    def post_process(
        self,
        outputs: Any,
        original_sizes: Any,
        resized_sizes: Any,
        task: str | None = None,
        max_instances: int | None = None,
        object_threshold: float | None = None,
        overlap_threshold: float | None = None,
        num_thing_classes: int | None = None,
    ) -> list[dict | torch.Tensor]:
        """Dispatch to ``post_process_{instance,semantic,panoptic}_segmentation`` by ``task`` (default: the
        processor's ``task``), passing on the settings that task uses (the others are ignored).

        ``outputs`` holds ``class_queries_logits`` [B, T, Q, K+1] and ``masks_queries_logits``
        [B, T, Q, h, w] (stride 4 of the padded frames); masks go to ``original_sizes`` through the padded
        size and a crop to ``resized_sizes``. Kept for the CLI and callers that choose the task at run time.
        """
        task = task or self.task
        if task == "instance":
            return self.post_process_instance_segmentation(
                outputs, original_sizes, resized_sizes, max_instances
            )
        if task == "semantic":
            return self.post_process_semantic_segmentation(outputs, original_sizes, resized_sizes)
        if task == "panoptic":
            return self.post_process_panoptic_segmentation(
                outputs, original_sizes, resized_sizes, num_thing_classes, object_threshold, overlap_threshold
            )
        raise ValueError(f"task must be instance, semantic or panoptic, got {task!r}")


def per_video_outputs(outputs: Any, original_sizes: Any, resized_sizes: Any) -> list[tuple]:
    """What each video's post-processing takes: (class logits [T, Q, K+1], mask logits [Q, T, h, w], padded,
    resized, original size); also for the outputs of a chunk of frames (streaming post-processing)."""
    return _per_video(outputs, original_sizes, resized_sizes)


def _per_video(outputs: Any, original_sizes: Any, resized_sizes: Any) -> list[tuple]:
    """Per video: (class logits [T, Q, K+1], mask logits [Q, T, h, w], padded, resized, original size)."""
    classes, masks = outputs["class_queries_logits"], outputs["masks_queries_logits"]
    original_sizes, resized_sizes = torch.as_tensor(original_sizes), torch.as_tensor(resized_sizes)
    if len(original_sizes) != classes.shape[0] or len(resized_sizes) != classes.shape[0]:
        raise ValueError(
            f"original_sizes/resized_sizes need one (height, width) per video ({classes.shape[0]}), got "
            f"{len(original_sizes)} and {len(resized_sizes)}"
        )
    padded = (masks.shape[-2] * 4, masks.shape[-1] * 4)
    sizes = zip(resized_sizes.tolist(), original_sizes.tolist(), strict=True)
    return [
        (classes[b], masks[b].transpose(0, 1), padded, tuple(resized), tuple(original))
        for b, (resized, original) in enumerate(sizes)
    ]


def _video_batch(videos: Any) -> list[Any]:
    """The videos of a call: one video (a list of frames or a 4-D array) or a list (or 5-D array) of videos."""
    if isinstance(videos, np.ndarray | torch.Tensor):
        if videos.ndim == 4 or (videos.ndim == 5 and len(videos) > 0):
            return [videos] if videos.ndim == 4 else list(videos)
        raise ImageInputError(f"videos: expected a [T, H, W, 3] / [T, 3, H, W] video or a batch of them, got "
                              f"shape {list(videos.shape)}")  # fmt: skip
    if not isinstance(videos, Sequence) or isinstance(videos, str | bytes) or len(videos) == 0:
        raise ImageInputError(f"videos: expected a video (a non-empty list of frames or a 4-D array) or a "
                              f"non-empty list of videos, got {_describe(videos)}")  # fmt: skip
    return list(videos) if _is_video(videos[0]) else [videos]


def _describe(value: Any) -> str:
    return "an empty list" if isinstance(value, Sequence) and len(value) == 0 else type(value).__name__


def _raw_frame(frame: Any, name: str, layout: Any) -> np.ndarray:
    """A frame used as given (no RGB conversion): [H, W, 3] finite real pixels."""
    if not isinstance(frame, np.ndarray | torch.Tensor | Image.Image):
        raise ImageInputError(
            f"{name}: expected a PIL image, numpy array or torch tensor, got {type(frame).__name__}"
        )
    array = np.asarray(frame) if isinstance(frame, Image.Image) else to_numpy(frame, name)
    if layout is None and array.ndim == 3 and array.shape[0] == 3 and array.shape[-1] != 3:
        array = np.moveaxis(array, 0, -1)
    if array.ndim != 3 or array.shape[-1] != 3 or array.size == 0:
        raise ImageInputError(f"{name}: without RGB conversion a frame needs 3 channels and pixels, got "
                              f"{list(array.shape)}")  # fmt: skip
    if array.dtype in (np.uint16, np.uint32, np.uint64):
        array = array.astype(np.int64)
    check_real_pixels(array, name, "frame")
    return array


def _is_video(item: Any) -> bool:
    if isinstance(item, np.ndarray | torch.Tensor):
        return item.ndim == 4
    return isinstance(item, Sequence) and not isinstance(item, str | bytes)
