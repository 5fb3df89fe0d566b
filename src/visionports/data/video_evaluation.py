"""The paper's metrics of a VidEoMT model folder on a video data set, computed video by video.

The model's ``task`` chooses the data set layout and the metrics: ``instance`` -> YouTube-VIS / OVIS
(:mod:`.ytvis`; AP, AP50, AP75, APs, APm, APl, AR1, AR10), ``panoptic`` -> VIPSeg (:mod:`.vipseg`; VPQ and
STQ), ``semantic`` -> VSPW (:mod:`.vspw`; mIoU, and the video consistency mVC where the metric provides it).
Each video runs online with the folder's saved processor (:mod:`.video_predictions`), then its predictions
go into the metric; only a VIS run keeps anything across videos (its masks, as COCO RLE).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..core.errors import ModelFolderError, VideoDatasetFormatError
from ..core.files import atomic_write, require_family_folder
from .video_predictions import VideoOutputs, predict_instances, predict_panoptic, predict_semantic

DEFAULT_SPLITS = {"instance": ("valid", "val"), "panoptic": ("val", "valid"), "semantic": ("val", "valid")}
"""The splits tried, in order, when none is named (YouTube-VIS's ``valid``, VIPSeg's and VSPW's ``val``)."""
DATA_SETS = {"instance": "YouTube-VIS / OVIS", "panoptic": "VIPSeg", "semantic": "VSPW"}


@dataclass
class VideoEvaluation:
    """What ``evaluate_video_folder`` did: the metrics (empty for a split without ground truth)."""

    task: str
    split: str
    videos: int
    metrics: dict[str, float]
    predictions: Path | None = None


class _VisEvaluation:
    """YouTube-VIS / OVIS: each video's top instances as YTVIS results entries, then AP over the split."""

    def __init__(self, data_dir: Path, split: str, config, max_videos: int | None) -> None:
        from .ytvis import load_ytvis_split

        self.split = _load(load_ytvis_split, data_dir, split)
        if config.num_labels != len(self.split.category_ids):
            raise ValueError(
                f"the model predicts {config.num_labels} classes but {self.split.annotation_file} has "
                f"{len(self.split.category_ids)} categories; fine-tune the model on this data set first"
            )
        self.videos, self.results = self.split.videos[:max_videos], []

    @property
    def has_ground_truth(self) -> bool:
        return bool(self.split.data.get("annotations"))

    def add(self, model, processor, video, chunk: int) -> None:
        with VideoOutputs(model, processor, video.frame_paths, chunk, (video.height, video.width)) as outputs:
            found = predict_instances(outputs, processor.max_instances)
        self.results += ytvis_results(video.video_id, found, self.split.category_ids)

    def metrics(self) -> dict[str, float]:
        from ..metrics.ytvis_ap import ytvis_average_precision

        if not self.has_ground_truth:
            return {}
        truth = ground_truth_subset(self.split.data, self.videos)
        return scalar_metrics(ytvis_average_precision(truth, self.results))


class _VpsEvaluation:
    """VIPSeg: each video's panoptic map as semantic and instance maps, into VPQ and STQ."""

    def __init__(self, data_dir: Path, split: str, config, max_videos: int | None) -> None:
        from ..metrics.video_panoptic import SegmentationTrackingQuality, VideoPanopticQuality
        from .vipseg import load_vipseg_split

        self.split = _load(load_vipseg_split, data_dir, split)
        self.things = _check_vipseg_classes(self.split, config)
        self.videos = self.split.videos[:max_videos]
        thing_classes = list(range(self.things))
        self.quality = [VideoPanopticQuality(config.num_labels, thing_classes),
                        SegmentationTrackingQuality(config.num_labels, thing_classes)]  # fmt: skip

    has_ground_truth = True

    def add(self, model, processor, video, chunk: int) -> None:
        from .vipseg import panoptic_ground_truth

        truth = panoptic_ground_truth(
            video, self.split.labels, self.things
        )  # read first: fail before the run
        with VideoOutputs(model, processor, video.frame_paths, chunk, (video.height, video.width)) as outputs:
            segmentation, segments = predict_panoptic(
                outputs, self.things, processor.object_threshold, processor.overlap_threshold
            )
        predicted = semantic_and_instances(segmentation, segments, truth[0].dtype)
        for metric in self.quality:
            metric.update(*truth, *predicted)

    def metrics(self) -> dict[str, float]:
        computed = {name: value for metric in self.quality for name, value in metric.compute().items()}
        return scalar_metrics(computed, ("VPQ", "VPQ_thing", "VPQ_stuff", "STQ", "AQ", "SQ"))


class _VssEvaluation:
    """VSPW: each video's class map against its label maps, into mIoU, mVC8 and mVC16."""

    def __init__(self, data_dir: Path, split: str, config, max_videos: int | None) -> None:
        from ..metrics.video_semantic import VideoSemanticQuality
        from .vspw import load_vspw_split

        self.split = _load(load_vspw_split, data_dir, split)
        self.num_labels, self.videos = config.num_labels, self.split.videos[:max_videos]
        self.quality = VideoSemanticQuality(config.num_labels)

    has_ground_truth = True

    def add(self, model, processor, video, chunk: int) -> None:
        from .vspw import IGNORE, semantic_ground_truth

        truth = semantic_ground_truth(video)
        outside = (truth != IGNORE) & (truth >= self.num_labels)
        if outside.any():
            raise VideoDatasetFormatError(f"VSPW video {video.name}: label {int(truth[outside].max())} but the "
                                          f"model predicts {self.num_labels} classes")  # fmt: skip
        with VideoOutputs(model, processor, video.frame_paths, chunk) as outputs:
            predicted = predict_semantic(outputs)
        if predicted.shape != truth.shape:
            raise VideoDatasetFormatError(f"VSPW video {video.name}: masks of size {list(truth.shape[1:])} for "
                                          f"frames of size {list(predicted.shape[1:])}")  # fmt: skip
        self.quality.update(truth, predicted)

    def metrics(self) -> dict[str, float]:
        return scalar_metrics(self.quality.compute(), ("mIoU",))


EVALUATIONS = {"instance": _VisEvaluation, "panoptic": _VpsEvaluation, "semantic": _VssEvaluation}


def scalar_metrics(metrics: dict[str, Any], first: Sequence[str] = ()) -> dict[str, float]:
    """The numbers of a metric's ``compute()`` (per-class tables and per-video lists dropped), ``first`` first."""
    numbers = {name: float(value) for name, value in metrics.items()
               if isinstance(value, int | float) and not isinstance(value, bool)}  # fmt: skip
    return {**{name: numbers[name] for name in first if name in numbers}, **numbers}


def _load(reader, data_dir: Path, split: str):
    """``reader(data_dir, split)``, with a hint when ``data_dir`` is a COCO image data set."""
    try:
        return reader(data_dir, split)
    except VideoDatasetFormatError as err:
        if any(Path(data_dir).glob("annotations/instances_*.json")):
            raise VideoDatasetFormatError(
                f"{data_dir}: a COCO image data set; a VidEoMT model evaluates on video data ({err})"
            ) from err
        raise


def _check_vipseg_classes(split, config) -> int:
    if config.num_labels != len(split.labels):
        raise ValueError(f"the model predicts {config.num_labels} classes but {split.annotation_file} has "
                         f"{len(split.labels)} categories")  # fmt: skip
    if config.num_thing_classes != split.num_thing_classes:
        raise ValueError(f"the model has num_thing_classes={config.num_thing_classes} but "
                         f"{split.annotation_file} has {split.num_thing_classes} thing categories")  # fmt: skip
    return split.num_thing_classes


def ytvis_results(video_id: int, found, category_ids: Sequence[int]) -> list[dict]:
    """YouTube-VIS results entries (the evaluation server's format) of one video's ``VideoInstances``."""
    return [
        {"video_id": video_id, "category_id": int(category_ids[label]), "score": float(score),
         "segmentations": masks}
        for score, label, masks in zip(found.scores, found.labels, found.segmentations, strict=True)
    ]  # fmt: skip


def ground_truth_subset(data: dict, videos: Sequence) -> dict:
    """The YouTube-VIS JSON ``data`` restricted to ``videos`` (what ``--max-videos`` evaluated)."""
    keep = {video.video_id for video in videos}
    return {
        **data,
        "videos": [v for v in data["videos"] if int(v["id"]) in keep],
        "annotations": [a for a in data.get("annotations") or [] if int(a["video_id"]) in keep],
    }


def semantic_and_instances(segmentation: np.ndarray, segments: list[dict], dtype: Any = np.uint8) -> tuple:
    """(semantic [T, H, W] with 255 for void, instance [T, H, W] int32: the segment id of things, else 0)
    of a panoptic ``segmentation`` and its ``segments``."""
    semantic = np.full(segmentation.shape, 255, dtype=dtype)
    instance = np.zeros(segmentation.shape, dtype=np.int32)
    for segment in segments:
        region = segmentation == segment["id"]
        semantic[region] = segment["label"]
        if segment["is_thing"]:
            instance[region] = segment["id"]
    return semantic, instance


def write_predictions(path: str | Path, results: list[dict]) -> Path:
    """``results`` as a YouTube-VIS results JSON at ``path``, written atomically."""
    path = Path(path)
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(results)))
    return path


def _has_split(task: str, root: Path, split: str) -> bool:
    """Whether ``root`` holds ``split`` in the layout of ``task``'s data set (the files the reader opens first)."""
    if task == "instance":  # load_ytvis_split's candidates
        names = (f"{split}.json", f"annotations/{split}.json", f"annotations_{split}.json")
        return any((root / name).is_file() for name in names)
    from . import vipseg, vspw

    try:
        (vipseg if task == "panoptic" else vspw).locate_split(root, split)
    except VideoDatasetFormatError:
        return False
    return True


def default_split(task: str, root: Path) -> str:
    """The first of the task's ``DEFAULT_SPLITS`` that ``root`` holds (else the first: its reader says why)."""
    candidates = DEFAULT_SPLITS[task]
    return next((split for split in candidates if _has_split(task, root, split)), candidates[0])


def evaluate_video_folder(
    model_dir: str | Path,
    data_dir: str | Path,
    split: str | None = None,
    max_videos: int | None = None,
    predictions: str | Path | None = None,
    chunk: int = 1,
    progress: bool = True,
    device: str | None = "auto",
    dtype: str | None = "float32",
) -> VideoEvaluation:
    """Run the VidEoMT folder ``model_dir`` over ``data_dir``'s ``split`` (default: ``valid`` for YouTube-VIS /
    OVIS, ``val`` for VIPSeg / VSPW, else the other of the two) video by video and compute its task's metrics.

    ``chunk`` frames go through the model per call, its state carried between calls (1: frame by frame, as the
    original evaluation; more is faster and equal up to float round-off). ``predictions`` (instance models
    only) also writes the YouTube-VIS results JSON, e.g. for the evaluation server; it is required when the
    split has no ground truth. Inputs are checked before the model loads.
    """
    from transformers import AutoConfig

    from ..tasks.runner import load_model_folder, progress_bar
    from ..tasks.segment_video import segmenter_loader

    if max_videos is not None and max_videos < 1:
        raise ValueError(f"max_videos must be at least 1, got {max_videos}")
    if chunk < 1:
        raise ValueError(f"chunk must be at least 1, got {chunk}")
    model_dir, family = require_family_folder(model_dir, "evaluate")
    if family.name != "videomt":
        raise ModelFolderError(
            f"--model {model_dir}: a {family.name} model; video evaluation takes videomt models"
        )
    config = AutoConfig.from_pretrained(model_dir)
    if predictions is not None and config.task != "instance":
        raise ValueError(
            f"--predictions writes YouTube-VIS results: it takes instance models, not {config.task}"
        )
    if predictions is not None and not Path(predictions).parent.is_dir():
        raise ValueError(f"--predictions {predictions}: the folder {Path(predictions).parent} does not exist")
    split = split or default_split(config.task, Path(data_dir))
    evaluation = EVALUATIONS[config.task](Path(data_dir), split, config, max_videos)
    if not evaluation.has_ground_truth and predictions is None:
        raise ValueError(f"{evaluation.split.annotation_file} has no annotations (a server split): pass "
                         "--predictions FILE.json to write the results to submit")  # fmt: skip
    model, processor = load_model_folder(model_dir, segmenter_loader(device, dtype, "torch", False, False))
    with progress_bar(len(evaluation.videos), "evaluate", "video", progress) as bar:
        for video in evaluation.videos:
            evaluation.add(model, processor, video, chunk)
            bar.update(1)
    written = None if predictions is None else write_predictions(predictions, evaluation.results)
    return VideoEvaluation(config.task, split, len(evaluation.videos), evaluation.metrics(), written)


def format_video_metrics(metrics: dict[str, float]) -> str:
    """A two-column table of the metrics in their order, as percentages (``n/a`` where undefined: NaN, or
    YouTube-VIS's -1 for an area range without objects)."""
    return "\n".join(
        f"{name:<12} {value * 100:6.2f}" if math.isfinite(value) and value >= 0 else f"{name:<12} {'n/a':>6}"
        for name, value in metrics.items()
    )


__all__ = [
    "DATA_SETS",
    "DEFAULT_SPLITS",
    "VideoEvaluation",
    "evaluate_video_folder",
    "default_split",
    "format_video_metrics",
    "ground_truth_subset",
    "scalar_metrics",
    "semantic_and_instances",
    "write_predictions",
    "ytvis_results",
]
