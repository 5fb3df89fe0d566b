"""YouTube-VIS training clips for VidEoMT, as the original's ``YTVISDatasetMapper`` makes them, and their batching.

Per item: pick the clip's frames (:func:`select_frames`), draw one augmentation for the whole clip
(:mod:`.video_clip_augmentation`), read and transform the frames and the masks of every non-crowd track, keep
the tracks visible in at least one clip frame after augmentation (the original marks the others with id -1 and
its ``prepare_targets`` drops them), and normalise the frames as the VidEoMT processor does. Videos with no
non-crowd annotation are left out of training (``DATALOADER.FILTER_EMPTY_ANNOTATIONS: True``).

Random draws come from one ``numpy`` generator per process, seeded with ``(seed, rank)`` (the
``torch.distributed`` rank when initialised) and, inside a ``DataLoader`` worker, also with the worker's id
and torch's per-epoch worker seed; so every rank and worker has its own stream, reproducible under a fixed
``torch.manual_seed``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset, get_worker_info

from ..core.errors import VideoDatasetFormatError
from .video_clip_augmentation import (
    ClipAugmentation,
    ClipTransform,
    eval_clip_transform,
    sample_clip_transform,
)
from .ytvis import YtvisSplit, YtvisTrack, YtvisVideo


def select_frames(
    length: int, frames: int, frame_range: int, reverse: bool, rng: np.random.Generator
) -> list[int]:
    """Frame indices of one training clip, as the original ``select_frames``.

    When ``2 * frame_range + 1 == frames`` (the released configs: 5 and 2): a window of consecutive frames
    starting anywhere but the last possible start (the original draws ``randrange(length - frames)``), or, for
    videos shorter than ``frames``, every frame followed by ``frames - length`` random repeats (not sorted:
    the original's ``sorted`` call discards its result); reversed with probability 0.5 when ``reverse``.
    Otherwise: a random reference frame plus ``frames - 1`` frames drawn with replacement within
    ``frame_range`` of it (the reference itself excluded, unless the video has one frame), sorted.
    """
    if frame_range * 2 + 1 == frames:
        if frames > length:
            chosen = list(range(length)) + [int(i) for i in rng.integers(length, size=frames - length)]
        else:
            start = 0 if length == frames else int(rng.integers(length - frames))
            chosen = list(range(start, start + frames))
        if reverse and rng.random() < 0.5:
            chosen = chosen[::-1]
        return chosen
    reference = int(rng.integers(length))
    window = [i for i in range(max(0, reference - frame_range), min(length, reference + frame_range + 1))]
    window = [i for i in window if i != reference] or [reference]
    others = [int(window[i]) for i in rng.integers(len(window), size=frames - 1)]
    return sorted([*others, reference])


def distributed_rank() -> int:
    """This process's ``torch.distributed`` rank, 0 when not initialised."""
    dist = torch.distributed
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


class YtvisClipDataset(Dataset):
    """Clips of a :class:`YtvisSplit` for training VidEoMT.

    ``processor_or_settings`` is a VidEoMT video processor (its mean, std and test resize, the released
    augmentation recipe) or a :class:`ClipAugmentation`; ``size_scale`` multiplies every size of the recipe
    (e.g. 0.2 for CPU tests on small frames). ``frames`` / ``frame_range`` / ``reverse`` are the original's
    ``SAMPLING_FRAME_NUM`` (5), ``SAMPLING_FRAME_RANGE`` (2) and ``REVERSE_AGU`` (off).
    ``train=False`` gives deterministic clips: every frame of the video, test resize only, all videos.

    Item: ``pixel_values`` float32 ``[T, 3, h, w]`` and ``labels`` = ``{"class_labels": int64 [N] (contiguous
    via ``split.label_of``), "track_ids": int64 [N] (annotation ids), "mask_labels": bool [N, T, h, w],
    "present": bool [N, T]}`` (a track's mask is empty where it is not present), plus ``video_id`` (int) and
    ``frame_indices`` (list of int) for inspection; :func:`collate_video_clips` keeps only the first two.
    """

    def __init__(
        self,
        split: YtvisSplit,
        processor_or_settings: Any,
        frames: int = 5,
        frame_range: int = 2,
        train: bool = True,
        reverse: bool = False,
        size_scale: float = 1.0,
        seed: int = 0,
    ) -> None:
        if not isinstance(split, YtvisSplit):
            raise ValueError(f"split must be a YtvisSplit (load_ytvis_split), got {type(split).__name__}")
        if frames < 1:
            raise ValueError(f"frames must be at least 1, got {frames}")
        if frame_range < 0:
            raise ValueError(f"frame_range must be non-negative, got {frame_range}")
        if size_scale <= 0:
            raise ValueError(f"size_scale must be positive, got {size_scale}")
        settings = processor_or_settings
        if not isinstance(settings, ClipAugmentation):
            settings = ClipAugmentation.from_processor(processor_or_settings)
        self.split, self.settings = split, settings.scaled(size_scale)
        self.frames, self.frame_range, self.train, self.reverse = frames, frame_range, train, reverse
        self.seed = seed
        self.videos = [v for v in split.videos if _has_annotations(v)] if train else list(split.videos)
        self._rng: np.random.Generator | None = None
        self._rng_key: tuple[int, ...] | None = None

    def __len__(self) -> int:
        return len(self.videos)

    def _random(self) -> np.random.Generator:
        """This process's generator (a new one in each DataLoader worker, rank and epoch of workers)."""
        info = get_worker_info()
        key = (distributed_rank(),) + ((info.id, info.seed % 2**63) if info is not None else ())
        if self._rng is None or self._rng_key != key:
            self._rng, self._rng_key = np.random.default_rng([self.seed, *key]), key
        return self._rng

    def __getitem__(self, index: int) -> dict[str, Any]:
        video = self.videos[index]
        if self.train:
            rng = self._random()
            indices = select_frames(video.length, self.frames, self.frame_range, self.reverse, rng)
            transform = sample_clip_transform(self.settings, video.height, video.width, rng)
        else:
            indices = list(range(video.length))
            transform = eval_clip_transform(self.settings, video.height, video.width)
        pixel_values = torch.stack([self._frame(video, i, transform) for i in indices])
        return {
            "pixel_values": pixel_values,
            "labels": self._labels(video, indices, transform),
            "video_id": video.video_id,
            "frame_indices": indices,
        }

    def _frame(self, video: YtvisVideo, index: int, transform: ClipTransform) -> torch.Tensor:
        path = video.frame_paths[index]
        with Image.open(path) as image:
            array = np.asarray(image.convert("RGB"))
        if array.shape[:2] != (video.height, video.width):
            raise VideoDatasetFormatError(
                f"{path}: frame is {array.shape[0]}x{array.shape[1]}, video {video.video_id} is "
                f"{video.height}x{video.width}"
            )
        pixels = torch.from_numpy(transform.apply_image(array)).permute(2, 0, 1).float()
        mean = torch.tensor(self.settings.image_mean).view(3, 1, 1)
        std = torch.tensor(self.settings.image_std).view(3, 1, 1)
        return (pixels - mean) / std

    def _labels(
        self, video: YtvisVideo, indices: list[int], transform: ClipTransform
    ) -> dict[str, torch.Tensor]:
        height, width = transform.output_size
        tracks = [
            t for t in video.tracks if not t.iscrowd and any(t.segmentations[i] is not None for i in indices)
        ]
        masks = np.zeros((len(tracks), len(indices), height, width), dtype=bool)
        for n, track in enumerate(tracks):
            for t, mask in enumerate(_track_masks(track, video, indices, transform)):
                if mask is not None:
                    masks[n, t] = mask
        present = masks.any(axis=(2, 3))
        keep = present.any(axis=1)
        kept = [track for track, k in zip(tracks, keep, strict=True) if k]
        return {
            "class_labels": torch.tensor(
                [self.split.label_of(t.category_id) for t in kept], dtype=torch.int64
            ),
            "track_ids": torch.tensor([t.track_id for t in kept], dtype=torch.int64),
            "mask_labels": torch.from_numpy(masks[keep]),
            "present": torch.from_numpy(present[keep]),
        }


def _track_masks(
    track: YtvisTrack, video: YtvisVideo, indices: list[int], transform: ClipTransform
) -> list[np.ndarray | None]:
    """The track's transformed mask per clip frame (``None`` where unannotated); repeated frames decoded once."""
    cache: dict[int, np.ndarray | None] = {}
    for i in indices:
        if i not in cache:
            mask = track.mask(i, video.height, video.width)
            cache[i] = None if mask is None else transform.apply_mask(mask)
    return [cache[i] for i in indices]


def _has_annotations(video: YtvisVideo) -> bool:
    return any(not t.iscrowd and any(s is not None for s in t.segmentations) for t in video.tracks)


def collate_video_clips(items: Sequence[dict[str, Any]], size_divisibility: int = 32) -> dict[str, Any]:
    """Batch clips: ``pixel_values`` ``[B, T, 3, Hp, Wp]``, zero-padded bottom/right to the batch's largest
    size rounded up to a multiple of ``size_divisibility`` (detectron2's ``ImageList``, after normalisation),
    and ``labels``, one dict per clip with ``mask_labels`` padded with False to ``[N, T, Hp, Wp]``."""
    if size_divisibility < 1:
        raise ValueError(f"size_divisibility must be at least 1, got {size_divisibility}")
    if not items:
        raise ValueError("items must hold at least one clip")
    lengths = {item["pixel_values"].shape[0] for item in items}
    if len(lengths) > 1:
        raise ValueError(f"items must be clips of one length, got lengths {sorted(lengths)}")
    div = size_divisibility
    height = -(-max(item["pixel_values"].shape[-2] for item in items) // div) * div
    width = -(-max(item["pixel_values"].shape[-1] for item in items) // div) * div
    pixels = torch.stack([_padded(item["pixel_values"], height, width) for item in items])
    labels = [
        {**item["labels"], "mask_labels": _padded(item["labels"]["mask_labels"], height, width)}
        for item in items
    ]
    return {"pixel_values": pixels, "labels": labels}


def _padded(tensor: torch.Tensor, height: int, width: int) -> torch.Tensor:
    out = tensor.new_zeros((*tensor.shape[:-2], height, width))
    out[..., : tensor.shape[-2], : tensor.shape[-1]] = tensor
    return out


__all__ = ["YtvisClipDataset", "collate_video_clips", "distributed_rank", "select_frames"]
