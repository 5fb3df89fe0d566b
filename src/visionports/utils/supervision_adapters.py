"""``supervision.Detections`` from the video results of VidEoMT, one per frame (supervision imported lazily).

Image results need no adapter: ``Detections.from_transformers`` reads DEIMv2's ``post_process_object_detection``
and SAM3-LiteText's ``post_process_instance_segmentation`` results (class id = the prompt index) as they are.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch


def video_to_supervision(result: Any, id2label: Mapping[int, str] | None = None) -> list[Any]:
    """Per frame, the ``supervision.Detections`` of one video's ``post_process`` result.

    Instance (``scores``, ``labels``, ``track_ids``, ``masks`` [N, T, H, W]): the instances showing in the
    frame, ``tracker_id`` = track id, ``class_id`` = label, ``confidence`` = score. Panoptic
    (``segmentation`` [T, H, W], ``segments``): one detection per segment showing, ``tracker_id`` = track id,
    no confidence. Semantic (a [T, H, W] class map): one detection per class, no tracker id. With
    ``id2label``, ``data["class_name"]`` holds the names. Boxes are the masks' bounding boxes.
    """
    if isinstance(result, torch.Tensor):
        return [_detections(*_semantic(result[t]), None, None, id2label) for t in range(result.shape[0])]
    if "segments" in result:
        return [_panoptic(result, t, id2label) for t in range(result["segmentation"].shape[0])]
    masks = result["masks"].cpu().numpy().astype(bool)  # [N, T, H, W]
    scores, labels = result["scores"].float().cpu().numpy(), result["labels"].cpu().numpy()
    tracks = result["track_ids"].cpu().numpy()
    frames = []
    for t in range(masks.shape[1]):
        shown = masks[:, t].any((1, 2))
        frames.append(_detections(masks[shown, t], labels[shown], tracks[shown], scores[shown], id2label))
    return frames


def _semantic(classes: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    ids = torch.unique(classes)
    return (classes[None] == ids[:, None, None]).cpu().numpy(), ids.cpu().numpy()


def _panoptic(result: Mapping, t: int, id2label: Mapping[int, str] | None) -> Any:
    seg = result["segmentation"][t]
    segments = [s for s in result["segments"] if bool((seg == s["id"]).any())]
    masks = np.stack([(seg == s["id"]).cpu().numpy() for s in segments]) if segments else None
    if masks is None:
        masks = np.zeros((0, *seg.shape), dtype=bool)
    labels = np.array([s["label"] for s in segments], dtype=int)
    tracks = np.array([s["track_id"] for s in segments], dtype=int)
    return _detections(masks, labels, tracks, None, id2label)


def _detections(
    masks: np.ndarray,
    labels: np.ndarray,
    tracks: np.ndarray | None,
    scores: np.ndarray | None,
    id2label: Mapping[int, str] | None,
) -> Any:
    import supervision as sv

    labels = np.asarray(labels, dtype=int)
    data = (
        {} if id2label is None else {"class_name": np.array([str(id2label.get(int(c), c)) for c in labels])}
    )
    return sv.Detections(
        xyxy=sv.mask_to_xyxy(masks).astype(np.float32) if len(masks) else np.zeros((0, 4), np.float32),
        mask=masks,
        confidence=None if scores is None else np.asarray(scores, dtype=np.float32),
        class_id=labels,
        tracker_id=None if tracks is None else np.asarray(tracks, dtype=int),
        data=data,
    )
