"""The shared task skeleton, with a stand-in model: unique names, validation first, one load, batches."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from visionports.models.deimv2 import Deimv2Config
from visionports.tasks.runner import ImageTask, run_image_task, unique_names
from visionports.utils.images import ImageInputError


def test_unique_names_never_collide() -> None:
    files = [Path("a/x.png"), Path("b/x.jpg"), Path("c/x_1.png"), Path("d/x.png"), Path("y.png")]
    assert unique_names(files) == ["x", "x_1", "x_1_1", "x_2", "y"]


def _task(loads: list[Path], batches: list[int]) -> ImageTask:
    def load(model_dir: Path):
        loads.append(model_dir)

        def predict(images: list[Image.Image]) -> list[int]:
            batches.append(len(images))
            return [image.width for image in images]

        return predict

    return ImageTask("detect", load, lambda image, width: image, lambda width: [{"width": width}], "out.json",
                     {"setting": 1})  # fmt: skip


def _model(tmp_path: Path) -> Path:
    """A folder whose config belongs to a family taking ``detect`` (the stand-in ``load`` reads no weights)."""
    Deimv2Config.from_preset("atto").save_pretrained(tmp_path / "model")
    return tmp_path / "model"


def test_every_input_gets_its_own_picture(tmp_path: Path) -> None:
    inputs = [tmp_path / d / "x.png" for d in ("a", "b", "c")]
    for width, path in enumerate(inputs, start=10):
        path.parent.mkdir()
        Image.fromarray(np.zeros((8, width, 3), np.uint8)).save(path)
    loads, batches = [], []
    run = run_image_task(_task(loads, batches), inputs, _model(tmp_path), tmp_path / "out", batch_size=2,
                         progress=False)  # fmt: skip
    assert loads == [tmp_path / "model"] and batches == [2, 1]
    assert [p.name for p in run.pictures] == ["x.png", "x_1.png", "x_2.png"]
    assert [Image.open(p).width for p in run.pictures] == [10, 11, 12]
    payload = json.loads(run.manifest.read_text())
    assert list(payload) == [
        "model",
        "visionports_version",
        "setting",
        "complete",
        "asked",
        "images",
        "pictures",
        "sizes",
    ]
    assert payload["complete"] is True and [v["picture"] for v in payload["asked"].values()] == [
        "x.png",
        "x_1.png",
        "x_2.png",
    ]
    assert payload["images"] == {str(p): [{"width": w}] for w, p in enumerate(inputs, start=10)}
    assert payload["pictures"] == {str(p): f.name for p, f in zip(inputs, run.pictures, strict=True)}


def test_a_bad_input_stops_everything_before_loading(tmp_path: Path) -> None:
    good, bad = tmp_path / "good.png", tmp_path / "bad.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(good)
    bad.write_bytes(b"not an image")
    loads: list[Path] = []
    with pytest.raises(ImageInputError, match="bad.png"):
        run_image_task(_task(loads, []), [good, bad], _model(tmp_path), tmp_path / "out", progress=False)
    assert not loads and not (tmp_path / "out").exists()


def test_a_task_may_drop_its_results_once_written(tmp_path: Path) -> None:
    inputs = [tmp_path / f"{i}.png" for i in range(3)]
    for width, path in enumerate(inputs, start=10):
        Image.fromarray(np.zeros((8, width, 3), np.uint8)).save(path)
    task = _task([], [])
    task.keep_results = False  # e.g. full-size masks: only the manifest entries stay
    run = run_image_task(task, inputs, _model(tmp_path), tmp_path / "out", batch_size=2, progress=False)
    assert run.results == {} and [e[0]["width"] for e in run.entries.values()] == [10, 11, 12]
    assert len(run.pictures) == 3 and all(p.is_file() for p in run.pictures)
