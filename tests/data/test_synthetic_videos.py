"""The synthetic moving-shapes video data set: YouTube-VIS layout, masks of the drawn objects, dense GT."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as coco_mask

from visionports.data.synthetic_videos import (
    BACKGROUND_NAME,
    CATEGORIES,
    COLOUR_JITTER,
    PANOPTIC_DIVISOR,
    make_synthetic_ytvis,
)
from visionports.data.ytvis import load_ytvis_split

K = len(CATEGORIES)
# pycocotools' own numpy-2 deprecation notice, raised inside its decode
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


@pytest.fixture(scope="module")
def dense_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_synthetic_ytvis(
        tmp_path_factory.mktemp("synthetic") / "ytvis", 6, 3, frames=(3, 8), size=(64, 80), dense=True, seed=5
    )


def _frame(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB")).astype(int)


def test_writes_ytvis_layout_that_the_reader_and_pycocotools_accept(dense_root: Path) -> None:
    for split, count in (("train", 6), ("valid", 3)):
        ytvis = load_ytvis_split(dense_root, split)
        assert ytvis.category_ids == list(range(1, K + 1)) and len(ytvis.videos) == count
        assert {len(v.frame_paths) for v in ytvis.videos} <= set(range(3, 9))
        assert all((v.height, v.width) == (64, 80) and v.tracks for v in ytvis.videos)
        data = json.loads((dense_root / f"{split}.json").read_text())
        assert all(
            p.parent.parent == dense_root / split / "JPEGImages" for v in ytvis.videos for p in v.frame_paths
        )
        for ann in data["annotations"]:
            assert ann["iscrowd"] == 0 and 1 <= ann["category_id"] <= K
            assert any(s is not None for s in ann["segmentations"])
            for rle, area, box in zip(ann["segmentations"], ann["areas"], ann["bboxes"], strict=True):
                assert (rle is None) == (area is None) == (box is None)
                if rle is None:
                    continue
                mask = coco_mask.decode({"size": rle["size"], "counts": rle["counts"].encode()}).astype(bool)
                assert (
                    mask.sum()
                    == area
                    == coco_mask.area({"size": rle["size"], "counts": rle["counts"].encode()})
                )
                assert (
                    coco_mask.toBbox({"size": rle["size"], "counts": rle["counts"].encode()}).tolist() == box
                )


def test_masks_cover_the_drawn_objects_and_objects_enter_leave_and_occlude(dense_root: Path) -> None:
    ytvis = load_ytvis_split(dense_root, "train")
    absent = touching = 0
    for video in ytvis.videos:
        for t, path in enumerate(video.frame_paths):
            frame = _frame(path)
            union = np.zeros((video.height, video.width), dtype=bool)
            for track in video.tracks:
                mask = track.mask(t, video.height, video.width)
                if mask is None:
                    absent += 1
                    continue
                assert not (union & mask).any()  # visible parts never overlap
                touching += bool((_grown(union) & mask).any())  # one shape cut out of another
                union |= mask
                base = np.array(CATEGORIES[track.category_id - 1][2])
                # JPEG blurs edges: the median colour of the mask is the category's, up to the jitter
                assert np.abs(np.median(frame[mask], axis=0) - base).max() <= COLOUR_JITTER + 12
    assert absent > 0 and touching > 0


def _grown(mask: np.ndarray) -> np.ndarray:
    grown = mask.copy()
    grown[1:] |= mask[:-1]
    grown[:-1] |= mask[1:]
    grown[:, 1:] |= mask[:, :-1]
    grown[:, :-1] |= mask[:, 1:]
    return grown


def test_dense_ground_truth_matches_the_instance_masks(dense_root: Path) -> None:
    ytvis = load_ytvis_split(dense_root, "valid")
    panoptic = json.loads((dense_root / "valid_panoptic.json").read_text())
    categories = {c["id"]: c for c in panoptic["categories"]}
    assert categories[K + 1]["name"] == BACKGROUND_NAME and categories[K + 1]["isthing"] == 0
    assert all(categories[i]["isthing"] == 1 for i in range(1, K + 1))
    for video, entry in zip(ytvis.videos, panoptic["annotations"], strict=True):
        name = video.frame_paths[0].parent.name
        assert entry["video_id"] == name and len(entry["annotations"]) == video.length
        for t, frame_entry in enumerate(entry["annotations"]):
            rgb = _frame(dense_root / "valid_panoptic" / name / frame_entry["file_name"])
            ids = rgb[..., 0] + 256 * rgb[..., 1] + 256**2 * rgb[..., 2]
            with Image.open(dense_root / "valid_semantic" / name / frame_entry["file_name"]) as image:
                semantic = np.asarray(image)
            expected_ids = np.full(ids.shape, (K + 1) * PANOPTIC_DIVISOR)
            expected_semantic = np.full(ids.shape, K + 1)
            for instance, track in enumerate(video.tracks, start=1):
                mask = track.mask(t, video.height, video.width)
                if mask is not None:
                    expected_ids[mask] = track.category_id * PANOPTIC_DIVISOR + instance
                    expected_semantic[mask] = track.category_id
            assert np.array_equal(ids, expected_ids) and np.array_equal(semantic, expected_semantic)
            segments = {s["id"]: s for s in frame_entry["segments_info"]}
            assert sorted(segments) == sorted(np.unique(ids).tolist())
            for segment_id, segment in segments.items():
                assert segment["category_id"] == segment_id // PANOPTIC_DIVISOR
                assert segment["area"] == (ids == segment_id).sum()


def test_deterministic_per_seed_and_fast(tmp_path: Path) -> None:
    start = time.perf_counter()
    a = make_synthetic_ytvis(tmp_path / "a", 16, 1, frames=8, size=(96, 128), seed=1)
    elapsed = time.perf_counter() - start
    b = make_synthetic_ytvis(tmp_path / "b", 2, 1, frames=8, size=(96, 128), seed=1)
    c = make_synthetic_ytvis(tmp_path / "c", 2, 1, frames=8, size=(96, 128), seed=2)
    frame = Path("train/JPEGImages/video0001/00003.jpg")
    assert np.array_equal(_frame(a / frame), _frame(b / frame))
    assert not np.array_equal(_frame(a / frame), _frame(c / frame))
    assert (a / "valid.json").read_text() == (b / "valid.json").read_text()  # valid ignores num_train_videos
    assert (a / "valid.json").read_text() != (c / "valid.json").read_text()
    assert elapsed < 4.0  # about 0.1 s on 2 CPU cores; the budget is 2 s


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"num_train_videos": 0}, "num_train_videos"),
        ({"num_val_videos": 0}, "num_val_videos"),
        ({"frames": 0}, "frames"),
        ({"frames": (5, 3)}, "frames"),
        ({"size": (16, 64)}, "size"),
        ({"max_objects": 0}, "max_objects"),
    ],
)
def test_rejects_bad_arguments(tmp_path: Path, kwargs: dict, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        make_synthetic_ytvis(tmp_path, **kwargs)
