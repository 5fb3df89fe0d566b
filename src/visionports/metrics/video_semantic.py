"""Video semantic segmentation metrics of VSPW: mIoU and video consistency (mVC8, mVC16).

mIoU (``utils.Evaluator`` of sssdddwww2/CVPR2021_VSPW_Implement): one confusion matrix over all frames of all
videos (ground-truth void pixels dropped); IoU per class; the mean is over the classes present in the ground
truth (a class only predicted is left out). A prediction of the ignore label counts as a miss of the
ground-truth class (the original would alias it into another cell; VidEoMT never predicts void).

mVCn (``VC_perclip.py`` of the same repository): for every video longer than ``n`` frames and every start
``i`` in ``range(T - n)`` (as the original: the last possible window is not used), the pixels whose
ground-truth label is the same in frames ``i .. i+n-1`` (void included) are the denominator, and those of them
whose predicted label is also constant over the window the numerator; mVCn is the NaN-mean of these ratios over
all windows of all videos.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from ._labels import check_ignore, check_video

VSPW_CLIP_LENGTHS = (8, 16)


def _constant_windows(labels: np.ndarray, n: int) -> np.ndarray:
    """``[T - n, H, W]`` bool: is the label of each pixel the same over frames ``i .. i+n-1``, for ``i < T - n``."""
    changes = labels[1:] != labels[:-1]
    breaks = np.concatenate(
        [np.zeros((1, *labels.shape[1:]), np.int32), np.cumsum(changes, 0, dtype=np.int32)]
    )
    starts = np.arange(labels.shape[0] - n)
    return breaks[starts + n - 1] == breaks[starts]


def video_consistency(gt: np.ndarray, pred: np.ndarray, n: int) -> np.ndarray:
    """Per-window VCn ratios of one video (empty if ``T <= n``; NaN where no pixel is constant in the GT)."""
    if gt.shape[0] <= n:
        return np.zeros(0)
    gt_const = _constant_windows(gt, n)
    both = gt_const & _constant_windows(pred, n)
    with np.errstate(invalid="ignore", divide="ignore"):
        return both.sum((1, 2)) / gt_const.sum((1, 2))


class VideoSemanticQuality:
    """mIoU + mVC accumulator for VSPW-style video semantic segmentation: ``update`` per video, ``compute``."""

    def __init__(
        self,
        num_classes: int,
        ignore_label: int = 255,
        clip_lengths: Iterable[int] = VSPW_CLIP_LENGTHS,
        classes_counted: str = "gt",
    ) -> None:
        """``classes_counted``: ``"gt"`` (VSPW: classes in the ground truth) or ``"gt_or_pred"`` (any union)."""
        check_ignore(num_classes, ignore_label)
        if classes_counted not in ("gt", "gt_or_pred"):
            raise ValueError("classes_counted must be 'gt' or 'gt_or_pred'")
        self.num_classes, self.ignore_label, self.classes_counted = num_classes, ignore_label, classes_counted
        self.clip_lengths = tuple(int(n) for n in clip_lengths)
        self.confusion = np.zeros((num_classes, num_classes + 1), dtype=np.int64)
        self._vc: dict[int, list[np.ndarray]] = {n: [] for n in self.clip_lengths}

    def update(self, gt_semantic: np.ndarray, pred_semantic: np.ndarray) -> None:
        """Add one video: ``[T, H, W]`` ground-truth and predicted class maps."""
        gt, _ = check_video(gt_semantic, None, self.num_classes, self.ignore_label, "ground-truth")
        pred, _ = check_video(pred_semantic, None, self.num_classes, self.ignore_label, "predicted")
        if gt.shape != pred.shape:
            raise ValueError(
                f"prediction {list(pred.shape)} and ground truth {list(gt.shape)} differ in shape"
            )
        valid = gt != self.ignore_label
        p = np.where(pred[valid] == self.ignore_label, self.num_classes, pred[valid])
        cells = gt[valid] * (self.num_classes + 1) + p
        self.confusion += np.bincount(cells, minlength=self.confusion.size).reshape(self.confusion.shape)
        for n in self.clip_lengths:
            self._vc[n].append(video_consistency(gt, pred, n))

    def iou_per_class(self) -> np.ndarray:
        """IoU of each class (NaN where the class is not counted)."""
        conf = self.confusion
        inter = np.diag(conf[:, : self.num_classes]).astype(np.float64)
        gt_count, pred_count = conf.sum(1), conf[:, : self.num_classes].sum(0)
        counted = gt_count > 0 if self.classes_counted == "gt" else (gt_count + pred_count) > 0
        with np.errstate(invalid="ignore", divide="ignore"):
            iou = inter / (gt_count + pred_count - inter)
        return np.where(counted, iou, np.nan)

    def compute(self) -> dict[str, Any]:
        """``mIoU`` and ``mVC<n>`` for each clip length (fractions; NaN if undefined) and ``IoU_per_class``."""
        iou = self.iou_per_class()
        out: dict[str, Any] = {"mIoU": float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan")}
        for n, parts in self._vc.items():
            ratios = np.concatenate(parts) if parts else np.zeros(0)
            out[f"mVC{n}"] = float(np.nanmean(ratios)) if np.isfinite(ratios).any() else float("nan")
        out["IoU_per_class"] = iou.tolist()
        return out
