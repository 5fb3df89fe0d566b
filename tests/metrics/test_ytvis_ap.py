"""YouTube-VIS AP against YTVOSeval (golden figures), by construction, and against COCOeval on 1-frame videos."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest

from visionports.metrics import ytvis_average_precision
from visionports.metrics.ytvis_ap import METRIC_NAMES

mask_util = pytest.importorskip("pycocotools.mask")
FIXTURES = Path(__file__).parents[1] / "fixtures" / "video_metrics"


def _load(name: str) -> tuple[dict, list, dict]:
    doc = json.loads((FIXTURES / f"{name}.json").read_text())
    for p in doc["predictions"]:
        for i, s in enumerate(p["segmentations"]):
            if s is not None and s.pop("counts_as_bytes", False):
                p["segmentations"][i] = {"size": s["size"], "counts": s["counts"].encode()}
    return doc["ground_truth"], doc["predictions"], doc["reference"]


@pytest.mark.parametrize("case", ["ytvis_hand", "ytvis_random", "ytvis_area_ranges"])
def test_matches_ytvoseval(case: str) -> None:
    gt, preds, ref = _load(case)
    got = ytvis_average_precision(gt, preds)
    assert set(got) == set(METRIC_NAMES)
    for name in METRIC_NAMES:
        assert got[name] == pytest.approx(ref[name], abs=1e-12), name


def _rle(mask: np.ndarray) -> dict:
    r = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": r["size"], "counts": r["counts"].decode()}


def _box(t: int, frames: range, y0: int = 1, x0: int = 2, h: int = 4, w: int = 5) -> np.ndarray:
    m = np.zeros((t, 8, 12), bool)
    for k in frames:
        m[k, y0 : y0 + h, x0 : x0 + w] = True
    return m


def _video(masks: list[tuple[int, np.ndarray]]) -> dict:
    t = masks[0][1].shape[0]
    anns = [
        {
            "id": i + 1,
            "video_id": 1,
            "category_id": c,
            "iscrowd": 0,
            "segmentations": [_rle(f) if f.any() else None for f in m],
            "areas": [int(f.sum()) if f.any() else None for f in m],
        }
        for i, (c, m) in enumerate(masks)
    ]
    return {
        "videos": [{"id": 1, "height": 8, "width": 12, "length": t, "file_names": [""] * t}],
        "categories": [{"id": 1}, {"id": 2}],
        "annotations": anns,
    }


def _pred(cat: int, masks: np.ndarray, score: float = 0.9) -> dict:
    return {
        "video_id": 1,
        "category_id": cat,
        "score": score,
        "segmentations": [_rle(f) if f.any() else None for f in masks],
    }


def test_perfect_prediction() -> None:
    tracks = [(1, _box(4, range(4))), (2, _box(4, range(1, 3), 5, 0, 2, 3))]
    got = ytvis_average_precision(_video(tracks), [_pred(c, m) for c, m in tracks])
    for name in ("AP", "AP50", "AP75", "APs", "AR10"):  # precision is tp / (tp + fp + eps): 1 - 1e-16
        assert got[name] == pytest.approx(1.0, abs=1e-12), name
    assert got["APm"] == got["APl"] == -1.0  # no medium or large tracks


def test_no_and_wrong_class_predictions() -> None:
    gt = _video([(1, _box(4, range(4)))])
    assert ytvis_average_precision(gt, [])["AP"] == 0.0
    assert ytvis_average_precision(gt, [_pred(2, _box(4, range(4)))])["AP"] == 0.0


def test_half_of_the_frames() -> None:
    """Right in 2 of 4 frames, absent in the others: video IoU 0.5, so AP50 1, AP75 0 and AP 1/10."""
    got = ytvis_average_precision(_video([(1, _box(4, range(4)))]), [_pred(1, _box(4, range(2)))])
    assert (got["AP50"], got["AP75"], got["AP"]) == pytest.approx((1.0, 0.0, 0.1), abs=1e-12)


def test_single_frame_equals_cocoeval() -> None:
    """On 1-frame videos the video IoU is the image IoU: AP equals pycocotools' COCOeval segm AP."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    rng = np.random.default_rng(0)
    h, w = 40, 50
    videos, anns, preds, images, coco_anns = [], [], [], [], []
    for vid in range(1, 9):
        videos.append({"id": vid, "height": h, "width": w, "length": 1, "file_names": ["x"]})
        images.append({"id": vid, "height": h, "width": w})
        truth = []
        for _ in range(int(rng.integers(1, 4))):
            m = np.zeros((h, w), bool)
            y, x = rng.integers(0, h - 5), rng.integers(0, w - 5)
            m[y : y + rng.integers(3, 25), x : x + rng.integers(3, 25)] = True
            cat = int(rng.integers(1, 3))
            truth.append((cat, m))
            ann_id = len(anns) + 1
            anns.append(
                {
                    "id": ann_id,
                    "video_id": vid,
                    "category_id": cat,
                    "iscrowd": 0,
                    "segmentations": [_rle(m)],
                    "areas": [int(m.sum())],
                }
            )
            coco_anns.append(
                {
                    "id": ann_id,
                    "image_id": vid,
                    "category_id": cat,
                    "iscrowd": 0,
                    "segmentation": _rle(m),
                    "area": int(m.sum()),
                    "bbox": [0, 0, 1, 1],
                }
            )
        for _ in range(int(rng.integers(0, 6))):
            cat, m = truth[int(rng.integers(0, len(truth)))]
            m = np.roll(m, int(rng.integers(-3, 4)), axis=int(rng.integers(0, 2))) ^ (
                rng.random((h, w)) < 0.02
            )
            cat = cat if rng.random() < 0.8 else 3 - cat
            preds.append(
                {
                    "video_id": vid,
                    "category_id": cat,
                    "score": float(rng.random()),
                    "segmentations": [_rle(m)],
                }
            )
    cats = [{"id": 1}, {"id": 2}]
    got = ytvis_average_precision({"videos": videos, "annotations": anns, "categories": cats}, preds)

    coco = COCO()
    coco.dataset = {"images": images, "annotations": coco_anns, "categories": cats}
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
        dt = coco.loadRes(
            [
                {
                    "image_id": p["video_id"],
                    "category_id": p["category_id"],
                    "score": p["score"],
                    "segmentation": p["segmentations"][0],
                }
                for p in preds
            ]
        )
        ev = COCOeval(coco, dt, "segm")
        ev.params.areaRng = [[0, 1e10], [0, 128**2], [128**2, 256**2], [256**2, 1e10]]
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    assert 0 < got["AP"] < 1
    for name, value in zip(METRIC_NAMES, ev.stats[:8], strict=True):
        assert got[name] == pytest.approx(value, abs=1e-12), name
