"""Hostile inputs for every processor: arbitrary shapes, dtypes and values end in a result or a package error.

A result counts as correct when its pixel tensors are finite floating tensors; any exception that is not a
``VisionportsError`` fails the test. Each test prints its tally (run with ``-s`` to see it).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

from visionports.core.errors import VisionportsError
from visionports.models.deimv2 import Deimv2ImageProcessor
from visionports.models.packed import PackedImageProcessor
from visionports.models.sam3_lite_text import Sam3LiteTextImageProcessor
from visionports.models.videomt import VideomtVideoProcessor

SETTINGS = settings(max_examples=60, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])  # fmt: skip

DTYPES = [np.uint8, np.int8, np.int16, np.int32, np.int64, np.uint16, np.uint32, np.uint64,
          np.float16, np.float32, np.float64, np.bool_, np.complex64]  # fmt: skip
_SIDE = st.integers(0, 24)
SHAPES = st.one_of(
    st.tuples(_SIDE, _SIDE),
    st.tuples(st.sampled_from([0, 1, 2, 3, 4, 5]), _SIDE, _SIDE),
    st.tuples(_SIDE, _SIDE, st.sampled_from([0, 1, 2, 3, 4, 5])),
    st.lists(st.integers(0, 6), min_size=0, max_size=5).map(tuple),
    st.sampled_from([(1, 3000, 3), (3000, 1, 3), (2, 5000), (1, 1, 3), (3, 1, 1)]),  # huge and tiny dims
)


@st.composite
def arrays(draw: st.DrawFn) -> np.ndarray:
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    shape = draw(SHAPES)
    if int(np.prod(shape)) > 4096:  # large arrays: one fill value, so generation stays fast
        value = draw(hnp.from_dtype(dtype, allow_nan=True, allow_infinity=True))
        return np.full(shape, value, dtype=dtype)
    return draw(hnp.arrays(dtype, shape, elements=hnp.from_dtype(dtype, allow_nan=True, allow_infinity=True)))


def _tensor(array: np.ndarray, kind: str) -> torch.Tensor:
    if array.dtype in (np.uint32, np.uint64):
        array = array.astype(np.int64, casting="unsafe")
    tensor = torch.from_numpy(np.ascontiguousarray(array))
    casts = {"bfloat16": torch.bfloat16, "float16": torch.float16}
    return tensor.to(casts[kind]) if kind in casts and not tensor.is_complex() else tensor


@st.composite
def pil_images(draw: st.DrawFn) -> Image.Image:
    mode = draw(
        st.sampled_from(["RGB", "RGBA", "L", "LA", "1", "P", "I", "I;16", "F", "CMYK", "YCbCr", "HSV"])
    )
    size = (draw(st.integers(0, 20)), draw(st.integers(0, 20)))
    image = Image.new(mode, size)
    if size[0] and size[1] and mode in ("I", "F"):
        image.putpixel((0, 0), draw(st.sampled_from([-5, 0, 255, 70000])))
    return image


@st.composite
def plausible(draw: st.DrawFn) -> Any:
    """Images a user may well pass: uint8 / [0, 1] float, HWC or CHW, array, tensor or PIL, any small size."""
    height, width = draw(st.integers(1, 40)), draw(st.integers(1, 40))
    pixels = np.random.default_rng(draw(st.integers(0, 9))).integers(
        0, 256, (height, width, 3), dtype=np.uint8
    )
    kind = draw(st.sampled_from(["hwc", "chw", "float", "tensor", "bfloat16", "pil", "gray16"]))
    return {"hwc": lambda: pixels, "chw": lambda: np.moveaxis(pixels, -1, 0), "float": lambda: pixels / 255.0,
            "tensor": lambda: torch.from_numpy(pixels).permute(2, 0, 1),
            "bfloat16": lambda: torch.from_numpy(pixels / 255.0).to(torch.bfloat16),
            "pil": lambda: Image.fromarray(pixels),
            "gray16": lambda: pixels[..., 0].astype(np.uint16) * 257}[kind]()  # fmt: skip


LEAVES = st.one_of(
    plausible(),
    plausible(),
    plausible(),
    arrays(),
    st.tuples(arrays(), st.sampled_from(["same", "bfloat16", "float16"])).map(lambda a: _tensor(*a)),
    pil_images(),
    st.none(),
    st.integers(-3, 300),
    st.floats(allow_nan=True),
    st.text(max_size=3),
)
INPUTS = st.recursive(LEAVES, lambda inner: st.lists(inner, max_size=3), max_leaves=4)
VIDEOS = st.one_of(
    INPUTS, plausible().map(lambda frame: [frame] * 2), plausible().map(lambda frame: [[frame], [frame]])
)
LAYOUTS = st.sampled_from([None, "channels_first", "channels_last"])


def _outcome(call: Any) -> str:
    """``"result"`` or ``"error"``; anything else than a package error propagates and fails the test."""
    try:
        out = call()
    except VisionportsError:
        return "error"
    for value in out.values():
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            assert torch.isfinite(value).all(), "a result holds NaN or infinite values"
    return "result"


def _fuzz(name: str, run: Any, inputs: st.SearchStrategy = INPUTS) -> None:
    tally: Counter[str] = Counter()

    @SETTINGS
    @given(images=inputs, layout=LAYOUTS)
    def check(images: Any, layout: str | None) -> None:
        tally[_outcome(lambda: run(images, layout))] += 1

    check()
    print(f"\n{name}: {sum(tally.values())} examples, {dict(tally)}")
    assert sum(tally.values()) >= 60


def test_deimv2_processor_fuzz() -> None:
    processor = Deimv2ImageProcessor(size={"height": 32, "width": 32})
    _fuzz("Deimv2ImageProcessor", lambda x, layout: processor(x, input_data_format=layout))


def test_sam3_lite_text_processor_fuzz() -> None:
    processor = Sam3LiteTextImageProcessor(size=28)
    _fuzz("Sam3LiteTextImageProcessor", lambda x, layout: processor(x, input_data_format=layout))


@pytest.mark.parametrize("convert", [True, False])
def test_packed_processor_fuzz(convert: bool) -> None:
    processor = PackedImageProcessor(patch_size=4, min_pixels=16, max_pixels=32 * 32, do_convert_rgb=convert)
    _fuzz(
        f"PackedImageProcessor(convert={convert})", lambda x, layout: processor(x, input_data_format=layout)
    )


@pytest.mark.parametrize("convert", [True, False])
def test_videomt_processor_fuzz(convert: bool) -> None:
    processor = VideomtVideoProcessor(min_size=16, max_size=48, do_convert_rgb=convert)
    _fuzz(f"VideomtVideoProcessor(convert={convert})", lambda x, layout: processor(x, input_data_format=layout),
          VIDEOS)  # fmt: skip
