"""COCO-format reading (with its errors) and COCO AP evaluation of a detector folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from visionports import Deimv2Config, Deimv2ForObjectDetection
from visionports.cli import main
from visionports.data.coco_dataset import CocoFormatError, load_coco_split
from visionports.data.coco_evaluation import AP_NAMES, coco_ap, evaluate_folder
from visionports.data.synthetic_coco import SHAPES, make_synthetic_coco
from visionports.models.deimv2.image_processing_deimv2 import Deimv2ImageProcessor

pytest.importorskip("pycocotools")


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_synthetic_coco(tmp_path_factory.mktemp("coco"), num_train=3, num_val=3, image_size=(64, 64))


@pytest.fixture(scope="module")
def shapes_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("model") / "atto-shapes"
    config = Deimv2Config.from_preset(
        "atto", num_labels=len(SHAPES), num_queries=10, eval_image_size=[64, 64]
    )
    Deimv2ForObjectDetection(config).save_pretrained(folder)
    Deimv2ImageProcessor(size={"height": 64, "width": 64}).save_pretrained(folder)
    return folder


def test_ground_truth_as_predictions_scores_one(data: Path) -> None:
    split = load_coco_split(data, "val")
    results = [
        {"image_id": image.image_id, "category_id": cid, "bbox": box, "score": 1.0}
        for image in split.images
        for box, cid in zip(image.boxes_xywh, image.category_ids, strict=True)
    ]
    metrics = coco_ap(split, results)
    assert metrics["AP"] == pytest.approx(1.0) and metrics["AP50"] == pytest.approx(1.0)
    shifted = [
        dict(r, category_id=split.category_ids[(split.label_of(r["category_id"]) + 1) % 4]) for r in results
    ]
    assert coco_ap(split, shifted)["AP"] < 0.5


def test_evaluate_folder_and_cli(data: Path, shapes_model: Path) -> None:
    metrics = evaluate_folder(shapes_model, data, "val", progress=False)
    assert set(metrics) == set(AP_NAMES) and all(0.0 <= v <= 1.0 for v in metrics.values())
    result = CliRunner().invoke(main, ["evaluate", "--model", str(shapes_model), "--data", str(data)])
    assert result.exit_code == 0, result.output
    assert "AP50" in result.output and "AR_100" in result.output
    old_form = CliRunner().invoke(
        main, ["evaluate", "deimv2", "--model", str(shapes_model), "--data", str(data)]
    )
    assert old_form.exit_code == 0 and "deprecated" in old_form.stderr
    assert old_form.stdout == result.stdout


def test_class_count_mismatch_is_refused(data: Path, tmp_path: Path) -> None:
    folder = tmp_path / "coco80"
    config = Deimv2Config.from_preset("atto", num_queries=10, eval_image_size=[64, 64])
    Deimv2ForObjectDetection(config).save_pretrained(folder)
    Deimv2ImageProcessor(size={"height": 64, "width": 64}).save_pretrained(folder)
    with pytest.raises(ValueError, match="80 classes but .* 4 categories"):
        evaluate_folder(folder, data, progress=False)


def _write(root: Path, payload: object) -> Path:
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    (root / "val").mkdir(exist_ok=True)
    text = payload if isinstance(payload, str) else json.dumps(payload)
    (root / "annotations" / "instances_val.json").write_text(text)
    return root


def test_bad_annotation_files(data: Path, tmp_path: Path) -> None:
    good = json.loads((data / "annotations" / "instances_val.json").read_text())
    for image in good["images"]:
        image["file_name"] = str((data / "val" / image["file_name"]).resolve())
    cases = {
        "not valid JSON": "{oops",
        "expected a list under 'annotations'": {"images": [], "categories": []},
        "unknown category_id 99": dict(good, annotations=[dict(good["annotations"][0], category_id=99)]),
        "empty box": dict(good, annotations=[dict(good["annotations"][0], bbox=[10, 10, 0, 5])]),
        "unknown image 1234": dict(good, annotations=[dict(good["annotations"][0], image_id=1234)]),
        "not found": dict(good, images=[dict(good["images"][0], file_name="missing.png")]),
    }
    for index, (message, payload) in enumerate(cases.items()):
        root = _write(tmp_path / str(index), payload)
        with pytest.raises(CocoFormatError, match=message):
            load_coco_split(root, "val")
    with pytest.raises(CocoFormatError, match="missing annotations"):
        load_coco_split(tmp_path / "nothing", "val")


def test_boxes_outside_the_image_are_clipped_and_crowds_skipped(data: Path, tmp_path: Path) -> None:
    good = json.loads((data / "annotations" / "instances_val.json").read_text())
    for image in good["images"]:
        image["file_name"] = str((data / "val" / image["file_name"]).resolve())
    first = good["annotations"][0]
    extra = [dict(first, id=900, bbox=[-5, -5, 20, 20]), dict(first, id=901, iscrowd=1)]
    split = load_coco_split(_write(tmp_path / "clip", dict(good, annotations=[first, *extra])), "val")
    assert split.skipped == {"crowd": 1, "clipped": 1}
    image = next(im for im in split.images if im.image_id == first["image_id"])
    assert image.boxes_xywh[-1] == [0.0, 0.0, 15.0, 15.0]
