"""VPQ and STQ against VIPSeg's / deeplab2's evaluators (golden figures) and on cases known by construction."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from visionports.metrics import SegmentationTrackingQuality, VideoPanopticQuality

FIXTURES = Path(__file__).parents[1] / "fixtures" / "video_metrics"
CASES = ["vps_hand", "vps_random"]


def _videos(name: str) -> tuple[dict, list[tuple[np.ndarray, ...]]]:
    ref = json.loads((FIXTURES / f"{name}.json").read_text())
    data = np.load(FIXTURES / f"{name}.npz")
    keys = ("gt_semantic", "gt_instance", "pred_semantic", "pred_instance")
    return ref, [tuple(data[f"{k}_{i}"] for k in keys) for i in range(ref["num_videos"])]


def _close(got: float, want: float | None, tol: float = 1e-12) -> bool:
    return math.isnan(got) if want is None else got == pytest.approx(want, abs=tol)


@pytest.mark.parametrize("case", CASES)
def test_vpq_matches_vipseg(case: str) -> None:
    ref, videos = _videos(case)
    metric = VideoPanopticQuality(ref["num_classes"], ref["thing_classes"], ref["ignore_label"])
    for video in videos:
        metric.update(*video)
    got = metric.compute()
    for n in metric.window_sizes:
        for name in ("VPQ", "VPQ_thing", "VPQ_stuff"):
            assert _close(got[f"{name}@{n}"], ref["vpq"][f"{name}@{n}"]), (name, n)
        want_classes = ref["vpq"][f"per_class@{n}"]
        assert sorted(got["per_class"][n]) == sorted(int(c) for c in want_classes)
        for c, want in want_classes.items():
            have = got["per_class"][n][int(c)]
            assert (have["tp"], have["fp"], have["fn"]) == (want["tp"], want["fp"], want["fn"]), (n, c)
            assert have["iou"] == pytest.approx(want["iou"], abs=1e-12)
    assert got["VPQ"] == pytest.approx(
        np.mean([ref["vpq"][f"VPQ@{n}"] for n in metric.window_sizes]), abs=1e-12
    )


@pytest.mark.parametrize("case", CASES)
def test_stq_matches_references(case: str) -> None:
    ref, videos = _videos(case)
    metric = SegmentationTrackingQuality(ref["num_classes"], ref["thing_classes"], ref["ignore_label"])
    for video in videos:
        metric.update(*video)
    got = metric.compute()
    for key, tol in (("stq_vipseg", 1e-12), ("stq_deeplab2_numpy2", 1e-6)):  # deeplab2 sums in float32
        want = ref[key]
        for name in ("STQ", "AQ", "SQ"):
            assert got[name] == pytest.approx(want[name], abs=tol), (key, name)
            assert got[f"{name}_per_sequence"] == pytest.approx(want[f"{name}_per_sequence"], abs=tol), (
                key,
                name,
            )


def _scene(t: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Stuff classes 2 (top) and 3 (bottom), one car (class 0, track 1) moving right."""
    sem = np.full((t, 8, 12), 2)
    sem[:, 4:] = 3
    ins = np.zeros_like(sem)
    for k in range(t):
        sem[k, 3:6, k : k + 4], ins[k, 3:6, k : k + 4] = 0, 1
    return sem, ins


def _both(gt: tuple, pred: tuple, **kw: object) -> tuple[dict, dict]:
    vpq = VideoPanopticQuality(5, {0, 1}, window_sizes=(1, 2), **kw)
    stq = SegmentationTrackingQuality(5, {0, 1}, **kw)
    vpq.update(*gt, *pred)
    stq.update(*gt, *pred)
    return vpq.compute(), stq.compute()


def test_perfect_prediction() -> None:
    sem, ins = _scene()
    vpq, stq = _both((sem, ins), (sem, ins + 7))  # track ids need not agree, only be consistent
    assert vpq["VPQ"] == vpq["VPQ_thing"] == vpq["VPQ_stuff"] == 1.0
    assert stq["STQ"] == stq["AQ"] == stq["SQ"] == 1.0


def test_empty_prediction() -> None:
    sem, ins = _scene()
    vpq, stq = _both((sem, ins), (np.full_like(sem, 255), np.zeros_like(ins)))
    assert vpq["VPQ"] == 0.0 and stq["STQ"] == 0.0 and stq["AQ"] == 0.0


def test_id_switch() -> None:
    """A switch after frame 2 of 4: AQ = (2² + 2²) / 4² = 0.5; at 2-frame windows the middle one has two half
    tubes (IoU 0.5, not > 0.5): 2 TP, 2 FP, 1 FN, so PQ_car@2 = 2 / 3.5."""
    sem, ins = _scene()
    pred_ins = ins.copy()
    pred_ins[2:] *= 2
    vpq, stq = _both((sem, ins), (sem, pred_ins))
    assert (
        stq["AQ"] == pytest.approx(0.5) and stq["SQ"] == 1.0 and stq["STQ"] == pytest.approx(math.sqrt(0.5))
    )
    assert vpq["VPQ@1"] == 1.0
    assert vpq["per_class"][2][0]["pq"] == pytest.approx(2 / 3.5)
    assert vpq["VPQ@2"] == pytest.approx((2 / 3.5 + 1 + 1) / 3)


def test_wrong_class_of_a_track() -> None:
    """The car predicted as class 1: class 0 all FN, class 1 all FP (PQ 0 each), stuff perfect. STQ's
    association ignores classes (any thing prediction may cover a thing tube), so AQ stays 1."""
    sem, ins = _scene()
    pred_sem = np.where(sem == 0, 1, sem)
    vpq, stq = _both((sem, ins), (pred_sem, ins))
    assert vpq["VPQ_thing"] == 0.0 and vpq["VPQ_stuff"] == 1.0 and vpq["VPQ"] == pytest.approx(0.5)
    assert stq["AQ"] == 1.0 and stq["SQ"] == pytest.approx(2 / 4)  # car and "class 1" IoU 0, stuff IoU 1


def test_crowd_and_void_are_not_penalised() -> None:
    """A prediction lying on a ground-truth crowd region (thing, id 0) or on void is not a false positive."""
    sem, ins = _scene()
    gt_sem = sem.copy()
    gt_sem[:, 0:2, 0:3] = 1  # crowd of class 1 (instance 0)
    gt_sem[:, 6:, 9:] = 255
    pred_sem, pred_ins = gt_sem.copy(), ins.copy()
    pred_ins[:, 0:2, 0:3] = 4
    pred_sem[:, 6:, 9:], pred_ins[:, 6:, 9:] = 1, 5
    vpq, stq = _both((gt_sem, ins), (pred_sem, pred_ins))
    assert vpq["VPQ"] == 1.0 and stq["AQ"] == 1.0


def test_chunked_sequence_equals_whole() -> None:
    sem, ins = _scene(6)
    pred_ins = ins.copy()
    pred_ins[3:] = 2 * ins[3:]
    whole, chunks = SegmentationTrackingQuality(5, {0}), SegmentationTrackingQuality(5, {0})
    whole.update(sem, ins, sem, pred_ins)
    chunks.update(sem[:2], ins[:2], sem[:2], pred_ins[:2], sequence_id="a")
    chunks.update(sem[2:], ins[2:], sem[2:], pred_ins[2:], sequence_id="a")
    assert chunks.compute()["STQ"] == pytest.approx(whole.compute()["STQ"], abs=1e-15)


def test_rejects_bad_input() -> None:
    sem, ins = _scene()
    with pytest.raises(ValueError, match="outside"):
        VideoPanopticQuality(3, {0}).update(sem, ins, sem, ins)
    with pytest.raises(ValueError, match="ignore_label"):
        SegmentationTrackingQuality(5, {0}, ignore_label=2)
