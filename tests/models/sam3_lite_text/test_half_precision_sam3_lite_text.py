"""SAM3-LiteText in bfloat16 / float16 on the golden case: finite, repeatable, close to float32."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from golden import FIXTURES, convert_case

CASE = FIXTURES / "sam3_lite_text" / "tiny_detector_s0_mct_seed5"
OUTPUTS = ("pred_logits", "pred_boxes", "pred_masks", "presence_logits")
# measured on CPU (bf16 / fp16): logits max 0.025 / 0.012, boxes median 0.0032 / 0.0018, masks median
# 0.037 / 0.027, presence max 0.016 / 0.009; the bounds leave about 2x room
BOUNDS = {torch.bfloat16: (0.05, 0.007, 0.075, 0.035), torch.float16: (0.03, 0.004, 0.055, 0.02)}


@pytest.fixture(scope="module")
def runs() -> dict:
    model = convert_case("sam3_lite_text", CASE)
    inputs = load_file(str(CASE / "inputs.safetensors"))
    with torch.no_grad():
        found = {torch.float32: [model(pixel_values=inputs["pixel_values"], input_ids=inputs["input_ids"])]}
        for dtype in BOUNDS:
            half = model.to(dtype)
            found[dtype] = [half(pixel_values=inputs["pixel_values"].to(dtype), input_ids=inputs["input_ids"])
                            for _ in range(2)]  # fmt: skip
            model = half.float()
    return found


@pytest.mark.parametrize("dtype", list(BOUNDS), ids=str)
def test_half_precision_is_finite_repeatable_and_close(runs: dict, dtype: torch.dtype) -> None:
    (reference,), (first, second) = runs[torch.float32], runs[dtype]
    for name in OUTPUTS:
        assert torch.isfinite(first[name]).all() and torch.equal(first[name], second[name]), name
    diff = {name: (first[name].float() - reference[name]).abs() for name in OUTPUTS}
    logits_max, boxes_median, masks_median, presence_max = BOUNDS[dtype]
    assert diff["pred_logits"].max() <= logits_max
    assert diff["pred_boxes"].median() <= boxes_median
    assert diff["pred_masks"].median() <= masks_median
    assert diff["presence_logits"].max() <= presence_max
