"""YouTube-VIS training clips: the original's frame selection and clip augmentation, labels and batching."""

from __future__ import annotations

import copy
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from visionports.data import video_clips
from visionports.data.synthetic_videos import CATEGORIES, COLOUR_JITTER, make_synthetic_ytvis
from visionports.data.video_clip_augmentation import ClipAugmentation
from visionports.data.video_clips import YtvisClipDataset, collate_video_clips, select_frames
from visionports.data.ytvis import YtvisSplit, load_ytvis_split
from visionports.models.videomt.video_processing_videomt import VideomtVideoProcessor

MEAN = torch.tensor([123.675, 116.28, 103.53]).view(3, 1, 1)
STD = torch.tensor([58.395, 57.12, 57.375]).view(3, 1, 1)
# 64x80 frames through this recipe come out unchanged
IDENTITY = ClipAugmentation(min_sizes=(64,), max_size=1000, crop_probability=0.0, flip_probability=0.0)


@pytest.fixture(scope="module")
def split(tmp_path_factory: pytest.TempPathFactory) -> YtvisSplit:
    root = make_synthetic_ytvis(
        tmp_path_factory.mktemp("clips") / "ytvis", 6, 1, frames=8, size=(64, 80), seed=3
    )
    return load_ytvis_split(root, "train")


def _pixels(item: dict) -> np.ndarray:
    """The clip's frames back on the 0..255 scale, [T, H, W, 3]."""
    return (item["pixel_values"] * STD + MEAN).permute(0, 2, 3, 1).numpy()


def _frame(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB")).astype(np.float32)


def test_select_frames_windows_padding_and_reverse() -> None:
    rng = np.random.default_rng(0)
    starts = set()
    for _ in range(200):
        clip = select_frames(8, 5, 2, False, rng)
        assert clip == list(range(clip[0], clip[0] + 5))
        starts.add(clip[0])
    assert starts == {0, 1, 2}  # the original's randrange(length - frames) never starts at the last window
    assert select_frames(5, 5, 2, False, rng) == [0, 1, 2, 3, 4]
    for _ in range(20):
        padded = select_frames(3, 5, 2, False, rng)
        assert padded[:3] == [0, 1, 2] and len(padded) == 5 and set(padded[3:]) <= {0, 1, 2}
    orders = {tuple(np.sign(np.diff(select_frames(8, 5, 2, True, rng)))) for _ in range(50)}
    assert orders == {(1,) * 4, (-1,) * 4}
    for _ in range(50):  # frames != 2 * range + 1: a reference frame and neighbours within the range, sorted
        clip = select_frames(20, 3, 4, False, rng)
        assert clip == sorted(clip) and clip[-1] - clip[0] <= 8


def test_items_follow_the_documented_format(split: YtvisSplit) -> None:
    dataset = YtvisClipDataset(split, VideomtVideoProcessor(), size_scale=0.2, seed=0)
    assert dataset.settings.min_sizes[0] == 64 and dataset.settings.max_size == 154
    for index in range(len(dataset)):
        item = dataset[index]
        pixels, labels = item["pixel_values"], item["labels"]
        frames, _, height, width = pixels.shape
        assert frames == 5 and pixels.dtype == torch.float32 and min(height, width) >= 64
        assert item["frame_indices"] == list(range(item["frame_indices"][0], item["frame_indices"][0] + 5))
        count = labels["class_labels"].shape[0]
        assert labels["class_labels"].dtype == labels["track_ids"].dtype == torch.int64
        assert (
            labels["mask_labels"].shape == (count, 5, height, width)
            and labels["mask_labels"].dtype == torch.bool
        )
        assert torch.equal(labels["present"], labels["mask_labels"].flatten(2).any(-1))
        assert (
            labels["present"].any(1).all()
            and ((labels["class_labels"] >= 0) & (labels["class_labels"] < 4)).all()
        )


def test_identity_clip_reproduces_frames_and_annotations(split: YtvisSplit) -> None:
    dataset = YtvisClipDataset(split, IDENTITY, seed=1)
    for index, video in enumerate(dataset.videos):
        item = dataset[index]
        indices = item["frame_indices"]
        expected = np.stack([_frame(video.frame_paths[i]) for i in indices])
        assert np.allclose(_pixels(item), expected, atol=1e-3)
        annotated = [t for t in video.tracks if any(t.segmentations[i] is not None for i in indices)]
        assert item["labels"]["track_ids"].tolist() == [t.track_id for t in annotated]
        for n, track in enumerate(annotated):
            assert item["labels"]["class_labels"][n] == split.label_of(track.category_id)
            for t, i in enumerate(indices):
                mask = track.mask(i, video.height, video.width)
                assert bool(item["labels"]["present"][n, t]) == (mask is not None)
                expected_mask = np.zeros((64, 80), dtype=bool) if mask is None else mask
                assert np.array_equal(item["labels"]["mask_labels"][n, t].numpy(), expected_mask)


def test_tracks_absent_from_every_clip_frame_are_dropped(split: YtvisSplit) -> None:
    edited = copy.deepcopy(split)
    video = edited.videos[0]
    late = video.tracks[0]
    late.segmentations = [None] * 7 + [late.segmentations[7] or late.segmentations[next(
        i for i, s in enumerate(late.segmentations) if s is not None
    )]]  # fmt: skip
    dataset = YtvisClipDataset(edited, IDENTITY, seed=0)
    for _ in range(10):  # windows of 5 in 8 frames start at 0..2, so frame 7 is never in a clip
        item = dataset[0]
        assert 7 not in item["frame_indices"] and late.track_id not in item["labels"]["track_ids"].tolist()
        assert item["labels"]["mask_labels"].shape[0] == item["labels"]["track_ids"].shape[0]


def test_flip_and_crop_keep_masks_on_the_object_pixels(split: YtvisSplit) -> None:
    crop = ClipAugmentation(flip_probability=0.0, crop_probability=1.0).scaled(0.2)
    plain = YtvisClipDataset(split, crop, seed=4)
    flipped = YtvisClipDataset(
        split, ClipAugmentation(flip_probability=1.0, crop_probability=1.0).scaled(0.2), seed=4
    )
    checked = 0
    for index in range(4):
        a, b = plain[index], flipped[index]
        assert a["frame_indices"] == b["frame_indices"]  # same draws, only the flip differs
        assert torch.equal(b["pixel_values"], a["pixel_values"].flip(-1))
        assert torch.equal(b["labels"]["mask_labels"], a["labels"]["mask_labels"].flip(-1))
        pixels = _pixels(b)
        for n, label in enumerate(b["labels"]["class_labels"].tolist()):
            base = np.array(CATEGORIES[split.category_ids[label] - 1][2])
            for t in range(pixels.shape[0]):
                mask = b["labels"]["mask_labels"][n, t].numpy()
                if mask.sum() >= 30:  # resizing blends the edges of small masks with the background
                    assert np.abs(np.median(pixels[t][mask], axis=0) - base).max() <= COLOUR_JITTER + 20
                    checked += 1
    assert checked > 20


def _draws(dataset: YtvisClipDataset) -> list:
    return [
        (item["frame_indices"], tuple(item["pixel_values"].shape)) for item in (dataset[i] for i in range(6))
    ]


def test_seeded_and_distinct_per_seed_and_rank(split: YtvisSplit, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = ClipAugmentation().scaled(0.2)
    first = _draws(YtvisClipDataset(split, settings, seed=7))
    assert first == _draws(YtvisClipDataset(split, settings, seed=7))
    assert first != _draws(YtvisClipDataset(split, settings, seed=8))
    monkeypatch.setattr(video_clips, "distributed_rank", lambda: 1)
    assert first != _draws(YtvisClipDataset(split, settings, seed=7))


def test_dataloader_workers_draw_different_reproducible_streams(
    split: YtvisSplit, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the worker identity a DataLoader worker sees, without forking this many-threaded test process (a forked
    # worker of a process holding OpenMP / TBB thread pools can leave the parent crashing later)
    import visionports.data.video_clips as video_clips

    def draws(worker: int, epoch_seed: int) -> list:
        monkeypatch.setattr(
            video_clips, "get_worker_info", lambda: SimpleNamespace(id=worker, seed=epoch_seed)
        )
        dataset = YtvisClipDataset(split, ClipAugmentation().scaled(0.2), seed=0)
        return [
            (item["frame_indices"], tuple(item["pixel_values"].shape))
            for item in map(dataset.__getitem__, [0] * 4)
        ]

    first, second = draws(0, 1234), draws(1, 1235)
    assert first != second  # each worker its own stream
    assert first == draws(0, 1234)  # reproducible
    assert first != draws(0, 999)  # a new epoch of workers (torch's per-epoch worker seed) draws anew


def test_evaluation_clips_are_whole_videos_at_the_test_size(split: YtvisSplit) -> None:
    dataset = YtvisClipDataset(split, VideomtVideoProcessor(min_size=96, max_size=1333), train=False)
    item = dataset[2]
    assert item["frame_indices"] == list(range(8)) and item["pixel_values"].shape == (8, 3, 96, 120)
    assert torch.equal(item["pixel_values"], dataset[2]["pixel_values"])


def test_videos_without_annotations_are_left_out_of_training(split: YtvisSplit) -> None:
    edited = copy.deepcopy(split)
    edited.videos[1].tracks = []
    assert len(YtvisClipDataset(edited, IDENTITY)) == len(split.videos) - 1
    assert len(YtvisClipDataset(edited, IDENTITY, train=False)) == len(split.videos)


def test_collate_pads_to_multiples_of_32_with_zeros_and_false(split: YtvisSplit) -> None:
    small = YtvisClipDataset(split, IDENTITY)[0]
    large = YtvisClipDataset(split, ClipAugmentation(min_sizes=(70,), max_size=1000, crop_probability=0.0))[1]
    assert large["pixel_values"].shape[-2:] == (70, 88)
    batch = collate_video_clips([small, large])
    assert set(batch) == {"pixel_values", "labels"} and batch["pixel_values"].shape == (2, 5, 3, 96, 96)
    assert torch.equal(batch["pixel_values"][0, :, :, :64, :80], small["pixel_values"])
    assert torch.equal(batch["pixel_values"][1, :, :, :70, :88], large["pixel_values"])
    assert not batch["pixel_values"][0, :, :, 64:].any() and not batch["pixel_values"][0, ..., 80:].any()
    assert not batch["pixel_values"][1, :, :, 70:].any() and not batch["pixel_values"][1, ..., 88:].any()
    for clip, labels in zip((small, large), batch["labels"], strict=True):
        masks, (height, width) = labels["mask_labels"], clip["pixel_values"].shape[-2:]
        assert masks.shape[-2:] == (96, 96) and masks.dtype == torch.bool
        assert torch.equal(masks[..., :height, :width], clip["labels"]["mask_labels"])
        assert masks.sum() == clip["labels"]["mask_labels"].sum()
        assert torch.equal(labels["present"], clip["labels"]["present"])
    assert collate_video_clips([small], size_divisibility=1)["pixel_values"].shape == (1, 5, 3, 64, 80)


def test_rejects_bad_arguments(split: YtvisSplit) -> None:
    with pytest.raises(ValueError, match="frames"):
        YtvisClipDataset(split, IDENTITY, frames=0)
    with pytest.raises(ValueError, match="frame_range"):
        YtvisClipDataset(split, IDENTITY, frame_range=-1)
    with pytest.raises(ValueError, match="size_scale"):
        YtvisClipDataset(split, IDENTITY, size_scale=0)
    with pytest.raises(ValueError, match="split"):
        YtvisClipDataset("train", IDENTITY)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="processor"):
        YtvisClipDataset(split, object())
    with pytest.raises(ValueError, match="flip_probability"):
        ClipAugmentation(flip_probability=2.0)
    with pytest.raises(ValueError, match="crop_size_range"):
        ClipAugmentation(crop_size_range=(600, 384))
    item = YtvisClipDataset(split, IDENTITY)[0]
    with pytest.raises(ValueError, match="size_divisibility"):
        collate_video_clips([item], size_divisibility=0)
    with pytest.raises(ValueError, match="one length"):
        collate_video_clips([item, YtvisClipDataset(split, IDENTITY, frames=3, frame_range=1)[0]])
