"""Half precision and non-finite outputs: DEIMv2's deformable sampling in float16/bfloat16 on CPU, and
post-processing of NaN/inf outputs, which must raise instead of returning no detections."""

from __future__ import annotations

import copy

import pytest
import torch

from visionports import Deimv2Config
from visionports.core.errors import VisionportsError
from visionports.models.deimv2 import Deimv2ImageProcessor
from visionports.models.deimv2.decoder_deimv2 import Deimv2DeformableAttention
from visionports.models.deimv2.postprocessing_deimv2 import NonFiniteOutputError, select_detections

HALF = [torch.float16, torch.bfloat16]


def _attention_inputs(dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
    """Queries, reference boxes and the decoder's strided per-head values (as it builds them), in ``dtype``."""
    torch.manual_seed(0)
    memory = torch.randn(1, 32 * 32 + 16 * 16 + 8 * 8, 80) * 5
    values = memory.reshape(1, memory.shape[1], 8, 10).permute(0, 2, 3, 1)
    boxes = torch.rand(1, 50, 1, 4) * 0.8 + 0.1
    return torch.randn(1, 50, 80).to(dtype), boxes.to(dtype), values.to(dtype)


@pytest.mark.parametrize("dtype", HALF)
def test_deformable_attention_half_precision(dtype: torch.dtype) -> None:
    """CPU grid_sample misreads strided half-precision values (NaN, changing between calls): sampling runs
    in float32, so the result is finite, repeatable and within the dtype's rounding of float32."""
    config = Deimv2Config.from_preset("s", d_model=80, decoder_attention_heads=8, decoder_n_points=[3, 6, 3])
    attention = Deimv2DeformableAttention(config).eval()
    shapes = [(32, 32), (16, 16), (8, 8)]
    query, boxes, values = _attention_inputs(dtype)
    with torch.no_grad():
        reference = attention(query.float(), boxes.float(), values.float(), shapes)
        half = copy.deepcopy(attention).to(dtype)
        outs = [half(query, boxes, values, shapes) for _ in range(4)]
    assert outs[0].dtype == dtype and torch.isfinite(outs[0]).all()
    assert all(torch.equal(o, outs[0]) for o in outs[1:])
    # relative to the largest value; the weights' rounding to dtype dominates (measured 1.0e-3 / 7.8e-3)
    tolerance = 5e-3 if dtype == torch.float16 else 3e-2
    assert (outs[0].float() - reference).abs().max() <= tolerance * reference.abs().max()


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize("field", ["logits", "pred_boxes"])
def test_post_processing_refuses_non_finite_outputs(field: str, bad: float) -> None:
    torch.manual_seed(0)
    outputs = {"logits": torch.randn(2, 30, 80), "pred_boxes": torch.rand(2, 30, 4)}
    outputs[field][1, 3, 2] = bad
    with pytest.raises(NonFiniteOutputError, match=field) as info:
        Deimv2ImageProcessor().post_process_object_detection(
            outputs, threshold=0.0, target_sizes=[[64, 64]] * 2
        )
    assert isinstance(info.value, VisionportsError) and isinstance(info.value, RuntimeError)


@pytest.mark.parametrize("dtype", HALF)
def test_all_nan_half_logits_raise_instead_of_zero_detections(dtype: torch.dtype) -> None:
    logits = torch.full((1, 30, 80), float("nan"), dtype=dtype)
    boxes = torch.rand(1, 30, 4).to(dtype)
    with pytest.raises(NonFiniteOutputError, match="logits"):
        select_detections(logits, boxes, torch.tensor([[64, 64]]))


def test_finite_outputs_still_post_process() -> None:
    outputs = {"logits": torch.randn(1, 30, 80), "pred_boxes": torch.rand(1, 30, 4)}
    result = Deimv2ImageProcessor().post_process_object_detection(outputs, threshold=0.0, top_k=5)
    assert result[0]["scores"].shape == (5,)
