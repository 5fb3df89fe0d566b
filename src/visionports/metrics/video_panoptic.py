"""Video panoptic segmentation metrics: VPQ (VIPSeg's evaluation) and STQ (Weber et al. 2021, deeplab2).

Inputs, per video: ``semantic`` ``[T, H, W]`` class indices (``ignore_label`` = void) and ``instance``
``[T, H, W]`` track ids. A segment is a (class, track id) pair over the whole video; for stuff classes the track
id is ignored (one segment per class). In the ground truth, thing pixels with track id 0 are a *crowd* region
(ignored as in COCO panoptic / deeplab2); in predictions, id 0 of a thing class is an ordinary segment.

VPQ (``eval_vpq_vspw.py`` of VIPSeg-Dataset): for each window length ``n`` (VIPSeg: 1, 2, 4, 6, 8 frames),
every run of ``n`` consecutive frames of a video is one panoptic image whose segments are the tubes cut to the
window; PQ matching (IoU > 0.5, same class; void subtracted from the union; unmatched predictions more than
half on void or on their class's crowd region not counted) gives TP/FP/FN and IoU sums per class, summed over
all windows of all videos. PQ per window length is the mean over classes with any TP/FP/FN; VPQ is the mean of
those over window lengths (likewise for thing and stuff classes).

STQ (deeplab2 ``STQuality``): AQ = sum over ground-truth thing tubes (crowd excluded) of
``1/|g| * sum_p TPA(p,g) * IoU(p,g)`` over the number of tubes, per video and pooled over videos; SQ = mean IoU
of the semantic confusion matrix pooled over all frames (void ground truth removed, classes with empty union
skipped); STQ = sqrt(AQ * SQ).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._labels import check_ignore, check_video, compact_segments

VIPSEG_WINDOW_SIZES = (1, 2, 4, 6, 8)


def _one_hot(index: np.ndarray, size: int) -> np.ndarray:
    out = np.zeros((len(index), size), dtype=np.int64)
    out[np.arange(len(index)), index] = 1
    return out


@dataclass
class _Segments:
    """The distinct segments of one video and the (gt, pred) pairs that overlap somewhere in it."""

    g_cat: np.ndarray  # [n_g] class of each gt segment (-1 void)
    g_crowd: np.ndarray  # [n_g] bool
    p_cat: np.ndarray  # [n_p] class of each predicted segment (-1 void)
    pair_g: np.ndarray  # [P] gt segment of each pair
    pair_p: np.ndarray  # [P] predicted segment of each pair
    counts: np.ndarray  # [T, P] pixels of each pair in each frame


def _video_segments(
    gt: tuple[np.ndarray, np.ndarray],
    pred: tuple[np.ndarray, np.ndarray],
    is_thing: np.ndarray,
    ignore_label: int,
) -> _Segments:
    """Per-frame pixel counts of every overlapping (gt segment, predicted segment) pair."""
    g_ids, g_cat, g_inst = compact_segments(*gt, is_thing, ignore_label)
    p_ids, p_cat, _ = compact_segments(*pred, is_thing, ignore_label)
    num_frames, n_p = g_ids.shape[0], len(p_cat)
    n_pairs = len(g_cat) * n_p
    code = (g_ids * n_p + p_ids).reshape(num_frames, -1) + np.arange(num_frames)[:, None] * n_pairs
    counts = np.bincount(code.reshape(-1), minlength=num_frames * n_pairs).reshape(num_frames, n_pairs)
    pairs = np.flatnonzero(counts.any(axis=0))
    g_crowd = (g_cat >= 0) & is_thing[np.maximum(g_cat, 0)] & (g_inst == 0)
    return _Segments(g_cat, g_crowd, p_cat, pairs // n_p, pairs % n_p, counts[:, pairs])


@dataclass
class _PQStats:
    tp: np.ndarray
    fp: np.ndarray
    fn: np.ndarray
    iou: np.ndarray

    @classmethod
    def zeros(cls, num_classes: int) -> _PQStats:
        z = np.zeros(num_classes, dtype=np.int64)
        return cls(z.copy(), z.copy(), z.copy(), np.zeros(num_classes))


def _window_stats(s: np.ndarray, seg: _Segments, stats: _PQStats) -> None:
    """Add the TP/FP/FN/IoU of all windows ``s`` ``[W, P]`` (pair pixels per window) to ``stats``."""
    num_classes = len(stats.tp)
    n_g, n_p = len(seg.g_cat), len(seg.p_cat)
    g_void, p_void = seg.g_cat < 0, seg.p_cat < 0
    gp, pp = seg.pair_g, seg.pair_p
    g_area = s @ _one_hot(gp, n_g)
    p_area = s @ _one_hot(pp, n_p)
    void_pair = g_void[gp]
    void_inter = s[:, void_pair] @ _one_hot(pp[void_pair], n_p)
    same = seg.g_cat[gp] == seg.p_cat[pp]
    crowd_pair = seg.g_crowd[gp] & same & ~p_void[pp]
    crowd_inter = s[:, crowd_pair] @ _one_hot(pp[crowd_pair], n_p)
    cand = same & ~g_void[gp] & ~seg.g_crowd[gp] & ~p_void[pp]
    inter = s[:, cand]
    union = p_area[:, pp[cand]] + g_area[:, gp[cand]] - inter - void_inter[:, pp[cand]]
    iou = np.divide(inter, union, out=np.zeros(inter.shape), where=inter > 0)
    tp = (inter > 0) & (iou > 0.5)
    cand_cat = seg.g_cat[gp[cand]]
    stats.tp += np.bincount(cand_cat, weights=tp.sum(0), minlength=num_classes).astype(np.int64)
    stats.iou += np.bincount(cand_cat, weights=np.where(tp, iou, 0.0).sum(0), minlength=num_classes)
    g_matched = (tp.astype(np.int64) @ _one_hot(gp[cand], n_g)) > 0
    p_matched = (tp.astype(np.int64) @ _one_hot(pp[cand], n_p)) > 0
    fn = (g_area > 0) & ~g_matched & ~seg.g_crowd & ~g_void
    stats.fn += np.bincount(np.maximum(seg.g_cat, 0), weights=fn.sum(0), minlength=num_classes).astype(
        np.int64
    )
    ignored = np.divide(void_inter + crowd_inter, p_area, out=np.zeros(p_area.shape), where=p_area > 0) > 0.5
    fp = (p_area > 0) & ~p_matched & ~ignored & ~p_void
    stats.fp += np.bincount(np.maximum(seg.p_cat, 0), weights=fp.sum(0), minlength=num_classes).astype(
        np.int64
    )


def _pq_average(stats: _PQStats, classes: Iterable[int]) -> tuple[float, dict[int, dict[str, float]]]:
    """Mean PQ over ``classes`` with any TP/FP/FN (NaN if none), and the per-class PQ/SQ/RQ."""
    per_class, total, n = {}, 0.0, 0
    for c in classes:
        tp, fp, fn, iou = int(stats.tp[c]), int(stats.fp[c]), int(stats.fn[c]), float(stats.iou[c])
        if tp + fp + fn == 0:
            continue
        denom = tp + 0.5 * fp + 0.5 * fn
        per_class[c] = {
            "pq": iou / denom,
            "sq": iou / tp if tp else 0.0,
            "rq": tp / denom,
            "tp": tp,
            "fp": fp,
            "fn": fn,
            "iou": iou,
        }
        total += iou / denom
        n += 1
    return (total / n if n else math.nan), per_class


def _checked_videos(
    gt_semantic: np.ndarray, gt_instance: np.ndarray, pred_semantic: np.ndarray, pred_instance: np.ndarray,
    num_classes: int, ignore_label: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """Ground truth and prediction, each checked (:func:`check_video`), of the same shape."""
    gs, gi = check_video(gt_semantic, gt_instance, num_classes, ignore_label, "ground-truth")
    ps, pi = check_video(pred_semantic, pred_instance, num_classes, ignore_label, "predicted")
    if gs.shape != ps.shape:
        raise ValueError(f"prediction {list(ps.shape)} and ground truth {list(gs.shape)} differ in shape")
    return gs, gi, ps, pi


class VideoPanopticQuality:
    """VPQ accumulator: ``update(...)`` once per video, then ``compute()``."""

    def __init__(
        self,
        num_classes: int,
        thing_classes: Iterable[int],
        ignore_label: int = 255,
        window_sizes: Iterable[int] = VIPSEG_WINDOW_SIZES,
    ) -> None:
        check_ignore(num_classes, ignore_label)
        self.num_classes, self.ignore_label = num_classes, ignore_label
        self.thing_classes = frozenset(int(c) for c in thing_classes)
        self.is_thing = np.zeros(num_classes, dtype=bool)
        self.is_thing[list(self.thing_classes)] = True
        self.window_sizes = tuple(int(n) for n in window_sizes)
        self._stats = {n: _PQStats.zeros(num_classes) for n in self.window_sizes}

    def update(
        self,
        gt_semantic: np.ndarray,
        gt_instance: np.ndarray,
        pred_semantic: np.ndarray,
        pred_instance: np.ndarray,
    ) -> None:
        """Add one video (all arrays ``[T, H, W]``)."""
        gs, gi, ps, pi = _checked_videos(
            gt_semantic, gt_instance, pred_semantic, pred_instance, self.num_classes, self.ignore_label
        )
        seg = _video_segments((gs, gi), (ps, pi), self.is_thing, self.ignore_label)
        cums = np.concatenate([np.zeros((1, seg.counts.shape[1]), np.int64), np.cumsum(seg.counts, axis=0)])
        for n in self.window_sizes:
            if seg.counts.shape[0] >= n:
                _window_stats(cums[n:] - cums[:-n], seg, self._stats[n])

    def compute(self) -> dict[str, Any]:
        """``VPQ``, ``VPQ_thing``, ``VPQ_stuff`` (fractions; means over window sizes), the same per window size
        as ``VPQ@n`` etc., and ``per_class`` ``{n: {class: {pq, sq, rq, tp, fp, fn, iou}}}``."""
        things = [c for c in range(self.num_classes) if self.is_thing[c]]
        stuff = [c for c in range(self.num_classes) if not self.is_thing[c]]
        out: dict[str, Any] = {"per_class": {}}
        for n, stats in self._stats.items():
            out[f"VPQ@{n}"], out["per_class"][n] = _pq_average(stats, range(self.num_classes))
            out[f"VPQ_thing@{n}"] = _pq_average(stats, things)[0]
            out[f"VPQ_stuff@{n}"] = _pq_average(stats, stuff)[0]
        for name in ("VPQ", "VPQ_thing", "VPQ_stuff"):
            out[name] = float(np.mean([out[f"{name}@{n}"] for n in self.window_sizes]))
        return out


@dataclass
class _Sequence:
    confusion: np.ndarray
    gt: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)
    pred: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)
    inter: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)


def _sum_by_key(parts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    if not parts:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    keys = np.concatenate([k for k, _ in parts])
    uniq, inv = np.unique(keys, return_inverse=True)
    return uniq, np.bincount(inv.reshape(-1), weights=np.concatenate([c for _, c in parts])).astype(np.int64)


def _nonzero_counts(keys: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    keep = counts > 0
    return keys[keep], counts[keep]


def _mean_iou(confusion: np.ndarray) -> float:
    """deeplab2's mean IoU: void ground-truth row removed, classes (void column included) with a union."""
    conf = confusion.astype(np.float64)
    conf[-1, :] = 0
    inter = conf.diagonal()
    union = conf.sum(0) + conf.sum(1) - inter
    ious = inter / np.maximum(union, 1e-15)
    return float(np.sum(ious) / np.count_nonzero(union))


class SegmentationTrackingQuality:
    """STQ accumulator: ``update(...)`` once per video (or per chunk with ``sequence_id``), then ``compute()``."""

    def __init__(self, num_classes: int, thing_classes: Iterable[int], ignore_label: int = 255) -> None:
        check_ignore(num_classes, ignore_label)
        self.num_classes, self.ignore_label = num_classes, ignore_label
        self.is_thing = np.zeros(num_classes + 1, dtype=bool)
        self.is_thing[[int(c) for c in thing_classes]] = True
        self._sequences: dict[Hashable, _Sequence] = {}

    def update(
        self,
        gt_semantic: np.ndarray,
        gt_instance: np.ndarray,
        pred_semantic: np.ndarray,
        pred_instance: np.ndarray,
        sequence_id: Hashable | None = None,
    ) -> None:
        """Add frames ``[T, H, W]`` to sequence ``sequence_id`` (default: a new sequence per call)."""
        gs, gi, ps, pi = _checked_videos(
            gt_semantic, gt_instance, pred_semantic, pred_instance, self.num_classes, self.ignore_label
        )
        if sequence_id is None:
            sequence_id = ("_sequence", len(self._sequences))
        size = self.num_classes + 1
        seq = self._sequences.setdefault(sequence_id, _Sequence(np.zeros((size, size), np.int64)))
        g_cls = np.where(gs == self.ignore_label, self.num_classes, gs).reshape(-1)
        p_cls = np.where(ps == self.ignore_label, self.num_classes, ps).reshape(-1)
        seq.confusion += np.bincount(g_cls * size + p_cls, minlength=size * size).reshape(size, size)
        thing = self.is_thing[: self.num_classes]
        g_ids, g_cat, g_inst = compact_segments(gs, gi, thing, self.ignore_label)
        p_ids, p_cat, p_inst = compact_segments(ps, pi, thing, self.ignore_label)
        g_ids, p_ids = g_ids.reshape(-1), p_ids.reshape(-1)
        g_tube = self.is_thing[g_cat] & (g_inst != 0)  # void (-1) indexes the False at num_classes
        crowd = self.is_thing[g_cat] & (g_inst == 0)
        g_sel, p_sel = g_tube[g_ids], self.is_thing[p_cat][p_ids] & ~crowd[g_ids]
        g_keys, p_keys = (g_cat << 32) + g_inst, (p_cat << 32) + p_inst
        seq.gt.append(_nonzero_counts(g_keys, np.bincount(g_ids[g_sel], minlength=len(g_keys))))
        seq.pred.append(_nonzero_counts(p_keys, np.bincount(p_ids[p_sel], minlength=len(p_keys))))
        both = g_sel & p_sel
        pair_counts = np.bincount(
            g_ids[both] * len(p_keys) + p_ids[both], minlength=len(g_keys) * len(p_keys)
        )
        pairs = np.flatnonzero(pair_counts)
        keys = np.stack([g_keys[pairs // len(p_keys)], p_keys[pairs % len(p_keys)]], axis=1)
        seq.inter.append((keys, pair_counts[pairs]))

    @staticmethod
    def _association(seq: _Sequence) -> tuple[float, int]:
        """(sum over gt tubes of their weighted IoU, number of gt tubes) of one sequence."""
        g_keys, g_size = _sum_by_key(seq.gt)
        p_keys, p_size = _sum_by_key(seq.pred)
        pairs = np.concatenate([k for k, _ in seq.inter]) if seq.inter else np.zeros((0, 2), np.int64)
        if len(pairs) == 0:
            return 0.0, len(g_keys)
        uniq, inv = np.unique(pairs, axis=0, return_inverse=True)
        tpa = np.bincount(inv.reshape(-1), weights=np.concatenate([c for _, c in seq.inter]))
        gs = g_size[np.searchsorted(g_keys, uniq[:, 0])].astype(np.float64)
        ps = p_size[np.searchsorted(p_keys, uniq[:, 1])].astype(np.float64)
        weighted = tpa * (tpa / (tpa + (ps - tpa) + (gs - tpa))) / gs
        return float(weighted.sum()), len(g_keys)

    def compute(self) -> dict[str, Any]:
        """``STQ``, ``AQ``, ``SQ`` (pooled over sequences) and the same per sequence (``*_per_sequence``)."""
        assoc = [self._association(seq) for seq in self._sequences.values()]
        num_tubes = sum(n for _, n in assoc)
        aq = sum(a for a, _ in assoc) / max(num_tubes, 1e-15)
        total = sum(seq.confusion for seq in self._sequences.values())
        sq = _mean_iou(total) if self._sequences else math.nan
        aq_seq = [a / max(n, 1e-15) for a, n in assoc]
        sq_seq = [_mean_iou(seq.confusion) for seq in self._sequences.values()]
        return {
            "STQ": math.sqrt(aq * sq),
            "AQ": aq,
            "SQ": sq,
            "STQ_per_sequence": [math.sqrt(a * s) for a, s in zip(aq_seq, sq_seq, strict=True)],
            "AQ_per_sequence": aq_seq,
            "SQ_per_sequence": sq_seq,
            "sequence_ids": list(self._sequences),
        }
