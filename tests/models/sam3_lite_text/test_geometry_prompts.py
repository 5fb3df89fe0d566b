"""Box exemplars and points through the saved folder, against the original's golden geometry case."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from transformers import AutoImageProcessor, pipeline

from golden import FIXTURES
from visionports.models.sam3_lite_text import Sam3LiteTextModel
from visionports.models.sam3_lite_text.image_processing_sam3_lite_text import prepare_geometry

CASE = FIXTURES / "sam3_lite_text" / "tiny_detector_s0_mct_geometry"
META = json.loads((CASE / "case.json").read_text())
INPUTS = load_file(str(CASE / "inputs.safetensors"))
OUTPUTS = load_file(str(CASE / "outputs.safetensors"))
GEOMETRY = ("input_points", "input_points_labels", "input_boxes", "input_boxes_labels")


def _image(index: int) -> Image.Image:
    return Image.fromarray(INPUTS["image_uint8"][index].permute(1, 2, 0).numpy())


def _pixel_boxes(normalised: torch.Tensor, size: int) -> list[list[float]]:
    cx, cy, w, h = normalised.double().unbind(-1)
    return (torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1) * size).tolist()


def test_pipeline_with_boxes_alone_is_the_original_processor(model_dir: Path) -> None:
    """The original ``Sam3Processor.add_geometric_prompt`` twice (no text) = the pipeline with two boxes."""
    size = int(INPUTS["original_size"][0, 0])
    segmenter = pipeline("text-prompted-segmentation", model=str(model_dir))
    found = segmenter(
        _image(int(INPUTS["processor_image_index"])),
        input_boxes=_pixel_boxes(INPUTS["processor_boxes"], size),
        input_boxes_labels=INPUTS["processor_box_labels"].tolist(),
        threshold=META["config"]["processor_confidence_threshold"],
    )
    assert [f["label"] for f in found] == ["visual"] * len(OUTPUTS["processor_scores"])
    order = OUTPUTS["processor_scores"].argsort(descending=True)
    torch.testing.assert_close(torch.tensor([f["score"] for f in found]), OUTPUTS["processor_scores"][order],
                               atol=1e-5, rtol=0)  # fmt: skip
    boxes = torch.tensor([[f["box"][k] for k in ("xmin", "ymin", "xmax", "ymax")] for f in found])
    torch.testing.assert_close(boxes, OUTPUTS["processor_boxes_xyxy"][order], atol=1e-2, rtol=0)
    masks = np.stack([f["mask"] for f in found])
    assert np.array_equal(masks, OUTPUTS["processor_masks"][order, 0].numpy())


def test_processor_normalises_pixel_boxes_as_the_case(model_dir: Path) -> None:
    processor = AutoImageProcessor.from_pretrained(model_dir)
    size = int(INPUTS["original_size"][0, 0])
    batch = processor(_image(1), input_boxes=_pixel_boxes(INPUTS["processor_boxes"], size),
                      input_boxes_labels=INPUTS["processor_box_labels"].tolist())  # fmt: skip
    torch.testing.assert_close(batch["input_boxes"][0], INPUTS["processor_boxes"], atol=1e-6, rtol=0)
    assert batch["input_boxes_labels"].tolist() == [INPUTS["processor_box_labels"].tolist()]


def test_batched_queries_equal_one_by_one(model_dir: Path) -> None:
    """Four padded queries in one call = each query alone with only its own points and boxes."""
    model = Sam3LiteTextModel.from_pretrained(model_dir).eval()
    ids, pixels = INPUTS["input_ids"], INPUTS["pixel_values"]
    image_ids, text_ids = INPUTS["img_ids"], INPUTS["text_ids"]
    with torch.no_grad():
        vision = model.get_image_features(pixels)
        batched = model(input_ids=ids, vision_outputs=vision, image_ids=image_ids, text_ids=text_ids,
                        **{k: INPUTS[k] for k in GEOMETRY})  # fmt: skip
        for q in range(len(image_ids)):
            alone = {}
            for kind in ("input_points", "input_boxes"):
                real = INPUTS[f"{kind}_labels"][q] != -10
                if real.any():
                    alone[kind] = INPUTS[kind][q : q + 1, real]
                    alone[f"{kind}_labels"] = INPUTS[f"{kind}_labels"][q : q + 1, real]
            single = model(input_ids=ids[text_ids[q] : text_ids[q] + 1], vision_outputs=vision,
                           image_ids=image_ids[q : q + 1], text_ids=torch.zeros(1, dtype=torch.long), **alone)  # fmt: skip
            for name in ("pred_logits", "pred_boxes", "pred_masks", "presence_logits"):
                torch.testing.assert_close(
                    getattr(single, name)[0], getattr(batched, name)[q], atol=2e-5, rtol=0
                )


def test_points_and_boxes_reach_every_geometry_weight(model_dir: Path) -> None:
    """Gradients flow into the point and box projections (the converter maps them; none is dead weight)."""
    model = Sam3LiteTextModel.from_pretrained(model_dir)
    out = model(pixel_values=INPUTS["pixel_values"], input_ids=INPUTS["input_ids"], image_ids=INPUTS["img_ids"],
                text_ids=INPUTS["text_ids"], **{k: INPUTS[k] for k in GEOMETRY})  # fmt: skip
    out.pred_logits.sum().backward()
    geometry = model.detector.geometry_encoder
    for part in ("points_direct_project", "points_pool_project", "points_pos_enc_project", "boxes_direct_project",
                 "boxes_pool_project", "boxes_pos_enc_project", "vision_layer_norm", "label_embed"):  # fmt: skip
        grad = getattr(geometry, part).weight.grad
        assert grad is not None and grad.abs().sum() > 0, part


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"input_boxes": [[10, 10, 5, 20]]}, r"input_boxes\[0\]\[0\] must have x2 >= x1"),
        ({"input_boxes": [[10, 10, float("nan"), 20]]}, r"input_boxes\[0\]\[0\] must be 4 finite"),
        ({"input_boxes": [[10, 10, 20]]}, r"input_boxes\[0\]\[0\] must be 4 finite"),
        ({"input_boxes": [[0, 0, 10_000, 20]]}, "far outside"),
        ({"input_boxes": [[1, 1, 5, 5]], "input_boxes_labels": [2]}, "must be 1 .positive. or 0"),
        ({"input_boxes": [[1, 1, 5, 5]], "input_boxes_labels": [1, 0]}, "one label per item"),
        ({"input_points_labels": [1]}, "input_points_labels given without input_points"),
        ({"input_points": [[[1, 2]], [[3, 4]]]}, r"one list per image \(1\)"),
        ({"input_points": "3,4"}, "input_points"),
    ],
)
def test_bad_geometry_is_refused_by_name(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        prepare_geometry([[100, 120]], **kwargs)


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (torch.tensor([[1, 3]]), "labels must be 1"),
        (torch.tensor([[-10, 1]]), "padding .* must come after"),
    ],
)
def test_model_refuses_bad_labels(model_dir: Path, labels: torch.Tensor, message: str) -> None:
    model = Sam3LiteTextModel.from_pretrained(model_dir).eval()
    with pytest.raises(ValueError, match=message), torch.no_grad():
        model(pixel_values=INPUTS["pixel_values"][:1], input_ids=INPUTS["input_ids"][:1],
              input_boxes=torch.full((1, 2, 4), 0.5), input_boxes_labels=labels)  # fmt: skip
