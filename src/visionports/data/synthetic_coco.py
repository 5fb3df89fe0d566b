"""A small synthetic detection data set in COCO format: coloured shapes on textured backgrounds.

Used to smoke-test and benchmark fine-tuning without downloads. Layout written by :func:`make_synthetic_coco`::

    ROOT/train/000000.png ...           ROOT/val/000000.png ...
    ROOT/annotations/instances_train.json
    ROOT/annotations/instances_val.json
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from tqdm.auto import tqdm

from ..core.files import atomic_write

SHAPES = ("circle", "square", "triangle", "cross")
"""Category names; their COCO category ids are 1..len(SHAPES) in this order."""


def _background(rng: np.random.Generator, height: int, width: int) -> Image.Image:
    """Smooth colour gradient plus stripes and pixel noise, so objects are not found by colour alone."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    base = rng.uniform(40, 215, size=3)
    slope = rng.uniform(-0.3, 0.3, size=(3, 2))
    image = base[:, None, None] + slope[:, :1, None] * ys + slope[:, 1:, None] * xs
    period, angle = rng.uniform(6, 24), rng.uniform(0, np.pi)
    stripes = 18 * np.sin((np.cos(angle) * xs + np.sin(angle) * ys) * 2 * np.pi / period)
    image = image + stripes + rng.normal(0, 8, size=(3, height, width))
    return Image.fromarray(np.clip(image, 0, 255).astype(np.uint8).transpose(1, 2, 0))


def _draw(
    draw: ImageDraw.ImageDraw, shape: str, box: tuple[float, float, float, float], colour: tuple
) -> None:
    x0, y0, x1, y1 = box
    if shape == "circle":
        draw.ellipse(box, fill=colour)
    elif shape == "square":
        draw.rectangle(box, fill=colour)
    elif shape == "triangle":
        draw.polygon([((x0 + x1) / 2, y0), (x1, y1), (x0, y1)], fill=colour)
    else:
        tw, th = (x1 - x0) / 3, (y1 - y0) / 3
        draw.rectangle((x0 + tw, y0, x1 - tw, y1), fill=colour)
        draw.rectangle((x0, y0 + th, x1, y1 - th), fill=colour)


def _split(root: Path, split: str, count: int, rng: np.random.Generator, size: tuple[int, int],
           max_objects: int) -> dict:  # fmt: skip
    height, width = size
    folder = root / split
    folder.mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for index in tqdm(range(count), desc=f"synthetic {split}", leave=False):
        image = _background(rng, height, width)
        draw = ImageDraw.Draw(image)
        for _ in range(int(rng.integers(1, max_objects + 1))):
            side = float(rng.uniform(0.12, 0.4) * min(height, width))
            aspect = float(rng.uniform(0.7, 1.4))
            w, h = min(side * aspect, width - 1), min(side / aspect, height - 1)
            x0, y0 = float(rng.uniform(0, width - w)), float(rng.uniform(0, height - h))
            category = int(rng.integers(len(SHAPES)))
            colour = tuple(int(c) for c in rng.integers(0, 256, size=3))
            _draw(draw, SHAPES[category], (x0, y0, x0 + w, y0 + h), colour)
            annotations.append({
                "id": len(annotations) + 1, "image_id": index + 1, "category_id": category + 1,
                "bbox": [round(x0, 2), round(y0, 2), round(w, 2), round(h, 2)],
                "area": round(w * h, 2), "iscrowd": 0,
            })  # fmt: skip
        name = f"{index:06d}.png"
        image.save(folder / name)
        images.append({"id": index + 1, "file_name": name, "height": height, "width": width})
    categories = [{"id": i + 1, "name": name, "supercategory": "shape"} for i, name in enumerate(SHAPES)]
    return {"images": images, "annotations": annotations, "categories": categories}


def make_synthetic_coco(
    root: str | Path,
    num_train: int = 64,
    num_val: int = 16,
    image_size: tuple[int, int] = (320, 320),
    max_objects: int = 4,
    seed: int = 0,
) -> Path:
    """Write a synthetic COCO-format data set under ``root`` and return ``root``.

    Shapes may overlap (later ones occlude earlier ones); boxes are the drawn shapes' extents, so a heavily
    occluded shape keeps its full box, as in real annotations. Deterministic for a given ``seed``.
    """
    if num_train < 1 or num_val < 1:
        raise ValueError(f"num_train and num_val must be at least 1, got {num_train} and {num_val}")
    if min(image_size) < 32 or max_objects < 1:
        raise ValueError(
            f"image_size must be at least 32x32 and max_objects >= 1, got {image_size}, {max_objects}"
        )
    root = Path(root)
    rng = np.random.default_rng(seed)
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    for split, count in (("train", num_train), ("val", num_val)):
        data = _split(root, split, count, rng, tuple(image_size), max_objects)
        text = json.dumps(data)
        atomic_write(
            root / "annotations" / f"instances_{split}.json", lambda tmp, text=text: tmp.write_text(text)
        )
    return root
