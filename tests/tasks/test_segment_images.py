"""`visionports segment` on the SAM3-LiteText tiny golden detector: one picture per input, never overwritten."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from golden import FIXTURES
from visionports.cli import main

CASE = FIXTURES / "sam3_lite_text" / "tiny_detector_s0_mct_seed5"


@pytest.fixture(scope="module")
def model_dir(convert: Callable[..., Path]) -> Path:
    return convert("sam3-lite-text", CASE / "checkpoint.pt")


def test_same_file_name_in_two_folders_gets_two_pictures(model_dir: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    inputs = [tmp_path / "a" / "x.png", tmp_path / "b" / "x.png"]
    for path, size in zip(inputs, ((90, 150), (40, 60)), strict=True):
        path.parent.mkdir()
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(path)
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["segment", *map(str, inputs), "--prompt", "a cat", "--model",
                                       str(model_dir), "--threshold", "0.05", "--output", str(out)])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "2 image(s)" in result.output
    payload = json.loads((out / "segments.json").read_text())
    assert payload["pictures"] == {str(inputs[0]): "x.png", str(inputs[1]): "x_1.png"}
    assert set(payload["images"]) == set(payload["pictures"])
    assert Image.open(out / "x.png").size == (150, 90) and Image.open(out / "x_1.png").size == (60, 40)


def test_segments_json_holds_the_masks_as_coco_rle(model_dir: Path, tmp_path: Path) -> None:
    from transformers import pipeline

    from visionports.utils.masks import decode_rle

    path = tmp_path / "x.png"
    Image.fromarray(np.random.default_rng(3).integers(0, 256, (45, 70, 3), dtype=np.uint8)).save(path)
    prompts = ["a cat", "a dog"]
    found = pipeline("text-prompted-segmentation", model=str(model_dir))(
        Image.open(path), prompts=prompts, threshold=0.05
    )
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["segment", str(path), "--prompt", prompts[0], "--prompt", prompts[1],
                                       "--model", str(model_dir), "--threshold", "0.05", "--output", str(out)])  # fmt: skip
    assert result.exit_code == 0, result.output
    entries = json.loads((out / "segments.json").read_text())["images"][str(path)]
    assert found and len(entries) == len(found)
    for entry, instance in zip(entries, found, strict=True):
        assert (
            set(entry) == {"label", "score", "box", "mask_pixels", "mask"}
            and entry["label"] == instance["label"]
        )
        assert entry["mask"]["size"] == [45, 70] and isinstance(entry["mask"]["counts"], str)
        assert np.array_equal(decode_rle(entry["mask"]), instance["mask"])
        assert entry["mask_pixels"] == int(instance["mask"].sum())


def test_box_exemplars_and_points_equal_the_pipeline_and_are_drawn(model_dir: Path, tmp_path: Path) -> None:
    """``--box`` / ``--negative-box`` / ``--point`` alone: the pipeline's ``"visual"`` results, exemplars drawn."""
    from transformers import pipeline

    from visionports.utils.drawing import NEGATIVE_PROMPT, POSITIVE_PROMPT

    path = tmp_path / "x.png"
    Image.fromarray(np.full((80, 120, 3), 128, dtype=np.uint8)).save(
        path
    )  # plain grey: the exemplars stand out
    geometry = {"input_boxes": [[10, 20, 60, 70], [70, 5, 110, 40]], "input_boxes_labels": [1, 0],
                "input_points": [[90, 60]], "input_points_labels": [1]}  # fmt: skip
    found = pipeline("text-prompted-segmentation", model=str(model_dir))(path, threshold=0.3, **geometry)
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["segment", str(path), "--box", "10,20,60,70", "--negative-box", "70,5,110,40",
                                       "--point", "90,60", "--model", str(model_dir), "--threshold", "0.3",
                                       "--output", str(out)])  # fmt: skip
    assert result.exit_code == 0, result.output
    payload = json.loads((out / "segments.json").read_text())
    assert payload["prompts"] == ["visual"] and payload["input_boxes_labels"] == [1, 0]
    entries = payload["images"][str(path)]
    assert found and [e["score"] for e in entries] == [round(f["score"], 6) for f in found]
    picture = np.asarray(Image.open(out / "x.png"))
    assert tuple(picture[20, 10]) == POSITIVE_PROMPT and tuple(picture[5, 70]) == NEGATIVE_PROMPT
    assert tuple(picture[60, 90]) == POSITIVE_PROMPT  # the point's dot


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--box", "10,20,5"], "Invalid value for '--box': expected X1,Y1,X2,Y2"),
        (["--point", "a,b"], "Invalid value for '--point': expected X,Y"),
        (["--box", "60,20,10,70"], "input_boxes[0][0] must have x2 >= x1"),
        ([], "give a --prompt text, or --box / --point exemplars"),
    ],
)
def test_bad_exemplars_are_refused_before_any_output(
    model_dir: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    path = tmp_path / "x.png"
    Image.fromarray(np.zeros((40, 60, 3), dtype=np.uint8)).save(path)
    out = tmp_path / "out"
    result = CliRunner().invoke(
        main, ["segment", str(path), *args, "--model", str(model_dir), "--output", str(out)]
    )
    assert result.exit_code != 0 and message in result.output
    assert not out.exists()


def test_single_object_from_a_click_and_a_box(convert: Callable[..., Path], tmp_path: Path) -> None:
    """``--single-object``: the interactive pipeline's best mask, labelled ``object``, prompts drawn."""
    from transformers import pipeline

    model = convert("sam3-lite-text", FIXTURES / "sam3_lite_text" / "tiny_tracker_s0_mct" / "checkpoint.pt")
    path = tmp_path / "x.png"
    Image.fromarray(np.random.default_rng(5).integers(0, 256, (90, 130, 3), dtype=np.uint8)).save(path)
    found = pipeline("interactive-segmentation", model=str(model))(
        path, input_points=[[30, 60]], input_boxes=[10, 40, 60, 85], multimask_output=False
    )
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["segment", str(path), "--point", "30,60", "--box", "10,40,60,85",
                                       "--single-object", "--model", str(model), "--output", str(out)])  # fmt: skip
    assert result.exit_code == 0, result.output
    payload = json.loads((out / "segments.json").read_text())
    (entry,) = payload["images"][str(path)]
    assert entry["label"] == "object" and entry["score"] == round(found[0]["score"], 6)
    assert entry["mask_pixels"] == int(found[0]["mask"].sum())
    assert payload["single_object"] is True and Image.open(out / "x.png").size == (130, 90)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--prompt", "a cat", "--point", "3,4"], "--prompt does not apply with --single-object"),
        (["--box", "1,1,5,5", "--box", "2,2,6,6"], "at most one --box"),
        (["--negative-box", "1,1,5,5"], "at most one --box"),
        ([], "needs --point clicks and/or one --box"),
    ],
)
def test_single_object_refusals(model_dir: Path, tmp_path: Path, args: list[str], message: str) -> None:
    path = tmp_path / "x.png"
    Image.fromarray(np.zeros((40, 60, 3), dtype=np.uint8)).save(path)
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["segment", str(path), "--single-object", *args, "--model", str(model_dir),
                                       "--output", str(out)])  # fmt: skip
    assert result.exit_code != 0 and message in result.output
    assert not out.exists()
