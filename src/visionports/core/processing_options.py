"""transformers' standard processor arguments, read the same way by every family's processor."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from transformers.feature_extraction_utils import BatchFeature
from transformers.image_processing_utils import BaseImageProcessor
from transformers.image_utils import ChannelDimension
from transformers.utils import TensorType

from ..utils.images import as_image_list


def call_options(
    processor: Any,
    given: Mapping[str, Any],
    unknown: Mapping[str, Any],
    return_tensors: str | TensorType | None,
    tensor_types: Sequence[str] = ("pt",),
) -> dict[str, Any]:
    """The processor's saved settings, overridden by the standard arguments given for this call.

    ``given`` maps setting names to this call's values (``None`` keeps the saved setting); arguments the
    processor does not know (``unknown``) and return types outside ``tensor_types`` (``None`` is always
    accepted) are refused with the argument named.
    """
    name = type(processor).__name__
    if unknown:
        raise TypeError(f"unexpected arguments for {name}: {', '.join(sorted(unknown))}")
    kind = return_tensors.value if isinstance(return_tensors, TensorType) else return_tensors
    if kind is not None and kind not in tensor_types:
        wanted = " or ".join(repr(t) for t in tensor_types)
        raise ValueError(f"{name}: return_tensors must be {wanted} (or None), got {return_tensors!r}")
    options = {key: getattr(processor, key) if value is None else value for key, value in given.items()}
    for key in ("image_mean", "image_std"):
        if options.get(key) is not None:
            options[key] = [float(v) for v in options[key]]
    return options


def channels_last(image: Any, input_data_format: str | ChannelDimension | None) -> Any:
    """A 3-D array/tensor as [H, W, C] when ``input_data_format`` says it is channels-first (else unchanged)."""
    if input_data_format is None or not isinstance(image, np.ndarray | torch.Tensor) or image.ndim != 3:
        return image
    if ChannelDimension(input_data_format) == ChannelDimension.FIRST:
        return image.permute(1, 2, 0) if isinstance(image, torch.Tensor) else np.moveaxis(image, 0, -1)
    return image


def rescale(pixels: torch.Tensor, factor: float) -> torch.Tensor:
    """``pixels * factor``; the usual 1/255 as a division by 255, as the originals compute it (bit-exact)."""
    return pixels / 255.0 if factor == 1 / 255 else pixels * factor


def normalize(pixels: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """``(pixels - mean) / std`` per channel of [..., C, H, W] float32 pixels."""
    mean_t = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)
    return (pixels - mean_t) / std_t


def to_layout(pixels: torch.Tensor, data_format: str | ChannelDimension) -> torch.Tensor:
    """[..., C, H, W] pixels in the requested ``data_format`` (channels-last moves C to the end)."""
    if ChannelDimension(data_format) == ChannelDimension.LAST:
        return pixels.movedim(-3, -1).contiguous()
    return pixels


class RgbImageProcessor(BaseImageProcessor):
    """An image processor whose ``preprocess`` takes transformers' standard arguments and prepares RGB images.

    Subclasses name the model in ``_reader`` and define ``_prepare`` (one image with this call's ``options``)
    and ``_batch`` (the prepared images -> the ``BatchFeature`` data); ``_options`` may check or adjust the
    settings of a call and ``_converts_rgb`` decide whether RGB conversion stays on. Arguments named in
    ``_prompt_arguments`` (prompts given with the images) go to ``_prompts``, which adds to the batch.
    """

    _reader = "the model"  # named when do_convert_rgb=False is refused
    _prompt_arguments: tuple[str, ...] = ()
    do_convert_rgb: bool

    def preprocess(
        self,
        images: Any,
        return_tensors: str | TensorType | None = "pt",
        do_convert_rgb: bool | None = None,
        do_resize: bool | None = None,
        size: int | Mapping[str, int] | None = None,
        do_rescale: bool | None = None,
        rescale_factor: float | None = None,
        do_normalize: bool | None = None,
        image_mean: Sequence[float] | None = None,
        image_std: Sequence[float] | None = None,
        data_format: str | ChannelDimension = ChannelDimension.FIRST,
        input_data_format: str | ChannelDimension | None = None,
        **kwargs: Any,
    ) -> BatchFeature:
        """``pixel_values`` (and what ``_batch`` adds) for one image or a list/batch of images.

        The standard arguments override the processor's settings for this call; ``do_convert_rgb`` must stay
        on (the model reads RGB), ``input_data_format`` says whether arrays are channels-first or -last
        (inferred when omitted), ``data_format`` the layout of the result.
        """
        if not self._converts_rgb(do_convert_rgb):
            raise ValueError(f"do_convert_rgb=False is not supported: {self._reader} reads RGB images")
        given = {"do_resize": do_resize, "size": size, "do_rescale": do_rescale, "rescale_factor": rescale_factor,
                 "do_normalize": do_normalize, "image_mean": image_mean, "image_std": image_std}  # fmt: skip
        prompts = {name: kwargs.pop(name) for name in self._prompt_arguments if kwargs.get(name) is not None}
        options = self._options(given, kwargs, return_tensors)
        items = [channels_last(item, input_data_format) for item in as_image_list(images)]
        prepared = [self._prepare(item, f"images[{i}]", options) for i, item in enumerate(items)]
        data = self._batch(prepared, data_format)
        if prompts:
            data.update(self._prompts(data, **prompts))
        return BatchFeature(data=data, tensor_type="pt")

    def _converts_rgb(self, do_convert_rgb: bool | None) -> bool:
        """Whether this call converts to RGB (``None``: the processor's setting)."""
        return (self.do_convert_rgb if do_convert_rgb is None else do_convert_rgb) is not False

    def _options(
        self, given: Mapping[str, Any], unknown: Mapping[str, Any], return_tensors: str | TensorType | None
    ) -> dict[str, Any]:
        """This call's settings (see :func:`call_options`)."""
        return call_options(self, given, unknown, return_tensors)

    def _prepare(self, image: Any, name: str, options: Mapping[str, Any]) -> Any:
        raise NotImplementedError

    def _prompts(self, data: Mapping[str, torch.Tensor], **prompts: Any) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def _batch(self, prepared: list[Any], data_format: str | ChannelDimension) -> dict[str, torch.Tensor]:
        raise NotImplementedError
