"""Binary masks: COCO RLE (the exact strings of pycocotools, and back), region sizes, boxes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from visionports.utils.masks import decode_rle, encode_rle

mask_utils = pytest.importorskip("pycocotools.mask")


def _cases() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    cases = [
        np.zeros((1, 1), bool),
        np.ones((1, 1), bool),
        np.zeros((7, 5), bool),
        np.ones((5, 7), bool),
        np.zeros((0, 3), bool),
    ]
    for height, width in [(1, 9), (9, 1), (3, 4), (31, 17), (64, 48), (101, 203)]:
        for density in (0.02, 0.5, 0.97):
            cases.append(rng.random((height, width)) < density)
    blob = np.zeros((120, 90), bool)
    blob[10:100, 20:70] = True  # long runs: multi-group numbers and negative differences
    blob[50:52, 40:45] = False
    cases.append(blob)
    big = np.zeros((1500, 1300), bool)
    big[200:1400, 100:1250] = True
    cases.append(big)
    return cases


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pycocotools on numpy 2
@pytest.mark.parametrize("mask", _cases(), ids=lambda m: f"{m.shape[0]}x{m.shape[1]}")
def test_same_string_as_pycocotools_and_round_trip(mask: np.ndarray) -> None:
    rle = encode_rle(mask)
    expected = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    assert rle == {"size": [int(v) for v in expected["size"]], "counts": expected["counts"].decode("ascii")}
    decoded = decode_rle(rle)
    assert decoded.dtype == bool and decoded.shape == mask.shape and np.array_equal(decoded, mask)
    assert np.array_equal(mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode()}), mask)


def test_inputs_and_errors() -> None:
    mask = np.array([[0, 3], [1, 0]], np.uint8)  # any nonzero value is inside
    assert np.array_equal(decode_rle(encode_rle(mask)), mask > 0)
    assert np.array_equal(decode_rle({"size": [2, 2], "counts": [1, 2, 1]}), mask > 0)  # uncompressed counts
    assert np.array_equal(
        decode_rle({"size": [2, 2], "counts": encode_rle(mask)["counts"].encode()}), mask > 0
    )
    with pytest.raises(ValueError, match="2-D"):
        encode_rle(np.zeros((2, 2, 2), bool))
    with pytest.raises(ValueError, match="cover 3 pixels"):
        decode_rle({"size": [2, 2], "counts": [1, 2]})


def test_region_sizes_are_8_connected_per_map() -> None:
    from visionports.utils.masks import region_sizes

    maps = torch.zeros(2, 4, 5, dtype=torch.bool)
    maps[0, 0, 0] = maps[0, 1, 1] = True  # diagonal neighbours: one region of 2
    maps[0, 3, 4] = True
    maps[1, 2, 1:4] = True
    sizes = region_sizes(maps)
    assert sizes[0, 0, 0] == sizes[0, 1, 1] == 2 and sizes[0, 3, 4] == 1 and sizes[1, 2, 2] == 3
    assert (sizes[~maps] == 0).all()


def test_mask_box_is_exclusive_and_zero_when_empty() -> None:
    from visionports.utils.masks import mask_box

    mask = np.zeros((6, 8), dtype=bool)
    assert mask_box(mask) == (0.0, 0.0, 0.0, 0.0)
    mask[2:4, 3:7] = True
    assert mask_box(mask) == (3.0, 2.0, 7.0, 4.0)
