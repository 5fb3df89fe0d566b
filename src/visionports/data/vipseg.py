"""Reading VIPSeg video panoptic segmentation folders (the layout the original VidEoMT evaluates on).

Layout (``VIPSeg_720P``, as the VIPSeg scripts leave it): ``ROOT/panoptic_gt_VIPSeg_{split}.json``,
frames ``ROOT/images/<video>/<frame>.jpg`` and panoptic PNGs ``ROOT/panomasksRGB/<video>/<frame>.png``, whose
pixels hold segment ids as ``R + 256 G + 256^2 B`` (panopticapi's ``rgb2id``; 0 = void). The JSON has
``videos`` (``video_id`` and its ``images``: id, file_name, width, height), ``annotations`` (per video, per
frame ``file_name`` and ``segments_info``: id, category_id, iscrowd) and ``categories`` (id, name, isthing).
``ROOT`` may also be a folder holding ``VIPSeg_720P/`` or ``VIPSeg/VIPSeg_720P/``. Also read: the same JSON and
PNGs as ``make_synthetic_ytvis(dense=True)`` writes them (``ROOT/{split}_panoptic.json``, frames in
``ROOT/{split}/JPEGImages/``, PNGs in ``ROOT/{split}_panoptic/``).

Model labels are **things first** (spec §4 VPS): the thing categories sorted by id, then the stuff ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..core.errors import VideoDatasetFormatError
from .annotation_files import read_annotation_json

VOID = 255  # the semantic label of unlabelled pixels


@dataclass
class VipsegVideo:
    """One annotated video: its frames, panoptic PNGs and per-frame ``segments_info``."""

    video_id: str
    frame_paths: list[Path]
    label_paths: list[Path]
    segments: list[list[dict]]
    height: int
    width: int

    @property
    def length(self) -> int:
        return len(self.frame_paths)


@dataclass
class VipsegSplit:
    """A split: its videos (in file order) and categories; ``labels`` maps category id -> model label."""

    annotation_file: Path
    videos: list[VipsegVideo]
    categories: list[dict]
    labels: dict[int, int]
    num_thing_classes: int


def things_first_labels(categories: list[dict]) -> dict[int, int]:
    """Category id -> model label: thing categories sorted by id, then stuff categories sorted by id."""
    ids = sorted(int(c["id"]) for c in categories if c.get("isthing"))
    ids += sorted(int(c["id"]) for c in categories if not c.get("isthing"))
    return {cid: label for label, cid in enumerate(ids)}


def rgb_to_id(pixels: np.ndarray) -> np.ndarray:
    """Segment ids [H, W] of an RGB panoptic PNG's pixels [H, W, 3] (panopticapi's ``rgb2id``)."""
    pixels = pixels.astype(np.int32)
    return pixels[..., 0] + 256 * pixels[..., 1] + 256 * 256 * pixels[..., 2]


def panoptic_ground_truth(video: VipsegVideo, labels: dict[int, int], num_thing_classes: int) -> tuple:
    """(semantic [T, H, W] uint8/int16 with ``VOID`` = 255, instance [T, H, W] int32) of a video.

    Thing segments keep their segment id as instance id (the same object has the same id in every frame);
    stuff, crowd and void pixels have instance 0."""
    dtype = np.uint8 if len(labels) < VOID else np.int16
    semantic = np.full((video.length, video.height, video.width), VOID, dtype=dtype)
    instance = np.zeros((video.length, video.height, video.width), dtype=np.int32)
    for t, (path, segments) in enumerate(zip(video.label_paths, video.segments, strict=True)):
        ids = _read_ids(path, video)
        for segment in segments:
            region = ids == int(segment["id"])
            label = labels[int(segment["category_id"])]
            semantic[t][region] = label
            if label < num_thing_classes and not segment.get("iscrowd", 0):
                instance[t][region] = int(segment["id"])
    return semantic, instance


def _read_ids(path: Path, video: VipsegVideo) -> np.ndarray:
    try:
        with Image.open(path) as image:
            pixels = np.asarray(image.convert("RGB"))
    except (OSError, SyntaxError, ValueError) as err:
        raise VideoDatasetFormatError(f"{path}: not a readable panoptic PNG ({err})") from err
    if pixels.shape[:2] != (video.height, video.width):
        raise VideoDatasetFormatError(
            f"{path}: {pixels.shape[0]}x{pixels.shape[1]} panoptic PNG in a {video.height}x{video.width} video"
        )
    return rgb_to_id(pixels)


def load_vipseg_split(root: str | Path, split: str = "val") -> VipsegSplit:
    """Read a VIPSeg split and locate its frames and panoptic PNGs (``VideoDatasetFormatError`` if malformed)."""
    annotation_file, images, panoptic = locate_split(Path(root), split)
    data = _read(annotation_file)
    try:
        categories = [{"id": int(c["id"]), "name": str(c["name"]), "isthing": int(c["isthing"])}
                      for c in data["categories"]]  # fmt: skip
        sizes = _image_table(data["videos"])
        videos = [_video(images, panoptic, entry, sizes) for entry in data["annotations"]]
        labels = things_first_labels(categories)
        _check_categories(annotation_file, videos, labels)
    except (KeyError, TypeError, ValueError) as err:
        if isinstance(err, VideoDatasetFormatError):
            raise
        raise VideoDatasetFormatError(
            f"{annotation_file}: malformed entry ({type(err).__name__}: {err}); expected VIPSeg's "
            "videos/annotations/categories"
        ) from err
    if not videos:
        raise VideoDatasetFormatError(f"{annotation_file}: no annotated videos")
    _check_files(annotation_file, videos)
    things = sum(1 for c in categories if c["isthing"])
    return VipsegSplit(annotation_file, videos, categories, labels, things)


def locate_split(root: Path, split: str) -> tuple[Path, Path, Path]:
    """(annotation file, frame folder, panoptic PNG folder) of the VIPSeg or the synthetic layout."""
    name = f"panoptic_gt_VIPSeg_{split}.json"
    for candidate in (root, root / "VIPSeg_720P", root / "VIPSeg" / "VIPSeg_720P"):
        if (candidate / name).is_file():
            return candidate / name, candidate / "images", candidate / "panomasksRGB"
    if (root / f"{split}_panoptic.json").is_file():
        return root / f"{split}_panoptic.json", root / split / "JPEGImages", root / f"{split}_panoptic"
    raise VideoDatasetFormatError(
        f"{root}: no VIPSeg split {split!r} ({name} not found here, in VIPSeg_720P/ or VIPSeg/VIPSeg_720P/)"
    )


def _read(annotation_file: Path) -> dict:
    return read_annotation_json(
        annotation_file, ("videos", "annotations", "categories"), VideoDatasetFormatError
    )


def _image_table(videos: list[dict]) -> dict[tuple[str, str], dict]:
    return {(str(v["video_id"]), str(image["id"])): image for v in videos for image in v["images"]}


def _video(images: Path, panoptic: Path, entry: dict, sizes: dict[tuple[str, str], dict]) -> VipsegVideo:
    """A video from its ``annotations`` entry: frames named after the ``videos`` images (``.jpg``)."""
    name, frames = str(entry["video_id"]), entry["annotations"]
    info = [sizes[(name, str(frame["image_id"]))] for frame in frames]
    if not info:
        raise ValueError(f"video {name} has no annotated frames")
    return VipsegVideo(
        video_id=name,
        frame_paths=[images / name / (Path(str(i["file_name"])).stem + ".jpg") for i in info],
        label_paths=[panoptic / name / str(frame["file_name"]) for frame in frames],
        segments=[list(frame["segments_info"]) for frame in frames],
        height=int(info[-1]["height"]),
        width=int(info[-1]["width"]),
    )


def _check_files(annotation_file: Path, videos: list[VipsegVideo]) -> None:
    for video in videos:
        missing = next((p for p in (*video.frame_paths, *video.label_paths) if not p.is_file()), None)
        if missing is not None:
            raise VideoDatasetFormatError(f"{annotation_file}: video {video.video_id}: {missing} not found")


def _check_categories(annotation_file: Path, videos: list[VipsegVideo], labels: dict[int, int]) -> None:
    for video in videos:
        for segments in video.segments:
            unknown = next((s for s in segments if int(s["category_id"]) not in labels), None)
            if unknown is not None:
                raise VideoDatasetFormatError(
                    f"{annotation_file}: video {video.video_id}: segment {unknown.get('id')} has unknown "
                    f"category_id {unknown['category_id']}"
                )


__all__ = [
    "VOID",
    "locate_split",
    "VipsegSplit",
    "VipsegVideo",
    "load_vipseg_split",
    "panoptic_ground_truth",
    "rgb_to_id",
    "things_first_labels",
]
