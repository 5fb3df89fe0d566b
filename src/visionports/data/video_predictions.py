"""A VidEoMT model's video-level predictions for one video of a data set, online and in bounded memory.

The model runs once over the video as ``segment-video`` runs it (``tasks.segment_video.run_chunks``: the saved
processor per chunk of frames, the model's state carried from chunk to chunk, mask logits rounded to float16).
The class logits of every frame ([T, Q, K+1], small) stay in memory; the stride-4 mask logits are spilled to a
temporary folder chunk by chunk (float16, so nothing is lost) and read back chunk by chunk for the processor's
streaming post-processing (``postprocessing_videomt``), whose results equal its whole-video post-processing.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from itertools import islice
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..models.videomt.postprocessing_videomt import (
    instance_choice,
    instance_chunk_masks,
    panoptic_choice,
    panoptic_chunk_counts,
    panoptic_chunk_map,
    panoptic_chunk_regions,
    panoptic_ids,
    semantic_chunk_map,
    video_class_probs,
)
from ..tasks.segment_video import run_chunks
from ..utils.images import open_image
from ..utils.masks import encode_rle


class FrameFiles:
    """A video's frame files read ``chunk`` at a time (the frame source ``segment_video``'s runner takes)."""

    def __init__(self, paths: Sequence[Path], chunk: int = 1) -> None:
        if chunk < 1:
            raise ValueError(f"chunk must be at least 1, got {chunk}")
        self.paths, self.chunk = list(paths), chunk

    def chunks(self) -> Iterator[tuple[list[Image.Image], list[Fraction]]]:
        frames = iter(enumerate(self.paths))
        while batch := list(islice(frames, self.chunk)):
            yield [open_image(path) for _, path in batch], [Fraction(t) for t, _ in batch]


class _Silent:
    def update(self, n: int) -> None:
        pass


class VideoOutputs:
    """One model pass over a video: ``class_logits`` [T, Q, K+1] and the spilled per-chunk mask logits.

    ``size`` (height, width) replaces the frames' own size as the size masks are restored to (the original
    restores them to the data set's annotated size). Use as a context manager: the spill folder is removed
    on exit."""

    def __init__(self, model, processor, frame_paths: Sequence[Path], chunk: int = 1,
                 size: tuple[int, int] | None = None) -> None:  # fmt: skip
        self._folder = tempfile.TemporaryDirectory(prefix="visionports-eval-")
        self._geometry: list[tuple] = []
        classes = []
        try:
            for n, (_, _, args) in enumerate(
                run_chunks(model, processor, FrameFiles(frame_paths, chunk), _Silent())
            ):
                classes.append(args[0])
                np.save(self._chunk_file(n), args[1].half().numpy())
                self._geometry.append((*args[2:4], tuple(size) if size is not None else args[4]))
        except BaseException:
            self._folder.cleanup()
            raise
        self.class_logits = torch.cat(classes)

    def _chunk_file(self, n: int) -> Path:
        return Path(self._folder.name) / f"{n}.npy"

    def chunks(self) -> Iterator[tuple]:
        """Per chunk: (mask logits [Q, t, h, w] float32, padded, resized, original size)."""
        for n, geometry in enumerate(self._geometry):
            yield (torch.from_numpy(np.load(self._chunk_file(n))).float(), *geometry)

    def close(self) -> None:
        self._folder.cleanup()

    def __enter__(self) -> VideoOutputs:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class VideoInstances:
    """VIS predictions of a video, best first: each instance's score, label, query slot and RLE per frame."""

    scores: list[float]
    labels: list[int]
    track_ids: list[int]
    segmentations: list[list[dict]]


def predict_instances(outputs: VideoOutputs, max_instances: int) -> VideoInstances:
    """``instance_segmentation`` of the whole video, its masks encoded as COCO RLE frame by frame."""
    scores, labels, queries = instance_choice(outputs.class_logits, max_instances)
    segmentations: list[list[dict]] = [[] for _ in range(len(queries))]
    for masks, *geometry in outputs.chunks():
        chosen = instance_chunk_masks(masks, queries, *geometry).numpy()
        for n, frames in enumerate(chosen):
            segmentations[n] += [encode_rle(frame) for frame in frames]
    return VideoInstances(scores.tolist(), labels.tolist(), queries.tolist(), segmentations)


def predict_semantic(outputs: VideoOutputs) -> np.ndarray:
    """``semantic_segmentation`` of the whole video: the class map [T, H, W] (uint8, int16 past 255 classes)."""
    probs = video_class_probs(outputs.class_logits)[:, :-1]
    dtype = np.uint8 if probs.shape[-1] <= 255 else np.int16
    return np.concatenate(
        [semantic_chunk_map(probs, *chunk).numpy().astype(dtype) for chunk in outputs.chunks()]
    )


def predict_panoptic(
    outputs: VideoOutputs,
    num_thing_classes: int,
    object_threshold: float = 0.8,
    overlap_threshold: float = 0.8,
) -> tuple[np.ndarray, list[dict]]:
    """``panoptic_segmentation`` of the whole video: ``segmentation`` [T, H, W] int32 (0 = void) and its
    ``segments`` (id, label, is_thing, track_id); the segments' areas are summed over the chunks first."""
    choice = panoptic_choice(outputs.class_logits, object_threshold)
    counts = sum(panoptic_chunk_counts(*panoptic_chunk_regions(choice, *chunk)) for chunk in outputs.chunks())
    ids, segments = panoptic_ids(choice, counts, num_thing_classes, overlap_threshold)
    maps = [
        panoptic_chunk_map(*panoptic_chunk_regions(choice, *chunk), ids).numpy() for chunk in outputs.chunks()
    ]
    return np.concatenate(maps), segments


__all__ = [
    "FrameFiles",
    "VideoInstances",
    "VideoOutputs",
    "predict_instances",
    "predict_panoptic",
    "predict_semantic",
]
