"""Reading VSPW video semantic segmentation folders (the layout the original VidEoMT evaluates on).

Layout (``VSPW_480p``): ``ROOT/{split}.txt`` lists the videos, one a line; each video has its frames in
``ROOT/data/<video>/origin/*.jpg`` and its label maps in ``ROOT/data/<video>/mask/*.png`` (same names, in name
order). Mask values are VSPW's raw labels: 1..124 the classes, 0 ("others") and 255 ignored; the model's
label is raw - 1 (as the original's ``_vspw_preprocess``). ``ROOT`` may also be a folder holding ``VSPW_480p/``.
Also read: the masks ``make_synthetic_ytvis(dense=True)`` writes (``ROOT/{split}_semantic/<video>/*.png``, same
values; frames in ``ROOT/{split}/JPEGImages/<video>/``; the videos are the mask folders).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..core.errors import VideoDatasetFormatError

IGNORE = 255  # the label of pixels that are not scored
FRAME_SUFFIXES = (".jpg", ".jpeg", ".png")


@dataclass
class VspwVideo:
    """One video: its frames in name order and each frame's label map (``None`` where it has none)."""

    name: str
    frame_paths: list[Path]
    mask_paths: list[Path | None]

    @property
    def length(self) -> int:
        return len(self.frame_paths)


@dataclass
class VspwSplit:
    split_file: Path
    videos: list[VspwVideo]


def to_labels(raw: np.ndarray) -> np.ndarray:
    """Model labels (uint8) of a VSPW mask's raw values: raw - 1, with 0 and 255 -> ``IGNORE``."""
    raw = raw.astype(np.int32)
    return np.where((raw == 0) | (raw == 255), IGNORE, raw - 1).astype(np.uint8)


def read_mask(path: Path) -> np.ndarray:
    """A VSPW mask's raw values [H, W]: a palette PNG's indices, a grey one's values, an RGB one's first channel
    (the original reads RGB and keeps channel 0)."""
    try:
        with Image.open(path) as image:
            array = np.asarray(image if image.mode in ("P", "L", "I", "I;16") else image.convert("RGB"))
    except (OSError, SyntaxError, ValueError) as err:
        raise VideoDatasetFormatError(f"{path}: not a readable VSPW mask ({err})") from err
    return array[..., 0] if array.ndim == 3 else array


def semantic_ground_truth(video: VspwVideo) -> np.ndarray:
    """The video's labels [T, H, W] uint8 (``IGNORE`` = 255 for frames without a mask)."""
    if all(path is None for path in video.mask_paths):
        raise VideoDatasetFormatError(f"VSPW video {video.name}: no masks (data/{video.name}/mask/)")
    maps = [None if path is None else to_labels(read_mask(path)) for path in video.mask_paths]
    shape = next(m.shape for m in maps if m is not None)
    for path, labels in zip(video.mask_paths, maps, strict=True):
        if labels is not None and labels.shape != shape:
            raise VideoDatasetFormatError(f"{path}: mask of size {list(labels.shape)}, others {list(shape)}")
    return np.stack([np.full(shape, IGNORE, np.uint8) if m is None else m for m in maps])


def load_vspw_split(root: str | Path, split: str = "val") -> VspwSplit:
    """Read a VSPW split's video list and locate frames and masks (``VideoDatasetFormatError`` if malformed)."""
    split_file, names, frames, masks = locate_split(Path(root), split)
    if not names:
        raise VideoDatasetFormatError(f"{split_file}: lists no videos")
    return VspwSplit(split_file, [_video(name, frames(name), masks(name), split_file) for name in names])


def locate_split(
    root: Path, split: str
) -> tuple[Path, list[str], Callable[[str], Path], Callable[[str], Path]]:
    """(list file or mask folder, video names, a video's frame folder, its mask folder) of the VSPW or the
    synthetic layout."""
    for candidate in (root, root / "VSPW_480p"):
        listing, data = candidate / f"{split}.txt", candidate / "data"
        if listing.is_file() and data.is_dir():
            names = [line.strip() for line in listing.read_text().splitlines() if line.strip()]
            return (
                listing,
                names,
                lambda name, d=data: d / name / "origin",
                lambda name, d=data: d / name / "mask",
            )
    masks, frames = root / f"{split}_semantic", root / split / "JPEGImages"
    if masks.is_dir() and frames.is_dir():
        names = sorted(p.name for p in masks.iterdir() if p.is_dir())
        return masks, names, lambda name: frames / name, lambda name: masks / name
    raise VideoDatasetFormatError(
        f"{root}: no VSPW split {split!r} ({split}.txt and data/ not found here or in VSPW_480p/)"
    )


def _video(name: str, frames: Path, masks: Path, split_file: Path) -> VspwVideo:
    """A video's frames in name order and the masks of the same names."""
    found = (
        sorted(p for p in frames.glob("*") if p.suffix.lower() in FRAME_SUFFIXES) if frames.is_dir() else []
    )
    if not found:
        raise VideoDatasetFormatError(f"{split_file}: video {name}: no frames in {frames}")
    paths = [masks / f"{frame.stem}.png" for frame in found]
    return VspwVideo(name, found, [path if path.is_file() else None for path in paths])


__all__ = [
    "IGNORE",
    "locate_split",
    "VspwSplit",
    "VspwVideo",
    "load_vspw_split",
    "read_mask",
    "semantic_ground_truth",
    "to_labels",
]
