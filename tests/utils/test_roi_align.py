"""The torchvision-free ROI-align against torchvision's own values (``tests/fixtures/roi_align``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from visionports.utils.roi_align import roi_align

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "roi_align"
META = json.loads((FIXTURE / "case.json").read_text())
TENSORS = load_file(str(FIXTURE / "cases.safetensors"))


def _inputs(name: str) -> tuple[torch.Tensor, list[torch.Tensor], dict]:
    case = META["cases"][name]
    boxes = [TENSORS[f"{name}.boxes.{i}"] for i in range(case["images"])]
    output_size = case["output_size"] if isinstance(case["output_size"], int) else tuple(case["output_size"])
    options = {
        "output_size": output_size,
        "sampling_ratio": case["sampling_ratio"],
        "aligned": case["aligned"],
    }
    return TENSORS[f"{name}.features"], boxes, options


@pytest.mark.parametrize("name", sorted(META["cases"]))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_equals_torchvision(name: str, dtype: torch.dtype) -> None:
    features, boxes, options = _inputs(name)
    tag = str(dtype).removeprefix("torch.")
    out = roi_align(features.to(dtype), [b.to(dtype) for b in boxes], **options)
    expected = TENSORS[f"{name}.output.{tag}"]
    assert out.dtype == dtype and out.shape == expected.shape
    torch.testing.assert_close(out, expected, rtol=0, atol=META["cases"][name]["tolerance"][tag])


@pytest.mark.parametrize("name", sorted(META["cases"]))
def test_rows_with_spatial_scale(name: str) -> None:
    features, _, options = _inputs(name)
    out = roi_align(features.float(), TENSORS[f"{name}.rows"].float(), spatial_scale=0.5, **options)
    torch.testing.assert_close(out, TENSORS[f"{name}.rows_output.float32"], rtol=0, atol=1e-6)


def test_edge_boxes_are_covered() -> None:
    """The fixture's wholly-outside box pools zeros and its empty box does not: the rules are exercised."""
    features, boxes, options = _inputs("sam3_square")
    out = TENSORS["sam3_square.output.float64"]
    per_image = len(boxes[0])
    outside, empty = per_image - 3, per_image - 2
    assert out[outside].abs().max() == 0
    assert out[empty].abs().max() > 0


def test_gradients_flow_to_features() -> None:
    features, boxes, options = _inputs("sam3_square")
    features = features.float().requires_grad_()
    roi_align(features, [b.float() for b in boxes], **options).sum().backward()
    assert features.grad is not None and features.grad.abs().sum() > 0


def test_no_boxes() -> None:
    out = roi_align(torch.zeros(2, 3, 8, 8), [torch.zeros(0, 4), torch.zeros(0, 4)], 7)
    assert out.shape == (0, 3, 7, 7)


@pytest.mark.parametrize(
    ("boxes", "message"),
    [
        (torch.tensor([[0.0, 1.0, 1.0, float("nan"), 2.0]]), "finite"),
        (torch.tensor([[3.0, 1.0, 1.0, 2.0, 2.0]]), "image indices"),
        (torch.tensor([[1.0, 1.0, 2.0, 2.0]]), r"\[K, 5\]"),
        (torch.tensor([[0.0, 0.0, 0.0, 1e9, 1e9]]), "samples per bin side"),
    ],
)
def test_bad_boxes(boxes: torch.Tensor, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        roi_align(torch.zeros(1, 3, 8, 8), boxes, 7)
