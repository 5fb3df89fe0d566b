"""A small synthetic video segmentation data set: coloured shapes moving over textured, panning backgrounds.

Used to test and benchmark video fine-tuning without downloads. :func:`make_synthetic_ytvis` writes, for the
splits ``train`` and ``valid`` (both annotated, so evaluation works)::

    ROOT/{split}.json                                YouTube-VIS annotations (below)
    ROOT/{split}/JPEGImages/<video>/<frame>.jpg      frames, <video> = "video0000", <frame> = "00000"

and with ``dense=True`` also, for the same scenes::

    ROOT/{split}_panoptic.json                       VIPSeg-style panoptic annotations (below)
    ROOT/{split}_panoptic/<video>/<frame>.png        RGB panoptic id maps (VIPSeg "panomasksRGB")
    ROOT/{split}_semantic/<video>/<frame>.png        8-bit semantic maps (VSPW "mask" convention)

Scenes: 1..``max_objects`` objects per video, each a shape of :data:`CATEGORIES` (shape and base colour,
jittered per object) moving at constant velocity; half of them bounce off the frame edges, the others cross
it and so enter or leave (absent frames). Objects keep one depth order per video (later ones in front) and
occlude each other; the background is the textured noise of :mod:`.synthetic_coco`, panning slowly.

YouTube-VIS JSON: ``videos`` = ``[{id, name, file_names ("<video>/<frame>.jpg"), height, width, length}]``
(ids from 1), ``categories`` = ``[{id, name}]`` with ids ``1..K`` in :data:`CATEGORIES` order, and one
``annotations`` entry per object visible in at least one frame: ``{id, video_id, category_id, iscrowd: 0,
segmentations, areas, bboxes}``. Per frame, ``segmentations`` holds the VISIBLE pixels as a compressed RLE
dict (``{"size": [H, W], "counts": str}``), ``areas`` their count and ``bboxes`` their ``[x, y, w, h]`` extent
(pixel edges), all three ``None`` where the object is out of frame or fully occluded.

Dense ground truth uses the thing categories ``1..K`` above plus one stuff category ``K + 1``,
"background", covering every pixel not covered by an object (no void pixels are written).

* Panoptic (VIPSeg, as the original's ``load_video_vspw_vps_json`` reads it): each PNG is RGB with segment id
  ``R + 256 * G + 256**2 * B`` (panopticapi's ``rgb2id``); ids are ``category_id * 1000 + instance``, where
  ``instance`` is 0 for the background and, for an object, its 1-based index in the video (the same in every
  frame, so ids identify tracks; ``instance`` orders the video's annotations). ``{split}_panoptic.json`` =
  ``{"videos": [{"video_id": <video>, "images": [{"id": "<video>_<frame>", "file_name": "<frame>.jpg",
  "height", "width"}]}], "annotations": [{"video_id": <video>, "annotations": [{"image_id", "file_name":
  "<frame>.png", "segments_info": [{"id", "category_id", "iscrowd": 0, "area", "bbox"}]}]}],
  "categories": [{"id", "name", "isthing", "color"}]}``, segments listed for the ids present in that frame.
* Semantic (VSPW): mode-"L" PNG whose value is the class index + 1, class index being the contiguous label
  (things ``0..K-1`` = ``category_id - 1``, background ``K``); so the value equals the category id above, and
  0 / 255 (VSPW's ignore values) never occur.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from ..core.files import atomic_write
from ..utils.masks import encode_rle
from .synthetic_coco import _background, _draw

CATEGORIES: tuple[tuple[str, str, tuple[int, int, int]], ...] = (
    ("circle", "red", (220, 45, 45)),
    ("square", "green", (45, 190, 70)),
    ("triangle", "blue", (50, 90, 230)),
    ("cross", "yellow", (235, 215, 50)),
)
"""(shape, colour name, base RGB) per category; category ids are 1..len(CATEGORIES) in this order."""

BACKGROUND_NAME = "background"
"""Name of the dense ground truth's one stuff category, id ``len(CATEGORIES) + 1``."""

PANOPTIC_DIVISOR = 1000
"""Panoptic segment id = ``category_id * PANOPTIC_DIVISOR + instance``."""

COLOUR_JITTER = 20
"""Largest per-channel offset of an object's colour from its category's base colour."""

SPLITS = ("train", "valid")


@dataclass
class _Object:
    category: int  # 0-based index into CATEGORIES
    colour: tuple[int, int, int]
    size: tuple[float, float]  # w, h
    path: list[tuple[float, float]]  # top-left corner per frame


def category_name(index: int) -> str:
    """``"red circle"`` for the 0-based category ``index``."""
    shape, colour, _ = CATEGORIES[index]
    return f"{colour} {shape}"


def _axis_path(
    rng: np.random.Generator, extent: int, side: float, length: int, middle: int | None
) -> list[float]:
    """Positions of one coordinate over ``length`` frames: bouncing inside ``[0, extent - side]`` when
    ``middle`` is None, else a straight crossing that is inside the frame at frame ``middle``."""
    high = extent - side
    if middle is not None:
        position = float(rng.uniform(0, high))
        velocity = float(rng.uniform(0.06, 0.2) * extent * rng.choice((-1, 1)))
        return [position + velocity * (t - middle) for t in range(length)]
    position = float(rng.uniform(0, high))
    velocity = float(rng.uniform(0.02, 0.08) * extent * rng.choice((-1, 1)))
    path = []
    for _ in range(length):
        path.append(position)
        position += velocity
        if position < 0 or position > high:
            position = -position if position < 0 else 2 * high - position
            velocity = -velocity
    return path


def _make_object(rng: np.random.Generator, height: int, width: int, length: int) -> _Object:
    side = float(rng.uniform(0.15, 0.35) * min(height, width))
    aspect = float(rng.uniform(0.75, 1.33))
    w, h = min(side * aspect, width - 1), min(side / aspect, height - 1)
    category = int(rng.integers(len(CATEGORIES)))
    base = np.array(CATEGORIES[category][2])
    colour = tuple(int(c) for c in np.clip(base + rng.integers(-COLOUR_JITTER, COLOUR_JITTER + 1, 3), 0, 255))
    middle = None if rng.random() < 0.5 else int(rng.integers(length))  # None: bounces
    xs = _axis_path(rng, width, w, length, middle)
    ys = _axis_path(rng, height, h, length, middle)
    return _Object(category, colour, (w, h), list(zip(xs, ys, strict=True)))


def _render(
    rng: np.random.Generator, objects: list[_Object], height: int, width: int, length: int
) -> tuple[list[Image.Image], list[np.ndarray]]:
    """The frames and, per frame, a uint8 map of the visible object (index + 1, 0 = background)."""
    margin = max(4, min(height, width) // 6)
    texture = np.asarray(_background(rng, height + margin, width + margin))
    start, end = rng.integers(0, margin + 1, size=2), rng.integers(0, margin + 1, size=2)
    frames, labels = [], []
    for t in range(length):
        dy, dx = (np.rint(start + (end - start) * t / max(length - 1, 1))).astype(int)
        frame = Image.fromarray(texture[dy : dy + height, dx : dx + width])
        label = Image.new("L", (width, height), 0)
        draw_frame, draw_label = ImageDraw.Draw(frame), ImageDraw.Draw(label)
        for index, obj in enumerate(objects):
            (x0, y0), (w, h) = obj.path[t], obj.size
            shape, box = CATEGORIES[obj.category][0], (x0, y0, x0 + w, y0 + h)
            _draw(draw_frame, shape, box, obj.colour)
            _draw(draw_label, shape, box, index + 1)
        frames.append(frame)
        labels.append(np.asarray(label))
    return frames, labels


def _box(mask: np.ndarray) -> list[int]:
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return [int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1)]


def _track(obj_index: int, labels: list[np.ndarray]) -> dict[str, list[Any]]:
    """Per-frame segmentations, areas and boxes of one object's visible pixels (``None`` where absent)."""
    track: dict[str, list[Any]] = {"segmentations": [], "areas": [], "bboxes": []}
    for label in labels:
        mask = label == obj_index + 1
        area = int(mask.sum())
        track["segmentations"].append(encode_rle(mask) if area else None)
        track["areas"].append(area if area else None)
        track["bboxes"].append(_box(mask) if area else None)
    return track


def _frame_count(rng: np.random.Generator, frames: int | tuple[int, int]) -> int:
    if isinstance(frames, int):
        return frames
    return int(rng.integers(frames[0], frames[1] + 1))


@dataclass
class _Writer:
    """Accumulates one split's files and JSON entries."""

    root: Path
    split: str
    dense: bool

    def __post_init__(self) -> None:
        self.videos: list[dict] = []
        self.annotations: list[dict] = []
        self.panoptic_videos: list[dict] = []
        self.panoptic_annotations: list[dict] = []

    def add_video(self, objects: list[_Object], frames: list[Image.Image], labels: list[np.ndarray]) -> None:
        video_id = len(self.videos) + 1
        name = f"video{video_id - 1:04d}"
        folder = self.root / self.split / "JPEGImages" / name
        folder.mkdir(parents=True, exist_ok=True)
        stems = [f"{t:05d}" for t in range(len(frames))]
        for stem, frame in zip(stems, frames, strict=True):
            frame.save(folder / f"{stem}.jpg", quality=95, subsampling=0)  # 4:4:4 keeps colours
        height, width = labels[0].shape
        self.videos.append({
            "id": video_id, "name": name, "file_names": [f"{name}/{s}.jpg" for s in stems],
            "height": height, "width": width, "length": len(frames),
        })  # fmt: skip
        for index, obj in enumerate(objects):
            track = _track(index, labels)
            if any(area is not None for area in track["areas"]):
                self.annotations.append({
                    "id": len(self.annotations) + 1, "video_id": video_id, "category_id": obj.category + 1,
                    "iscrowd": 0, **track,
                })  # fmt: skip
        if self.dense:
            self._add_dense(name, stems, objects, labels)

    def _add_dense(
        self, name: str, stems: list[str], objects: list[_Object], labels: list[np.ndarray]
    ) -> None:
        background = len(CATEGORIES) + 1
        # lookup: label value (0 = background, i + 1 = object i) -> panoptic id / semantic value
        ids = np.array([background * PANOPTIC_DIVISOR] + [
            (obj.category + 1) * PANOPTIC_DIVISOR + i + 1 for i, obj in enumerate(objects)
        ], dtype=np.uint32)  # fmt: skip
        classes = np.array([background] + [obj.category + 1 for obj in objects], dtype=np.uint8)
        panoptic_dir = self.root / f"{self.split}_panoptic" / name
        semantic_dir = self.root / f"{self.split}_semantic" / name
        panoptic_dir.mkdir(parents=True, exist_ok=True)
        semantic_dir.mkdir(parents=True, exist_ok=True)
        height, width = labels[0].shape
        images, frame_annotations = [], []
        for stem, label in zip(stems, labels, strict=True):
            id_map = ids[label]
            rgb = np.stack([id_map % 256, id_map // 256 % 256, id_map // 65536], axis=-1).astype(np.uint8)
            Image.fromarray(rgb).save(panoptic_dir / f"{stem}.png")
            Image.fromarray(classes[label]).save(semantic_dir / f"{stem}.png")
            images.append(
                {"id": f"{name}_{stem}", "file_name": f"{stem}.jpg", "height": height, "width": width}
            )
            frame_annotations.append({
                "image_id": f"{name}_{stem}", "file_name": f"{stem}.png",
                "segments_info": _segments(label, ids, classes),
            })  # fmt: skip
        self.panoptic_videos.append({"video_id": name, "images": images})
        self.panoptic_annotations.append({"video_id": name, "annotations": frame_annotations})

    def write(self) -> None:
        things = [{"id": i + 1, "name": category_name(i)} for i in range(len(CATEGORIES))]
        _write_json(self.root / f"{self.split}.json", {
            "info": {"description": "visionports synthetic moving shapes"},
            "videos": self.videos, "annotations": self.annotations, "categories": things,
        })  # fmt: skip
        if self.dense:
            categories = [
                {**c, "isthing": 1, "color": list(CATEGORIES[i][2])} for i, c in enumerate(things)
            ] + [{"id": len(CATEGORIES) + 1, "name": BACKGROUND_NAME, "isthing": 0, "color": [0, 0, 0]}]
            _write_json(self.root / f"{self.split}_panoptic.json", {
                "videos": self.panoptic_videos, "annotations": self.panoptic_annotations,
                "categories": categories,
            })  # fmt: skip


def _segments(label: np.ndarray, ids: np.ndarray, classes: np.ndarray) -> list[dict[str, Any]]:
    segments = []
    for value in np.unique(label):
        mask = label == value
        segments.append({
            "id": int(ids[value]), "category_id": int(classes[value]), "iscrowd": 0,
            "area": int(mask.sum()), "bbox": _box(mask),
        })  # fmt: skip
    return segments


def _write_json(path: Path, data: dict) -> None:
    text = json.dumps(data)
    atomic_write(path, lambda tmp: tmp.write_text(text))


def _check_arguments(
    num_train_videos: int, num_val_videos: int, frames: Any, size: Any, max_objects: int
) -> tuple[int, int]:
    if num_train_videos < 1:
        raise ValueError(f"num_train_videos must be at least 1, got {num_train_videos}")
    if num_val_videos < 1:
        raise ValueError(f"num_val_videos must be at least 1, got {num_val_videos}")
    lengths = (frames, frames) if isinstance(frames, int) else tuple(frames)
    if len(lengths) != 2 or not 1 <= lengths[0] <= lengths[1]:
        raise ValueError(f"frames must be a length >= 1 or a (min, max) range of lengths, got {frames!r}")
    if len(tuple(size)) != 2 or min(size) < 32:
        raise ValueError(f"size must be (height, width), each at least 32, got {size!r}")
    if not 1 <= max_objects < PANOPTIC_DIVISOR:
        raise ValueError(f"max_objects must be in 1..{PANOPTIC_DIVISOR - 1}, got {max_objects}")
    return int(size[0]), int(size[1])


def make_synthetic_ytvis(
    root: str | Path,
    num_train_videos: int = 16,
    num_val_videos: int = 4,
    frames: int | tuple[int, int] = 8,
    size: tuple[int, int] = (96, 128),
    max_objects: int = 3,
    dense: bool = False,
    seed: int = 0,
) -> Path:
    """Write the synthetic video data set described in this module under ``root`` and return ``root``.

    ``frames`` is every video's length, or a ``(min, max)`` range each video's length is drawn from; ``size``
    is ``(height, width)``; ``dense=True`` adds the panoptic and semantic ground truth. Deterministic for a
    given ``seed``; each split has its own random stream, so ``valid`` does not depend on
    ``num_train_videos``.
    """
    height, width = _check_arguments(num_train_videos, num_val_videos, frames, size, max_objects)
    root = Path(root)
    for split_index, (split, count) in enumerate(
        zip(SPLITS, (num_train_videos, num_val_videos), strict=True)
    ):
        rng = np.random.default_rng([seed, split_index])
        writer = _Writer(root, split, dense)
        for _ in range(count):
            length = _frame_count(rng, frames)
            objects = [
                _make_object(rng, height, width, length) for _ in range(int(rng.integers(1, max_objects + 1)))
            ]
            frames_, labels = _render(rng, objects, height, width, length)
            writer.add_video(objects, frames_, labels)
        writer.write()
    return root


__all__ = ["BACKGROUND_NAME", "CATEGORIES", "PANOPTIC_DIVISOR", "category_name", "make_synthetic_ytvis"]
