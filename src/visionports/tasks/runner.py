"""The one skeleton of the CLI tasks: collect inputs, validate them all, load once, batch, write atomically.

Every picture gets its own name (``x``, ``x_1``, ... for inputs sharing a stem), so no input overwrites
another's output; the JSON manifest maps each input to its results and its picture.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image
from tqdm.auto import tqdm

from ..core.files import atomic_write, require_family_folder
from ..utils.images import collect_image_files, open_image

# images of one batch -> one result per image
Predict = Callable[[list[Image.Image]], list[Any]]


@dataclass
class ImageTask:
    """What a task adds to the skeleton: how to load its model, predict, draw and report one result."""

    name: str  # the CLI verb (progress label; the model folder must be of a family taking it)
    load: Callable[[Path], Predict]  # model folder -> batch predictor (called once)
    render: Callable[[Image.Image, Any], Image.Image]  # image, result -> annotated picture
    to_json: Callable[[Any], list[dict]]  # result -> its manifest entry
    manifest: str  # file name of the JSON manifest
    settings: dict[str, Any]  # written into the manifest after the model folder


@dataclass
class ImageRun:
    results: dict[str, Any]  # input path -> result
    pictures: list[Path]
    manifest: Path


def unique_names(files: Sequence[Path]) -> list[str]:
    """Output stems, one per file: the file's stem, suffixed ``_1``, ``_2``, ... when already taken."""
    names: list[str] = []
    taken: set[str] = set()
    for file in files:
        name, count = file.stem, 0
        while name in taken:
            count += 1
            name = f"{file.stem}_{count}"
        taken.add(name)
        names.append(name)
    return names


def load_model_folder(model_dir: str | Path, load: Callable[[Path], Any], verb: str) -> tuple[Path, Any]:
    """``load(folder)`` once the folder is known to hold a model of a family the command ``verb`` takes."""
    model_dir, _ = require_family_folder(model_dir, verb)
    return model_dir, load(model_dir)


def write_json(path: Path, payload: dict) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(payload, indent=2)))


def write_png(path: Path, picture: Image.Image) -> None:
    atomic_write(path, lambda tmp: picture.save(tmp, format="PNG"))


def collect_valid_images(inputs: Sequence[str | Path]) -> list[Path]:
    """The image files of ``inputs``, each checked to open: nothing is written for a bad input."""
    files = collect_image_files(inputs)
    for file in files:
        open_image(file)
    return files


def run_image_task(
    task: ImageTask,
    inputs: Sequence[str | Path],
    model_dir: str | Path,
    output_dir: str | Path,
    batch_size: int = 1,
    progress: bool = True,
) -> ImageRun:
    """Run ``task`` over the image files/folders ``inputs``: ``<name>.png`` per image and the manifest."""
    files = collect_valid_images(inputs)
    model_dir, predict = load_model_folder(model_dir, task.load, task.name)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    names = unique_names(files)
    results: dict[str, Any] = {}
    pictures: list[Path] = []
    with tqdm(total=len(files), desc=task.name, unit="image", disable=not progress) as bar:
        for start in range(0, len(files), batch_size):
            images = [open_image(f) for f in files[start : start + batch_size]]
            for i, (image, result) in enumerate(zip(images, predict(images), strict=True)):
                picture = output_dir / f"{names[start + i]}.png"
                write_png(picture, task.render(image, result))
                results[str(files[start + i])] = result
                pictures.append(picture)
                bar.update()
    manifest = output_dir / task.manifest
    write_json(manifest, _manifest(task, model_dir, results, pictures))
    return ImageRun(results, pictures, manifest)


def _manifest(task: ImageTask, model_dir: Path, results: dict[str, Any], pictures: list[Path]) -> dict:
    return {
        "model": str(model_dir),
        **task.settings,
        "images": {file: task.to_json(result) for file, result in results.items()},
        "pictures": {file: picture.name for file, picture in zip(results, pictures, strict=True)},
    }
