"""YouTube-VIS / OVIS video instance segmentation AP (the youtubevos/cocoapi ``YTVOSeval`` definition).

COCO AP where a detection and a ground-truth track are compared by their spatio-temporal mask IoU: the sum
over frames of the intersections over the sum over frames of the unions (a frame where one of the two is
absent adds its area to the union only; frames beyond the shorter of the two lists are skipped). The area of a
track (for APs/APm/APl) is its mean area over the frames where it is present (non-zero), with YouTube-VIS's
ranges small < 128², medium 128²..256², large > 256². Ground-truth crowd tracks are ignored, but, as in
``YTVOSeval``, their IoU is the plain video IoU (no crowd IoU). maxDets are [1, 10, 100] per video and
category, 10 IoU thresholds 0.5:0.95 and 101 recall points.

The matching and accumulation are pycocotools' ``COCOeval`` itself (``YTVOSeval`` is a line-for-line copy of
it with ``imgIds`` renamed ``vidIds``); only the IoUs and the areas are supplied from here.
"""

from __future__ import annotations

import contextlib
import io
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np

METRIC_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10")
AREA_RANGES = [[0**2, 1e5**2], [0**2, 128**2], [128**2, 256**2], [256**2, 1e5**2]]
MAX_DETS = [1, 10, 100]


def _mask_api() -> Any:
    try:
        from pycocotools import mask
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("YouTube-VIS AP needs pycocotools: pip install 'visionports[train]'") from err
    return mask


def _to_rle(segmentation: Any, height: int, width: int) -> dict | None:
    """A compressed RLE from an RLE dict (counts str, bytes or list) or polygon list; ``None`` if absent."""
    if not segmentation:
        return None
    mask = _mask_api()
    if isinstance(segmentation, list):
        return mask.merge(mask.frPyObjects(segmentation, height, width))
    if isinstance(segmentation["counts"], list):
        return mask.frPyObjects(segmentation, height, width)
    return segmentation


def _mean_area(areas: Sequence[Any]) -> float:
    """Mean of the truthy per-frame areas (``YTVOSeval``'s ``avg_area``); 0 when there are none."""
    present = [a for a in areas if a]
    return float(np.array(present).mean()) if present else 0


def video_iou(
    dt_rles: Sequence[Sequence[dict | None]], gt_rles: Sequence[Sequence[dict | None]]
) -> np.ndarray:
    """``[D, G]`` spatio-temporal IoUs: per-frame intersections and unions summed, then divided (0 if empty).

    Per frame, one ``pycocotools.mask.iou`` call gives every pair's IoU, from which the integer intersection is
    recovered exactly (``round(iou * (a + b) / (1 + iou))``), so the sums are exact integers.
    """
    mask = _mask_api()
    num_d, num_g = len(dt_rles), len(gt_rles)
    inter = np.zeros((num_d, num_g), dtype=np.int64)
    union = np.zeros((num_d, num_g), dtype=np.int64)
    if num_d == 0 or num_g == 0:
        return np.zeros((num_d, num_g))
    len_d = np.array([len(s) for s in dt_rles])
    len_g = np.array([len(s) for s in gt_rles])
    for t in range(int(min(len_d.max(), len_g.max()))):
        d_seg = [s[t] if t < len(s) else None for s in dt_rles]
        g_seg = [s[t] if t < len(s) else None for s in gt_rles]
        d_idx = [i for i, s in enumerate(d_seg) if s is not None]
        g_idx = [j for j, s in enumerate(g_seg) if s is not None]
        area_d = np.zeros(num_d, dtype=np.int64)
        area_g = np.zeros(num_g, dtype=np.int64)
        if d_idx:
            area_d[d_idx] = mask.area([d_seg[i] for i in d_idx])
        if g_idx:
            area_g[g_idx] = mask.area([g_seg[j] for j in g_idx])
        frame_inter = np.zeros((num_d, num_g), dtype=np.int64)
        if d_idx and g_idx:
            iou = np.asarray(mask.iou([d_seg[i] for i in d_idx], [g_seg[j] for j in g_idx], [0] * len(g_idx)))
            total = area_d[d_idx][:, None] + area_g[g_idx][None, :]
            frame_inter[np.ix_(d_idx, g_idx)] = np.rint(iou * total / (1.0 + iou)).astype(np.int64)
        valid = (t < len_d)[:, None] & (t < len_g)[None, :]
        inter += np.where(valid, frame_inter, 0)
        union += np.where(valid, area_d[:, None] + area_g[None, :] - frame_inter, 0)
    ious = np.zeros((num_d, num_g))
    np.divide(inter, union, out=ious, where=union > 0)
    return ious


def _prepare_gt(ground_truth: dict) -> tuple[dict, list[int], list[int]]:
    """Ground-truth tracks grouped by video, as dicts with RLEs, mean areas and ignore flags."""
    videos = {v["id"]: v for v in ground_truth["videos"]}
    by_video: dict[int, list[dict]] = defaultdict(list)
    for ann in ground_truth.get("annotations", []):
        video = videos[ann["video_id"]]
        rles = [_to_rle(s, video["height"], video["width"]) for s in ann["segmentations"]]
        areas = ann.get("areas")
        if areas is None:
            areas = [None if r is None else int(_mask_api().area(r)) for r in rles]
        crowd = int(ann.get("iscrowd", 0))
        by_video[ann["video_id"]].append(
            {
                "id": ann["id"],
                "category_id": ann["category_id"],
                "rles": rles,
                "area": _mean_area(areas),
                "iscrowd": crowd,
                "ignore": bool(crowd),
            }
        )
    category_ids = sorted({c["id"] for c in ground_truth["categories"]})
    return by_video, sorted(videos), category_ids


def _prepare_dt(predictions: Sequence[dict], video_ids: set[int]) -> dict[int, list[dict]]:
    """Detections grouped by video; ids are 1 + their index in ``predictions`` (as ``YTVOS.loadRes``)."""
    mask = _mask_api()
    by_video: dict[int, list[dict]] = defaultdict(list)
    for index, pred in enumerate(predictions):
        if pred["video_id"] not in video_ids:
            raise ValueError(
                f"a prediction for video {pred['video_id']}, which the ground truth does not have"
            )
        rles = [s if s else None for s in pred["segmentations"]]
        areas = [None if r is None else int(mask.area(r)) for r in rles]
        by_video[pred["video_id"]].append(
            {
                "id": index + 1,
                "category_id": pred["category_id"],
                "score": float(pred["score"]),
                "rles": rles,
                "area": _mean_area(areas),
                "iscrowd": 0,
            }
        )
    return by_video


def _ious_per_category(gts: list[dict], dts: list[dict], category_ids: list[int], max_det: int) -> dict:
    """``{category: [D, G] IoUs}`` of one video, detections sorted by score and cut to ``max_det``."""
    out = {}
    for cat in category_ids:
        g = [x for x in gts if x["category_id"] == cat]
        d = [x for x in dts if x["category_id"] == cat]
        if not g and not d:
            out[cat] = []
            continue
        order = np.argsort([-x["score"] for x in d], kind="mergesort")[:max_det]
        out[cat] = video_iou([d[i]["rles"] for i in order], [x["rles"] for x in g])
    return out


def _make_eval(gt_by_video: dict, dt_by_video: dict, video_ids: list[int], category_ids: list[int]) -> Any:
    """A pycocotools ``COCOeval`` whose images are videos, with the video IoUs already computed."""
    from pycocotools.cocoeval import COCOeval

    class _VideoEval(COCOeval):
        def _prepare(self) -> None:
            self._gts, self._dts = defaultdict(list), defaultdict(list)
            cats = set(self.params.catIds)
            for vid in self.params.imgIds:
                for g in gt_by_video.get(vid, []):
                    if g["category_id"] in cats:
                        self._gts[vid, g["category_id"]].append(dict(g))
                for d in dt_by_video.get(vid, []):
                    if d["category_id"] in cats:
                        self._dts[vid, d["category_id"]].append(dict(d))
            self.evalImgs = defaultdict(list)
            self.eval = {}

        def computeIoU(self, imgId: int, catId: int) -> Any:  # noqa: N802,N803 - pycocotools' names
            return ious[imgId][catId]

    ious = {
        vid: _ious_per_category(
            gt_by_video.get(vid, []), dt_by_video.get(vid, []), category_ids, MAX_DETS[-1]
        )
        for vid in video_ids
    }
    evaluator = _VideoEval(iouType="segm")
    evaluator.params.imgIds = list(video_ids)
    evaluator.params.catIds = list(category_ids)
    evaluator.params.areaRng = [list(r) for r in AREA_RANGES]
    evaluator.params.maxDets = list(MAX_DETS)
    return evaluator


def ytvis_average_precision(ground_truth: dict, predictions: list[dict]) -> dict[str, float]:
    """AP, AP50, AP75, APs, APm, APl, AR1, AR10 (fractions; -1 where undefined) of YouTube-VIS results.

    ``ground_truth`` is a YouTube-VIS JSON dict (``videos``, ``annotations``, ``categories``); ``predictions``
    are results entries ``{"video_id", "category_id", "score", "segmentations": [RLE or None per frame]}``.
    Only the ground truth's videos and categories are evaluated (as ``YTVOSeval``).
    """
    gt_by_video, video_ids, category_ids = _prepare_gt(ground_truth)
    dt_by_video = _prepare_dt(predictions, set(video_ids))
    evaluator = _make_eval(gt_by_video, dt_by_video, video_ids, category_ids)
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    values = list(evaluator.stats[:8])
    return {name: float(v) for name, v in zip(METRIC_NAMES, values, strict=True)}
