"""Reading YouTube-VIS / OVIS video instance segmentation folders, with checks.

Layout (the official one): ``ROOT/{split}.json`` and the frames under ``ROOT/{split}/JPEGImages/``, where each
video's ``file_names`` are relative paths (``<video>/<frame>.jpg``). Also found: ``ROOT/annotations/{split}.json``
or ``ROOT/annotations_{split}.json`` (OVIS), with frames under ``ROOT/{split}/`` or ``ROOT/JPEGImages/``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..core.errors import VideoDatasetFormatError
from ..utils.masks import decode_rle
from .annotation_files import malformed, read_annotation_json, sorted_categories


@dataclass
class YtvisTrack:
    """One annotated object of a video: its category and a segmentation per frame (``None`` where absent)."""

    track_id: int
    category_id: int
    segmentations: list[Any]
    iscrowd: bool = False

    def mask(self, frame: int, height: int, width: int) -> np.ndarray | None:
        """The bool ``[height, width]`` mask in ``frame``, or ``None`` where the object is absent."""
        return decode_segmentation(self.segmentations[frame], height, width)


@dataclass
class YtvisVideo:
    video_id: int
    frame_paths: list[Path]
    height: int
    width: int
    tracks: list[YtvisTrack] = field(default_factory=list)

    @property
    def length(self) -> int:
        return len(self.frame_paths)


@dataclass
class YtvisSplit:
    """A split: its videos (sorted by id), categories (sorted by id) and the JSON itself (for evaluation)."""

    annotation_file: Path
    videos: list[YtvisVideo]
    category_ids: list[int]
    category_names: list[str]
    data: dict

    def label_of(self, category_id: int) -> int:
        """Contiguous label 0..C-1 of a category id (the sorted order of the file's categories)."""
        return self.category_ids.index(category_id)


def decode_segmentation(segmentation: Any, height: int, width: int) -> np.ndarray | None:
    """A bool mask from a compressed or uncompressed RLE dict or a polygon list; ``None`` for ``None``."""
    if segmentation is None:
        return None
    if isinstance(segmentation, dict):
        mask = decode_rle(segmentation)
    else:
        from pycocotools import mask as coco_mask

        rle = coco_mask.merge(coco_mask.frPyObjects(segmentation, height, width))
        mask = coco_mask.decode(rle).astype(bool)
    if mask.shape != (height, width):
        raise ValueError(f"a segmentation of size {list(mask.shape)} in a {height}x{width} video")
    return mask


def load_ytvis_split(root: str | Path, split: str = "train") -> YtvisSplit:
    """Read a YouTube-VIS split and locate its frames.

    Raises :class:`VideoDatasetFormatError` for malformed files, unknown category or video ids, a track whose
    segmentations do not cover every frame of its video, and missing frame files.
    """
    root = Path(root)
    annotation_file = _annotation_file(root, split)
    data = _read(annotation_file)
    categories = _categories(data, annotation_file)
    videos = _videos(data, annotation_file, _frame_folder(root, split))
    _add_tracks(data, annotation_file, videos, {cid for cid, _ in categories})
    return YtvisSplit(
        annotation_file=annotation_file,
        videos=sorted(videos.values(), key=lambda video: video.video_id),
        category_ids=[cid for cid, _ in categories],
        category_names=[name for _, name in categories],
        data=data,
    )


def _annotation_file(root: Path, split: str) -> Path:
    candidates = (
        root / f"{split}.json",
        root / "annotations" / f"{split}.json",
        root / f"annotations_{split}.json",
    )
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    tried = ", ".join(str(c.relative_to(root)) for c in candidates)
    raise VideoDatasetFormatError(f"{root}: no annotation file for split {split!r} (tried {tried})")


def _frame_folder(root: Path, split: str) -> Path:
    for candidate in (root / split / "JPEGImages", root / split, root / "JPEGImages"):
        if candidate.is_dir():
            return candidate
    raise VideoDatasetFormatError(
        f"{root}: no frame folder for split {split!r} (tried {split}/JPEGImages/, {split}/, JPEGImages/)"
    )


def _malformed(annotation_file: Path, expected: str):
    return malformed(annotation_file, expected, VideoDatasetFormatError)


def _read(annotation_file: Path) -> dict:
    data = read_annotation_json(annotation_file, ("videos", "categories"), VideoDatasetFormatError)
    if data.get("annotations", []) is None:
        data["annotations"] = []  # a server split (YouTube-VIS valid / test) ships no annotations
    if not isinstance(data.get("annotations"), list):
        raise VideoDatasetFormatError(f"{annotation_file}: expected a list under 'annotations'")
    return data


def _categories(data: dict, annotation_file: Path) -> list[tuple[int, str]]:
    return sorted_categories(data, annotation_file, VideoDatasetFormatError)


def _videos(data: dict, annotation_file: Path, folder: Path) -> dict[int, YtvisVideo]:
    videos: dict[int, YtvisVideo] = {}
    for entry in data["videos"]:
        with _malformed(annotation_file, f"video entry {entry!r:.200} needs id, file_names, width, height"):
            video = YtvisVideo(
                video_id=int(entry["id"]),
                frame_paths=[folder / str(name) for name in entry["file_names"]],
                height=int(entry["height"]),
                width=int(entry["width"]),
            )
        if video.width < 1 or video.height < 1 or not video.frame_paths:
            raise VideoDatasetFormatError(
                f"{annotation_file}: video {video.video_id} has no size or no frames"
            )
        missing = next((path for path in video.frame_paths if not path.is_file()), None)
        if missing is not None:
            raise VideoDatasetFormatError(
                f"{annotation_file}: video {video.video_id}: frame {missing} not found"
            )
        videos[video.video_id] = video
    return videos


def _add_tracks(data: dict, annotation_file: Path, videos: dict[int, YtvisVideo], known: set[int]) -> None:
    for ann in data["annotations"]:
        name = ann.get("id", "?") if isinstance(ann, dict) else repr(ann)
        with _malformed(annotation_file, f"annotation {name} needs id, video_id, category_id, segmentations"):
            track = YtvisTrack(
                track_id=int(ann["id"]),
                category_id=int(ann["category_id"]),
                segmentations=list(ann["segmentations"]),
                iscrowd=bool(ann.get("iscrowd", 0)),
            )
            video_id = int(ann["video_id"])
        if video_id not in videos:
            raise VideoDatasetFormatError(
                f"{annotation_file}: annotation {name} refers to unknown video {video_id}"
            )
        if track.category_id not in known:
            raise VideoDatasetFormatError(
                f"{annotation_file}: annotation {name} has unknown category_id {track.category_id} "
                f"(categories: {sorted(known)})"
            )
        video = videos[video_id]
        if len(track.segmentations) != video.length:
            raise VideoDatasetFormatError(
                f"{annotation_file}: annotation {name} has {len(track.segmentations)} segmentations for the "
                f"{video.length} frames of video {video_id}"
            )
        video.tracks.append(track)


__all__ = ["YtvisSplit", "YtvisTrack", "YtvisVideo", "decode_segmentation", "load_ytvis_split"]
