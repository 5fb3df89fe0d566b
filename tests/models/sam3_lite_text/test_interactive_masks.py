"""Single-object masks from points and boxes (the original ``predict_inst``) through the saved folder."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from transformers import AutoImageProcessor, pipeline

from golden import FIXTURES
from visionports.models.sam3_lite_text import Sam3LiteTextModel

CASE = FIXTURES / "sam3_lite_text" / "tiny_tracker_s0_mct"
INPUTS = load_file(str(CASE / "inputs.safetensors"))
OUTPUTS = load_file(str(CASE / "outputs.safetensors"))


@pytest.fixture(scope="module")
def tracker_dir(convert: Callable[..., Path]) -> Path:
    return convert("sam3-lite-text", CASE / "checkpoint.pt")


def _image() -> Image.Image:
    return Image.fromarray(INPUTS["image_uint8"].permute(1, 2, 0).numpy())


def test_pipeline_is_the_original_predict_inst(tracker_dir: Path) -> None:
    """A box and a click, three candidates: the original's masks and scores, best first."""
    segmenter = pipeline("interactive-segmentation", model=str(tracker_dir))
    found = segmenter(_image(), input_points=INPUTS["c3_point_coords"].tolist(),
                      input_labels=INPUTS["c3_point_labels"].tolist(), input_boxes=INPUTS["c3_box"][0].tolist())  # fmt: skip
    order = OUTPUTS["c3_scores"].argsort(descending=True)
    torch.testing.assert_close(torch.tensor([f["score"] for f in found]), OUTPUTS["c3_scores"][order], atol=1e-5,
                               rtol=0)  # fmt: skip
    assert np.array_equal(np.stack([f["mask"] for f in found]), OUTPUTS["c3_masks"][order].numpy())
    single = segmenter(_image(), input_points=INPUTS["c1_point_coords"].tolist(),
                       input_labels=INPUTS["c1_point_labels"].tolist(), multimask_output=False)  # fmt: skip
    assert len(single) == 1 and np.array_equal(single[0]["mask"], OUTPUTS["c1_masks"][0].numpy())


def test_two_objects_at_once_equal_each_alone(tracker_dir: Path) -> None:
    model = Sam3LiteTextModel.from_pretrained(tracker_dir).eval()
    processor = AutoImageProcessor.from_pretrained(tracker_dir)
    size = [INPUTS["original_size"].tolist()]
    boxes = INPUTS["c5_box"].tolist()
    with torch.no_grad():
        features = model.get_tracker_features(model.get_image_features(INPUTS["pixel_values"]))
        both = model.predict_masks(tracker_features=features, multimask_output=False,
                                   **processor.prepare_object_prompts(size, input_boxes=[boxes]))  # fmt: skip
        for index, box in enumerate(boxes):
            alone = model.predict_masks(tracker_features=features, multimask_output=False,
                                        **processor.prepare_object_prompts(size, input_boxes=[[box]]))  # fmt: skip
            torch.testing.assert_close(alone.pred_masks[0, 0], both.pred_masks[0, index], atol=1e-5, rtol=0)
    torch.testing.assert_close(
        both.pred_masks[0].clamp(-32, 32), OUTPUTS["c5_low_res_masks"], atol=1e-4, rtol=0
    )


def test_a_folder_without_tracker_weights_refuses_points(convert: Callable[..., Path]) -> None:
    folder = convert("sam3-lite-text", CASE / "checkpoint.pt", "--set", "tracker=null")
    model = Sam3LiteTextModel.from_pretrained(folder)
    assert model.tracker is None and model.config.tracker is None
    with pytest.raises(ValueError, match="predict_masks needs the tracker weights"):
        model.predict_masks(INPUTS["pixel_values"], input_points=torch.full((1, 1, 1, 2), 0.5))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"input_points": [[[1, 2]], [[3, 4], [5, 6]]]}, "every object needs the same number of points"),
        ({"input_labels": [[1]]}, "input_labels given without input_points"),
        ({"input_points": [[[1, 2]]], "input_labels": [[3]]}, "must be 1 .positive. or 0"),
        ({"input_points": [[[1, 2]]], "input_boxes": [[0, 0, 5, 5], [1, 1, 4, 4]]}, "one box per object"),
        ({"input_boxes": [[5, 0, 1, 5]]}, "x2 >= x1"),
    ],
)
def test_bad_object_prompts_are_refused_by_name(tracker_dir: Path, kwargs: dict, message: str) -> None:
    processor = AutoImageProcessor.from_pretrained(tracker_dir)
    with pytest.raises(ValueError, match=message):
        processor.prepare_object_prompts([[90, 130]], **kwargs)


def test_pipeline_needs_a_prompt(tracker_dir: Path) -> None:
    with pytest.raises(ValueError, match="give input_points"):
        pipeline("interactive-segmentation", model=str(tracker_dir))(_image())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"input_points": torch.full((1, 1, 1, 2), float("nan"))}, "input_points must be finite"),
        ({"input_points": torch.full((1, 1, 2), 0.5)}, r"\[B, objects, P, 2\]"),
        (
            {"input_points": torch.full((1, 1, 1, 2), 0.5), "input_labels": torch.full((1, 1, 1), 2)},
            "input_labels",
        ),
        ({"input_boxes": torch.full((1, 4), 0.5)}, "input_boxes must be finite"),
        (
            {"input_points": torch.full((1, 2, 1, 2), 0.5), "input_boxes": torch.full((1, 1, 4), 0.5)},
            "one box per",
        ),
    ],
)
def test_model_refuses_bad_object_prompts(tracker_dir: Path, kwargs: dict, message: str) -> None:
    model = Sam3LiteTextModel.from_pretrained(tracker_dir).eval()
    with pytest.raises(ValueError, match=message), torch.no_grad():
        model.predict_masks(INPUTS["pixel_values"], **kwargs)
