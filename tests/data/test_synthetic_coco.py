"""The synthetic COCO-format data set generator."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from visionports.data.synthetic_coco import SHAPES, make_synthetic_coco


def test_writes_coco_layout_with_boxes_inside_images(tmp_path: Path) -> None:
    root = make_synthetic_coco(tmp_path / "data", num_train=5, num_val=2, image_size=(64, 96), seed=1)
    for split, count in (("train", 5), ("val", 2)):
        data = json.loads((root / "annotations" / f"instances_{split}.json").read_text())
        assert [c["id"] for c in data["categories"]] == list(range(1, len(SHAPES) + 1))
        assert len(data["images"]) == count
        ids = {image["id"] for image in data["images"]}
        assert {a["image_id"] for a in data["annotations"]} <= ids
        assert len({a["id"] for a in data["annotations"]}) == len(data["annotations"]) >= count
        for image in data["images"]:
            with Image.open(root / split / image["file_name"]) as picture:
                assert picture.size == (96, 64) and picture.mode == "RGB"
        for ann in data["annotations"]:
            x, y, w, h = ann["bbox"]
            assert x >= 0 and y >= 0 and w > 0 and h > 0 and x + w <= 96.01 and y + h <= 64.01
            assert 1 <= ann["category_id"] <= len(SHAPES)


def test_deterministic_per_seed_and_shapes_are_drawn(tmp_path: Path) -> None:
    a = make_synthetic_coco(tmp_path / "a", num_train=2, num_val=1, seed=3)
    b = make_synthetic_coco(tmp_path / "b", num_train=2, num_val=1, seed=3)
    c = make_synthetic_coco(tmp_path / "c", num_train=2, num_val=1, seed=4)
    first = np.asarray(Image.open(a / "train" / "000000.png"))
    assert np.array_equal(first, np.asarray(Image.open(b / "train" / "000000.png")))
    assert not np.array_equal(first, np.asarray(Image.open(c / "train" / "000000.png")))
    annotations = json.loads((a / "annotations" / "instances_train.json").read_text())["annotations"]
    ann = [item for item in annotations if item["image_id"] == 1][-1]
    x, y, w, h = (int(round(v)) for v in ann["bbox"])
    # the last shape drawn is never occluded: its centre is a solid fill, unlike the noisy background
    centre = first[y + h // 2 - 1 : y + h // 2 + 2, x + w // 2 - 1 : x + w // 2 + 2].reshape(-1, 3)
    assert (centre == centre[0]).all()
    corner = first[:3, :3].reshape(-1, 3)
    assert not (corner == corner[0]).all()


def test_rejects_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="num_train"):
        make_synthetic_coco(tmp_path, num_train=0)
    with pytest.raises(ValueError, match="image_size"):
        make_synthetic_coco(tmp_path, image_size=(16, 16))
