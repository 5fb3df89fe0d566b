"""VidEoMT in bfloat16 / float16 on the golden case: finite, repeatable, close to float32."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from golden import FIXTURES, convert_case

CASE = FIXTURES / "videomt" / "dinov2_tiny_s0_b1_t3"
# measured on CPU (bf16 / fp16): class logits max 0.020 / 0.010, mask logits median 0.024 / 0.012,
# mask sign agreement 0.997 / 0.999; the bounds leave about 2x room
BOUNDS = {torch.bfloat16: (0.05, 0.06, 0.99), torch.float16: (0.03, 0.03, 0.995)}


@pytest.fixture(scope="module")
def runs() -> dict:
    model = convert_case("videomt", CASE)
    pixels = load_file(str(CASE / "inputs.safetensors"))["pixel_values"]
    with torch.no_grad():
        found = {torch.float32: [model(pixels)]}
        for dtype in BOUNDS:
            half = model.to(dtype)
            found[dtype] = [half(pixels.to(dtype)) for _ in range(2)]
            model = half.float()
    return found


@pytest.mark.parametrize("dtype", list(BOUNDS), ids=str)
def test_half_precision_is_finite_repeatable_and_close(runs: dict, dtype: torch.dtype) -> None:
    (reference,), (first, second) = runs[torch.float32], runs[dtype]
    class_max, mask_median, agreement = BOUNDS[dtype]
    for name in ("class_queries_logits", "masks_queries_logits"):
        assert first[name].dtype == dtype and torch.isfinite(first[name]).all(), name
        assert torch.equal(first[name], second[name]), name
    classes = (first.class_queries_logits.float() - reference.class_queries_logits).abs()
    masks_half, masks = first.masks_queries_logits.float(), reference.masks_queries_logits
    assert classes.max() <= class_max
    assert (masks_half - masks).abs().median() <= mask_median
    assert ((masks_half > 0) == (masks > 0)).float().mean() >= agreement
