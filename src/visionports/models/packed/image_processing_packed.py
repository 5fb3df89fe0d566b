"""``PackedImageProcessor``: images of any size -> packed ``hidden_states`` + ``grid_thw`` for the packed encoders."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image
from transformers import Aimv2VisionConfig, DINOv3ViTConfig, Siglip2VisionConfig
from transformers.feature_extraction_utils import BatchFeature
from transformers.image_processing_utils import BaseImageProcessor
from transformers.image_utils import ChannelDimension, infer_channel_dimension_format

from ...core.processing_options import call_options
from ...utils.images import ImageInputError, as_image_list, check_real_pixels, to_numpy, to_rgb
from .packing import pack_images

CLIP_MEAN, CLIP_STD = [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]
IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def _channels_first(image: Any, input_data_format: str | ChannelDimension | None, name: str) -> np.ndarray:
    """``[C, H, W]`` array of an image taken as it is (no colour conversion); 2-D images get one channel."""
    if not isinstance(image, np.ndarray | torch.Tensor | Image.Image):
        raise ImageInputError(
            f"{name}: expected a PIL image, numpy array or torch tensor, got {type(image).__name__}"
        )
    array = to_numpy(image, name) if not isinstance(image, Image.Image) else np.asarray(image)
    if array.ndim == 2:
        return array[None]
    if array.ndim != 3:
        raise ImageInputError(
            f"{name}: expected an [H, W], [H, W, C] or [C, H, W] image, got shape {list(array.shape)}"
        )
    try:
        layout = ChannelDimension(input_data_format or infer_channel_dimension_format(array))
    except ValueError as err:
        raise ImageInputError(f"{name}: cannot tell the channel axis of shape {list(array.shape)}; "
                              "pass input_data_format") from err  # fmt: skip
    return array if layout == ChannelDimension.FIRST else np.moveaxis(array, -1, 0)


def _check_pixels(array: np.ndarray, name: str) -> None:
    """``ImageInputError`` for an empty image or pixels that are not finite real numbers."""
    if array.size == 0:
        raise ImageInputError(f"{name}: the image is empty (shape [C, H, W] = {list(array.shape)})")
    check_real_pixels(array, name, "image")


def _resize_channels(array: np.ndarray, height: int, width: int, resample: int) -> np.ndarray:
    """PIL resize of each channel (8-bit channels as "L", anything else as 32-bit float "F")."""
    resized = []
    for channel in array:
        plane = (
            Image.fromarray(channel)
            if channel.dtype == np.uint8
            else Image.fromarray(channel.astype(np.float32))
        )
        resized.append(np.asarray(plane.resize((width, height), resample=resample)))
    return np.stack(resized)


def _float_or_same(array: np.ndarray) -> np.dtype:
    """The array's dtype, or float64 for those torch cannot hold (unsigned wider than 8 bits)."""
    return np.dtype(np.float64) if array.dtype in (np.uint16, np.uint32, np.uint64) else array.dtype


class PackedImageProcessor(BaseImageProcessor):
    r"""Resize each image (aspect kept) so its pixel count lies in ``[min_pixels, max_pixels]`` with both sides
    multiples of ``patch_size`` — or to ``fixed_size``² for fixed-size encoders — then rescale, normalise and pack.

    Returns ``hidden_states [sum h*w, patch_size² * C]`` and ``grid_thw [n, 3]``. The standard switches
    (``do_convert_rgb``, ``do_resize``, ``resample``, ``do_rescale``, ``rescale_factor``, ``do_normalize``,
    ``image_mean``, ``image_std``) are attributes and can be overridden per call, with ``input_data_format`` (layout
    of array inputs; inferred when ``None``) and ``return_tensors`` (``"pt"``, ``"np"``). Without ``do_resize``,
    each side must already be a multiple of ``patch_size``. Without ``do_convert_rgb``, images keep their own
    channels (arrays of any dtype; 2-D images have one channel).
    """

    model_input_names = ["hidden_states", "grid_thw"]

    def __init__(self, patch_size: int = 14, image_mean: Sequence[float] = CLIP_MEAN, image_std: Sequence[float] = CLIP_STD,
                 min_pixels: int = 56 * 56, max_pixels: int = 448 * 448, fixed_size: int | None = None,
                 do_convert_rgb: bool = True, do_resize: bool = True, resample: int = Image.BICUBIC,
                 do_rescale: bool = True, rescale_factor: float = 1 / 255, do_normalize: bool = True,
                 **kwargs: Any) -> None:  # fmt: skip
        super().__init__(**kwargs)
        self.patch_size = int(patch_size)
        self.image_mean, self.image_std = list(image_mean), list(image_std)
        self.min_pixels, self.max_pixels = int(min_pixels), int(max_pixels)
        self.fixed_size = fixed_size
        self.do_convert_rgb, self.do_resize, self.resample = do_convert_rgb, do_resize, int(resample)
        self.do_rescale, self.rescale_factor, self.do_normalize = do_rescale, rescale_factor, do_normalize
        if self.min_pixels > self.max_pixels:
            raise ValueError(f"min_pixels ({min_pixels}) must not exceed max_pixels ({max_pixels})")

    @classmethod
    def for_config(cls, config: Any, **kwargs: Any) -> PackedImageProcessor:
        """The standard normalisation of an AIMv2, SigLIP2 or DINOv3 vision config."""
        mean, std = CLIP_MEAN, CLIP_STD
        if isinstance(config, Siglip2VisionConfig):
            mean, std = [0.5] * 3, [0.5] * 3
        elif isinstance(config, DINOv3ViTConfig):
            mean, std = IMAGENET_MEAN, IMAGENET_STD
        fixed = config.image_size if isinstance(config, Aimv2VisionConfig) and not config.is_native else None
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

    def _scaled(self, x: torch.Tensor, name: str, factor: float | None, stats: tuple | None) -> torch.Tensor:
        """``x`` rescaled by ``factor`` and normalised with ``stats`` (mean, std) when given; checked to pack."""
        if x.shape[1] % self.patch_size or x.shape[2] % self.patch_size:
            raise ImageInputError(f"{name}: without do_resize, height and width must be multiples of "
                                  f"{self.patch_size}, got {x.shape[1]}x{x.shape[2]}")  # fmt: skip
        x = x * factor if factor is not None else x
        if stats is not None:
            mean, std = stats
            if len(mean) != x.shape[0] or len(std) != x.shape[0]:
                raise ImageInputError(f"{name} has {x.shape[0]} channels but image_mean/image_std have "
                                      f"{len(mean)}/{len(std)} values")  # fmt: skip
            x = (x - torch.tensor(mean).view(-1, 1, 1)) / torch.tensor(std).view(-1, 1, 1)
        if not torch.isfinite(x).all():
            raise ImageInputError(f"{name}: pixel values overflow float32")
        return x

    def preprocess(
        self,
        images: Any,
        do_convert_rgb: bool | None = None,
        do_resize: bool | None = None,
        resample: int | None = None,
        do_rescale: bool | None = None,
        rescale_factor: float | None = None,
        do_normalize: bool | None = None,
        image_mean: Sequence[float] | None = None,
        image_std: Sequence[float] | None = None,
        input_data_format: str | ChannelDimension | None = None,
        return_tensors: str | None = "pt",
        **kwargs: Any,
    ) -> BatchFeature:
        given = {"do_convert_rgb": do_convert_rgb, "do_resize": do_resize, "resample": resample,
                 "do_rescale": do_rescale, "rescale_factor": rescale_factor, "do_normalize": do_normalize,
                 "image_mean": image_mean, "image_std": image_std}  # fmt: skip
        options = call_options(self, given, kwargs, return_tensors, tensor_types=("pt", "np"))
        convert, resize, resample = options["do_convert_rgb"], options["do_resize"], options["resample"]
        rescale, normalize, factor = options["do_rescale"], options["do_normalize"], options["rescale_factor"]
        mean, std = options["image_mean"], options["image_std"]
        tensors = []
        for i, image in enumerate(as_image_list(images)):
            name = f"images[{i}]"
            if convert:
                if input_data_format and not isinstance(image, Image.Image):
                    image = np.moveaxis(_channels_first(image, input_data_format, name), 0, -1)
                image = np.asarray(to_rgb(image, name=name))
            array = _channels_first(image, ChannelDimension.LAST if convert else input_data_format, name)
            _check_pixels(array, name)
            if resize:
                array = _resize_channels(array, *self.target_size(*array.shape[1:]), resample)
            x = self._scaled(torch.from_numpy(np.ascontiguousarray(array, dtype=_float_or_same(array))).float(),
                             name, factor if rescale else None, (mean, std) if normalize else None)  # fmt: skip
            tensors.append(x)
        hidden_states, grid_thw = pack_images(tensors, self.patch_size)
        data = {"hidden_states": hidden_states, "grid_thw": grid_thw}
        if return_tensors == "np":
            data = {key: value.numpy() for key, value in data.items()}
        return BatchFeature(data=data)
