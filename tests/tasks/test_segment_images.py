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
