"""The standard processor arguments, read the same way by every family's processor."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers.utils import TensorType

from visionports import Deimv2ImageProcessor, PackedImageProcessor
from visionports.core.processing_options import (
    RgbImageProcessor,
    call_options,
    channels_last,
    normalize,
    rescale,
    to_layout,
)
from visionports.models.sam3_lite_text import Sam3LiteTextImageProcessor
from visionports.models.videomt import VideomtVideoProcessor

PROCESSORS = {
    "deimv2": lambda: Deimv2ImageProcessor(size={"height": 32, "width": 32}),
    "sam3_lite_text": lambda: Sam3LiteTextImageProcessor(size=28),
    "videomt": lambda: VideomtVideoProcessor(min_size=32),
    "packed": lambda: PackedImageProcessor(),
}


def test_call_options_override_only_what_is_given() -> None:
    processor = Deimv2ImageProcessor(image_mean=[0.5, 0.5, 0.5], image_std=[0.2, 0.2, 0.2], do_normalize=True)
    options = call_options(
        processor, {"do_resize": False, "image_mean": None, "image_std": (1, 2, 3)}, {}, "pt"
    )
    assert options == {"do_resize": False, "image_mean": [0.5, 0.5, 0.5], "image_std": [1.0, 2.0, 3.0]}
    assert (
        call_options(processor, {}, {}, TensorType.PYTORCH) == {}
        and call_options(processor, {}, {}, None) == {}
    )


@pytest.mark.parametrize("name", sorted(PROCESSORS))
def test_every_processor_refuses_unknown_arguments_and_return_types(name: str) -> None:
    processor = PROCESSORS[name]()
    image = np.zeros((8, 8, 3), dtype=np.uint8)
    with pytest.raises(TypeError, match=f"unexpected arguments for {type(processor).__name__}: do_magic"):
        processor(image, do_magic=True)
    with pytest.raises(ValueError, match="return_tensors must be"):
        processor(image, return_tensors="tf")


def test_pixel_helpers() -> None:
    x = torch.arange(256, dtype=torch.float32).view(1, 16, 16).expand(3, -1, -1)
    assert torch.equal(rescale(x, 1 / 255), x / 255.0)  # the originals divide: bit-exact
    assert torch.equal(rescale(x, 0.5), x * 0.5)
    y = normalize(x, [1.0, 2.0, 3.0], [2.0, 2.0, 4.0])
    assert torch.equal(y[2], (x[2] - 3.0) / 4.0)
    assert to_layout(torch.zeros(2, 3, 4, 5), "channels_last").shape == (2, 4, 5, 3)
    assert to_layout(torch.zeros(2, 6, 3, 4, 5), "channels_last").shape == (2, 6, 4, 5, 3)
    chw = np.zeros((3, 4, 5))
    assert channels_last(chw, "channels_first").shape == (4, 5, 3) and channels_last(chw, None) is chw


def test_rgb_processors_share_the_standard_preprocess() -> None:
    deimv2, sam3 = PROCESSORS["deimv2"](), PROCESSORS["sam3_lite_text"]()
    assert type(deimv2).preprocess is type(sam3).preprocess is RgbImageProcessor.preprocess
    image = np.zeros((8, 8, 3), dtype=np.uint8)
    assert torch.equal(sam3.preprocess(image, "pt")["original_sizes"], torch.tensor([[8, 8]]))
    for processor, reader in ((deimv2, "DEIMv2"), (sam3, "SAM3")):
        with pytest.raises(ValueError, match=f"do_convert_rgb=False is not supported: {reader} reads RGB"):
            processor(image, do_convert_rgb=False)
    sam3.do_convert_rgb = deimv2.do_convert_rgb = False  # saved: SAM3 refuses it, DEIMv2 always converts
    with pytest.raises(ValueError, match="SAM3 reads RGB"):
        sam3(image)
    assert deimv2(image)["pixel_values"].shape == (1, 3, 32, 32)
