"""VSPW mIoU and mVC against the VSPW evaluation code (golden figures) and on cases known by construction."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from visionports.metrics import VideoSemanticQuality

FIXTURES = Path(__file__).parents[1] / "fixtures" / "video_metrics"


def test_matches_vspw_evaluator() -> None:
    ref = json.loads((FIXTURES / "vss_random.json").read_text())
    data = np.load(FIXTURES / "vss_random.npz")
    metric = VideoSemanticQuality(ref["num_classes"], ref["ignore_label"], clip_lengths=(8, 16, 4))
    for i in range(ref["num_videos"]):
        metric.update(data[f"gt_semantic_{i}"], data[f"pred_semantic_{i}"])
    got = metric.compute()
    for name, want in ref["reference"].items():
        assert got[name] == pytest.approx(want, abs=1e-12), name


def _video(t: int = 20) -> np.ndarray:
    gt = np.zeros((t, 8, 12), np.int64)
    gt[:, 4:] = 1
    gt[:, :, 10:] = 255
    return gt


def test_perfect_prediction() -> None:
    metric = VideoSemanticQuality(3)
    metric.update(_video(), _video())
    got = metric.compute()
    assert (got["mIoU"], got["mVC8"], got["mVC16"]) == (1.0, 1.0, 1.0)
    assert np.isnan(got["IoU_per_class"][2])  # class 2 is in neither: not counted


def test_single_wrong_class() -> None:
    """Class 1 predicted everywhere: IoU 0 for class 0, 1/2 for class 1; a static prediction is consistent."""
    gt = _video()
    metric = VideoSemanticQuality(3)
    metric.update(gt, np.where(gt == 255, 255, 1))
    got = metric.compute()
    assert got["mIoU"] == pytest.approx(0.25) and got["mVC8"] == 1.0


def test_class_only_predicted_is_not_counted() -> None:
    gt = _video()
    pred = gt.copy()
    pred[:, 0, :5] = 2  # 5 of the 40 class-0 pixels
    vspw, union = VideoSemanticQuality(3), VideoSemanticQuality(3, classes_counted="gt_or_pred")
    for metric in (vspw, union):
        metric.update(gt, pred)
    assert vspw.compute()["mIoU"] == pytest.approx((35 / 40 + 1) / 2)
    assert union.compute()["mIoU"] == pytest.approx((35 / 40 + 1 + 0) / 3)


def test_flicker_lowers_consistency() -> None:
    """A quarter of the constant ground-truth pixels flicker every frame: mVC8 = 3/4 (short videos skipped)."""
    gt = np.zeros((12, 8, 12), np.int64)
    pred = gt.copy()
    pred[1::2, :2] = 1  # 24 of 96 pixels change every other frame
    metric = VideoSemanticQuality(2)
    metric.update(gt, pred)
    metric.update(gt[:8], gt[:8])  # T <= 8: no VC8 window, still in the mIoU
    got = metric.compute()
    assert got["mVC8"] == pytest.approx(0.75) and np.isnan(got["mVC16"])
