"""Text-prompted video tracking with SAM3-LiteText: the original ``Sam3VideoInference`` (detector + tracker, one
text prompt) as a streaming session with bounded memory.

Each frame runs the original's five steps: detection (presence-weighted scores, mask NMS), tracker propagation of
every tracker state (one per admission frame), the update plan (detection/track association, hotstart removals,
periodic reconditioning, occlusion-based suppression, memory encoding of the tracked masks), its execution (new
objects become a new state; removed objects leave their states) and the frame's outputs.

Outputs wait ``hotstart_delay`` frames, as in the original: an object removed by the hotstart rules during that
window is hidden on every frame still waiting. :meth:`Sam3LiteTextVideoSession.step` returns the frames that
became final (frame ``t`` is final after frame ``t + hotstart_delay - 1`` was processed), and
:meth:`Sam3LiteTextVideoSession.flush` the rest at the end of the video. :func:`track_video_like_original`
reproduces the original notebook's call sequence (``add_prompt`` on frame 0, then ``propagate_in_video``, which
processes frame 0 a second time on the same state).

Memory stays bounded: per tracker state the entries :mod:`.tracker_sam3_lite_text` documents; per object a few
numbers (score, first frame, keep-alive, last occlusion); unmatched / duplicate counters only while the object is
inside its hotstart window; the held-back frames as low-resolution logits.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import transformers.models.sam3.modeling_sam3 as sam3

from ...utils.masks import region_sizes
from .interactive_sam3_lite_text import trunk_map
from .tracker_sam3_lite_text import (
    FrameFeatures,
    TrackerCore,
    TrackerState,
    pixelwise_non_overlap,
    suppress_shrunk,
)

NEVER_OCCLUDED, ALWAYS_OCCLUDED = -1, 100000
REMOVED_SCORE = -1e4


@dataclass
class Sam3LiteTextVideoSettings:
    """The original's video hyper-parameters, released values (``build_sam3_video_model`` with temporal
    disambiguation). The tiny golden case lowers ``score_threshold_detection`` and ``new_det_thresh`` to 0.36."""

    score_threshold_detection: float = 0.5  # detections kept (and the NMS pre-filter)
    det_nms_thresh: float = 0.1  # mask IoU above which a lower-scoring detection is suppressed
    assoc_iou_thresh: float = 0.1  # detection matches a track (and is not new)
    trk_assoc_iou_thresh: float = 0.5  # a track counts as matched
    new_det_thresh: float = 0.7  # minimum score of a new object
    hotstart_delay: int = 15
    hotstart_unmatch_thresh: int = 8
    hotstart_dup_thresh: int = 8
    suppress_unmatched_only_within_hotstart: bool = True
    init_trk_keep_alive: int = 30
    max_trk_keep_alive: int = 30
    min_trk_keep_alive: int = -1
    decrease_trk_keep_alive_for_empty_masklets: bool = False
    suppress_overlapping_based_on_recent_occlusion_threshold: float = 0.7
    fill_hole_area: int = 16
    recondition_every_nth_frame: int = 16
    high_conf_thresh: float = 0.8  # hard-coded in the original
    high_iou_thresh: float = 0.8  # hard-coded in the original
    shrink_threshold: float = 0.3  # hard-coded in the original
    occlusion_suppressed_logit: float = -10.0  # hard-coded in the original
    max_num_objects: int = 10000
    # tracker
    num_maskmem: int = 7
    max_cond_frames_in_attn: int = 4
    max_obj_ptrs_in_encoder: int = 16
    use_memory_selection: bool = True
    memory_selection_threshold: float = 0.01
    multimask_output_for_tracking: bool = True
    sigmoid_scale_for_mem_enc: float = 20.0
    sigmoid_bias_for_mem_enc: float = -10.0


@dataclass
class VideoFrameOutput:
    """Objects shown on one frame: ``obj_ids`` ascending, ``scores`` (each object's detection score on its
    admission frame), ``boxes_xywh`` (normalised by the video width/height, from the masks before the
    non-overlap step), ``masks`` bool [N, H, W] at the video resolution, ``tracker_scores`` (the ranking used
    for overlaps); ``mask_logits`` (the logits the masks threshold at 0) only when the session traces."""

    frame_index: int
    obj_ids: torch.Tensor
    scores: torch.Tensor
    boxes_xywh: torch.Tensor
    masks: torch.Tensor
    tracker_scores: torch.Tensor
    mask_logits: torch.Tensor | None = None


@dataclass
class _FrameRecord:
    """A processed frame waiting for its outputs: low-resolution logits per object [1, h, w]."""

    frame: int
    logits: dict[int, torch.Tensor]
    scores: dict[int, float]
    tracker_scores: dict[int, float]
    suppressed: set[int]


@dataclass
class _Hotstart:
    """Per-object bookkeeping of the hotstart rules (only what can still matter)."""

    first_frame: dict[int, int] = field(default_factory=dict)
    keep_alive: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    unmatched: dict[int, int] = field(default_factory=dict)  # count, while inside the hotstart window
    ever_unmatched: set[int] = field(default_factory=set)
    overlaps: dict[tuple[int, int], int] = field(default_factory=dict)  # count, while inside the window
    removed: set[int] = field(default_factory=set)


# -------------------------------------------------------------------------------------------------------------
# pure helpers
# -------------------------------------------------------------------------------------------------------------
def mask_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU [N, M] of bool masks [N, H, W] and [M, H, W]."""
    a, b = a.flatten(1)[:, None], b.flatten(1)[None]
    inter = (a & b).sum(-1).float()
    union = (a | b).sum(-1).float()
    return inter / union.clamp(min=1)


def greedy_mask_nms(
    probs: torch.Tensor, masks: torch.Tensor, threshold: float, iou_threshold: float
) -> torch.Tensor:
    """Keep flags [Q]: queries above ``threshold`` visited by decreasing probability, each suppressing the
    later ones whose binary-mask IoU with it exceeds ``iou_threshold``."""
    valid = probs > threshold
    keep = torch.zeros_like(valid)
    index = valid.nonzero().flatten()
    if index.numel() == 0:
        return keep
    ious = mask_iou(masks[index] > 0, masks[index] > 0).numpy()
    order = probs[index].float().numpy().argsort()[::-1]
    while order.size:
        first = order[0]
        keep[index[first]] = True
        order = order[1:][ious[first, order[1:]] <= iou_threshold]
    return keep


def fill_small_regions(logits: torch.Tensor, max_area: int) -> torch.Tensor:
    """Mask logits [N, 1, h, w] cleaned as the original tracker outputs: background regions (8-connected) of at
    most ``max_area`` pixels set to 0.1, then foreground specks of at most ``min(max_area, area // 2)`` pixels set
    to -0.1."""
    if max_area <= 0 or logits.shape[0] == 0:
        return logits
    background = logits <= 0
    logits = torch.where(background & (region_sizes(background) <= max_area), 0.1, logits)
    foreground = logits > 0
    limit = foreground.sum(dim=(2, 3), keepdim=True).div(2, rounding_mode="floor").clamp(max=max_area)
    sizes = region_sizes(foreground)
    return torch.where(foreground & (sizes <= limit) & (sizes > 0), -0.1, logits)


def masks_to_boxes_xyxy(masks: torch.Tensor) -> torch.Tensor:
    """Inclusive pixel boxes [N, 4] (x0, y0, x1, y1) of bool masks [N, H, W] (empty masks: (W, H, 0, 0))."""
    n, h, w = masks.shape
    cols, rows = masks.any(dim=1), masks.any(dim=2)
    xs, ys = torch.arange(w), torch.arange(h)
    x0 = torch.where(cols, xs, w).amin(dim=1)
    y0 = torch.where(rows, ys, h).amin(dim=1)
    x1 = (cols * xs).amax(dim=1)
    y1 = (rows * ys).amax(dim=1)
    return torch.stack([x0, y0, x1, y1], dim=1).float()


def presence_weighted_logits(logits: torch.Tensor, presence: torch.Tensor) -> torch.Tensor:
    """Query logits with the presence score folded in, as the original scores them: the logit of
    ``sigmoid(logit) * sigmoid(presence)`` (probabilities clipped to [1e-3, 1 - 1e-3]), clamped to +-10."""
    return sam3.inverse_sigmoid(logits.sigmoid() * presence.sigmoid()).clamp(-10.0, 10.0)


# -------------------------------------------------------------------------------------------------------------
# the session
# -------------------------------------------------------------------------------------------------------------
class Sam3LiteTextVideoSession:
    """Track every object matching one text prompt through a video, frame by frame.

    ``model``: a :class:`Sam3LiteTextModel` with tracker weights; ``input_ids`` [1, ctx] the tokenised prompt;
    ``video_size`` (H, W) of the original video (masks and boxes are returned at that size; default the model's
    input size); ``num_frames`` the video length when known (the original normalises object-pointer positions and
    sizes memory selection by ``min(num_frames, 16)``; unknown = 16). ``pixel_values`` given to :meth:`step` are
    one preprocessed frame [1, 3, S, S] (the original stores them in float16).
    """

    def __init__(self, model: Any, input_ids: torch.Tensor, settings: Sam3LiteTextVideoSettings | None = None,
                 video_size: tuple[int, int] | None = None, num_frames: int | None = None,
                 trace: dict[str, torch.Tensor] | None = None):  # fmt: skip
        if model.tracker is None:
            raise ValueError("video tracking needs the tracker weights (a checkpoint with tracker.* keys)")
        if model.dtype != torch.float32:
            raise ValueError(f"video tracking runs the model in float32 (the original computes in float32 and "
                             f"rounds to bfloat16 at two points), got {model.dtype}: load it with dtype float32")  # fmt: skip
        self.model = model
        self.settings = settings or Sam3LiteTextVideoSettings()
        size = model.config.image_size
        self.video_size = tuple(video_size) if video_size is not None else (size, size)
        self.core = TrackerCore(model.tracker, self.settings, num_frames)
        with torch.no_grad():
            self.text = model.get_text_features(input_ids, return_dict=True)
        self.states: list[TrackerState] = []
        self.obj_ids: list[int] = []  # every tracked object, states in creation order
        self.max_obj_id = -1
        self.obj_score: dict[int, float] = {}
        self.last_occluded: dict[int, int] = {}
        self.hotstart = _Hotstart()
        self.suppressed: dict[int, set[int]] = defaultdict(set)
        self.tracker_scores: dict[int, dict[int, float]] = defaultdict(dict)
        self.buffer: list[_FrameRecord] = []
        self.next_frame = 0
        self.trace = trace
        self._prefix = ""
        self._parts: dict[str, list[torch.Tensor]] = defaultdict(list)

    # ------------------------------------------------------------------------------------------- public API
    @torch.no_grad()
    def step(self, pixel_values: torch.Tensor) -> list[VideoFrameOutput]:
        """Process the next frame; return the frames whose outputs became final (oldest first)."""
        frame = self.next_frame
        self.next_frame += 1
        self.buffer.append(self.process_frame(frame, pixel_values))
        return self.ready()

    def ready(self) -> list[VideoFrameOutput]:
        """The oldest held-back frame once ``hotstart_delay`` frames are held (at once without a delay)."""
        if len(self.buffer) >= max(self.settings.hotstart_delay, 1):
            return [self.finalize(self.buffer.pop(0))]
        return []

    def flush(self) -> list[VideoFrameOutput]:
        """The frames still held back (call once the video ended)."""
        held, self.buffer = self.buffer, []
        return [self.finalize(r) for r in held]

    # ------------------------------------------------------------------------------------------- tracing
    def _record(self, name: str, value: torch.Tensor) -> None:
        if self.trace is not None:
            self._parts[name].append(value.detach().clone())

    def _flush_trace(self) -> None:
        if self.trace is None:
            return
        for name, parts in self._parts.items():
            self.trace[self._prefix + name] = torch.cat(parts) if parts[0].ndim else torch.stack(parts)
        self._parts = defaultdict(list)

    # ------------------------------------------------------------------------------------------- one frame
    @torch.no_grad()
    def process_frame(
        self, frame: int, pixel_values: torch.Tensor, prefix: str | None = None
    ) -> _FrameRecord:
        """One pass of the original ``_det_track_one_frame`` on ``frame`` (no output delay, nothing hidden yet)."""
        self._prefix = f"f{frame}_" if prefix is None else prefix
        settings = self.settings
        det, features = self._detect(pixel_values)
        # step 2: propagate every state
        prev_ids = list(self.obj_ids)
        masks, scores = [], []
        for state in self.states:
            m, s = self.core.track(state, frame, features, record=lambda n, v: self._record("trk_" + n, v))
            masks.append(m)
            scores.append(s)
        if masks:
            raw = torch.cat(masks)
            trk_scores = torch.cat(scores)[:, 0]
            trk_masks = fill_small_regions(raw, settings.fill_hole_area)[:, 0]
            self._record("trk_low_res_masks_raw", raw[:, 0])
        else:
            trk_scores = torch.zeros(0)
            trk_masks = torch.zeros(0, *self.core.low_res)
        self._record("trk_obj_ids", torch.tensor(prev_ids, dtype=torch.long))
        self._record("trk_low_res_masks", trk_masks)
        self._record("trk_object_score_logits", trk_scores)
        # step 3: plan
        new_idx, unmatched, det_to_trk, high_conf, empty = self._associate(det, trk_masks, prev_ids)
        if len(prev_ids) + len(new_idx) > settings.max_num_objects:
            keep = max(settings.max_num_objects - len(prev_ids), 0)
            order = np.argsort(det["scores"].numpy()[new_idx])[::-1]
            new_idx = new_idx[order[:keep]] if keep < len(new_idx) else new_idx
        new_ids = [self.max_obj_id + 1 + k for k in range(len(new_idx))]
        removed_now = self._hotstart(frame, det_to_trk, new_ids, empty, unmatched)
        if (settings.recondition_every_nth_frame > 0 and frame % settings.recondition_every_nth_frame == 0
                and high_conf):  # fmt: skip
            self._recondition(frame, det, high_conf, trk_scores, prev_ids, features)
        if prev_ids:
            self._suppress_recently_occluded(frame, trk_masks, prev_ids, removed_now)
            self._record("mem_in_masks", trk_masks)
            self._update_memories(frame, trk_masks, features)
        self.obj_ids = [i for i in prev_ids + new_ids if i not in removed_now]
        for i, d in zip(new_ids, new_idx, strict=True):
            self.obj_score[i] = float(det["scores"][d])
            self.tracker_scores[frame][i] = float(det["scores"][d])
        if new_ids:
            self.max_obj_id = max(self.max_obj_id, max(new_ids))
        for i in removed_now:
            self.obj_score[i] = REMOVED_SCORE
            self.tracker_scores[frame][i] = REMOVED_SCORE
            self.last_occluded.pop(i, None)
        # step 4: execute
        if new_ids:
            self._add_objects(
                frame, new_ids, det["masks"][torch.as_tensor(new_idx, dtype=torch.long)], features
            )
        for i in sorted(removed_now):
            self._remove_object(i)
        # step 5: outputs
        logits = {i: trk_masks[k : k + 1] for k, i in enumerate(prev_ids)}
        if new_ids:
            filled = fill_small_regions(det["masks"][torch.as_tensor(new_idx, dtype=torch.long)][:, None],
                                        settings.fill_hole_area)  # fmt: skip
            logits.update({i: filled[k] for k, i in enumerate(new_ids)})
        self.tracker_scores[frame].update(dict(zip(prev_ids, trk_scores.sigmoid().tolist(), strict=True)))
        self._record_memories(frame)
        self._prune(frame)
        record = _FrameRecord(frame=frame, logits=logits, scores=dict(self.obj_score),
                              tracker_scores=dict(self.tracker_scores[frame]),
                              suppressed=set(self.suppressed[frame]))  # fmt: skip
        self._flush_trace()
        return record

    def _detect(self, pixel_values: torch.Tensor) -> tuple[dict[str, torch.Tensor], FrameFeatures]:
        model, settings = self.model, self.settings
        pixel_values = pixel_values.float()
        vision = model.get_image_features(pixel_values, return_dict=True)
        out = model.detector(None, self.text.last_hidden_state, self.text.attention_mask, vision)
        logits = presence_weighted_logits(out.pred_logits[0].squeeze(-1), out.presence_logits[0])
        masks = out.pred_masks[0]
        self._record("det_pred_logits", logits)
        self._record("det_pred_boxes_xyxy", out.pred_boxes_xyxy[0])
        self._record("det_presence_logit", out.presence_logits[0])
        if settings.det_nms_thresh > 0:
            keep = greedy_mask_nms(logits.sigmoid(), masks, settings.score_threshold_detection,
                                   settings.det_nms_thresh)  # fmt: skip
            self._record("det_nms_keep", keep)
            logits = logits - 1e4 * (~keep).float()
        probs = logits.sigmoid()
        chosen = (probs > settings.score_threshold_detection).nonzero().flatten()
        det = {"boxes": out.pred_boxes_xyxy[0][chosen], "masks": masks[chosen], "scores": probs[chosen]}
        self._record("det_out_query_idx", chosen)
        self._record("det_out_scores", det["scores"])
        self._record("det_out_masks", det["masks"])
        self._record("det_out_boxes_xyxy", det["boxes"])
        levels, positions = model.tracker_neck(trunk_map(vision))
        levels = [x.to(torch.bfloat16).float() for x in levels[:3]]  # the original rounds the neck once
        decoder = model.tracker.mask_decoder
        features = FrameFeatures(high_res=(decoder.conv_s0(levels[0]), decoder.conv_s1(levels[1])),
                                 embedding=levels[2], position=positions[2])  # fmt: skip
        for k, level in enumerate((*features.high_res, features.embedding)):
            self._record(f"trk_fpn_{k}", level)
        return det, features

    # ------------------------------------------------------------------------------------------- planning
    def _associate(self, det: dict[str, torch.Tensor], trk_masks: torch.Tensor, trk_ids: list[int]) -> tuple:
        settings = self.settings
        det_masks, det_scores = det["masks"], det["scores"].numpy()
        ids = np.asarray(trk_ids, dtype=np.int64)
        if len(ids) == 0:
            return np.arange(len(det_masks)), np.zeros(0, np.int64), {}, {}, np.zeros(0, np.int64)
        if len(det_masks) == 0:
            nonempty = (trk_masks > 0).flatten(1).any(1).numpy()
            return np.zeros(0, np.int64), ids[nonempty], {}, {}, ids[~nonempty]
        if det_masks.shape[-2:] != trk_masks.shape[-2:]:
            if det_masks.shape[-2:].numel() < trk_masks.shape[-2:].numel():
                trk_masks = F.interpolate(trk_masks[:, None], size=det_masks.shape[-2:], mode="bilinear",
                                          align_corners=False)[:, 0]  # fmt: skip
            else:
                det_masks = F.interpolate(det_masks[:, None], size=trk_masks.shape[-2:], mode="bilinear",
                                          align_corners=False)[:, 0]  # fmt: skip
        ious = mask_iou(det_masks > 0, trk_masks > 0).numpy()
        matched = (ious >= settings.trk_assoc_iou_thresh).any(axis=0)
        nonempty = (trk_masks > 0).flatten(1).any(1).numpy()
        unmatched = ids[nonempty & ~matched]
        empty = ids[~nonempty]
        is_new = (det_scores >= settings.new_det_thresh) & ~(ious >= settings.assoc_iou_thresh).any(axis=1)
        new_idx = np.nonzero(is_new)[0]
        best_trk = ious.argmax(axis=1)
        confident = (
            (det_scores >= settings.high_conf_thresh)
            & ~is_new
            & (ious.max(axis=1) >= settings.high_iou_thresh)
        )
        det_to_trk, high_conf = {}, {}
        for d in range(len(det_masks)):
            det_to_trk[d] = ids[ious[d] >= settings.assoc_iou_thresh]
            if confident[d]:
                high_conf[int(ids[best_trk[d]])] = d
        return new_idx, unmatched, det_to_trk, high_conf, empty

    def _hotstart(self, frame: int, det_to_trk: dict, new_ids: list[int], empty: np.ndarray,
                  unmatched: np.ndarray) -> set[int]:  # fmt: skip
        settings, h = self.settings, self.hotstart
        horizon = frame - settings.hotstart_delay
        removed_now: set[int] = set()
        for i in new_ids:
            h.first_frame.setdefault(i, frame)
            h.keep_alive[i] = settings.init_trk_keep_alive
        matched = set()
        for ids in det_to_trk.values():
            matched.update(int(i) for i in ids)
        for i in matched:
            h.keep_alive[i] = min(settings.max_trk_keep_alive, h.keep_alive[i] + 1)
        for i in (int(i) for i in unmatched):
            h.ever_unmatched.add(i)
            if h.first_frame[i] > horizon:
                h.unmatched[i] = h.unmatched.get(i, 0) + 1
            h.keep_alive[i] = max(settings.min_trk_keep_alive, h.keep_alive[i] - 1)
        if settings.decrease_trk_keep_alive_for_empty_masklets:
            for i in (int(i) for i in empty):
                h.keep_alive[i] = max(settings.min_trk_keep_alive, h.keep_alive[i] - 1)
        for i in sorted(h.ever_unmatched):
            if i in h.removed or i in removed_now:
                continue
            if h.unmatched.get(i, 0) >= settings.hotstart_unmatch_thresh and h.first_frame[i] > horizon:
                removed_now.add(i)
            if (h.keep_alive[i] <= 0 and not settings.suppress_unmatched_only_within_hotstart
                    and i not in h.removed and i not in removed_now):  # fmt: skip
                self.suppressed[frame].add(i)
        for ids in det_to_trk.values():
            if len(ids) < 2:
                continue
            first = min((int(i) for i in ids), key=lambda i: h.first_frame[i])
            for i in (int(i) for i in ids):
                if i != first and h.first_frame[i] > horizon:
                    h.overlaps[(first, i)] = h.overlaps.get((first, i), 0) + 1
        for (_first, i), count in h.overlaps.items():
            if i in h.removed or i in removed_now:
                continue
            if h.first_frame[i] > horizon and count >= settings.hotstart_dup_thresh:
                removed_now.add(i)
        h.removed.update(removed_now)
        return removed_now

    def _suppress_recently_occluded(
        self, frame: int, masks: torch.Tensor, ids: list[int], removed_now: set[int]
    ) -> None:
        """The original's occlusion rule, in place on ``masks`` (which the outputs then read, as in the
        original): of two tracks overlapping with IoU >= threshold, the more recently occluded one is switched
        off; the last-occlusion frame of every track is updated."""
        threshold = self.settings.suppress_overlapping_based_on_recent_occlusion_threshold
        if threshold <= 0:
            return
        binary = masks > 0
        last = torch.tensor([self.last_occluded.get(i, ALWAYS_OCCLUDED if i in removed_now else NEVER_OCCLUDED)
                             for i in ids], dtype=torch.long)  # fmt: skip
        suppress = torch.zeros(len(ids), dtype=torch.bool)
        if len(ids) > 1:
            pairs = torch.triu(mask_iou(binary, binary) >= threshold, diagonal=1)
            li, lj = last[:, None], last[None, :]
            suppress = (pairs & (li > lj) & (lj > -1)).any(dim=1) | (pairs & (lj > li) & (li > -1)).any(dim=0)
        occluded = ~binary.flatten(1).any(1) | suppress
        last = last.clone()
        last[occluded] = frame
        self.last_occluded = {i: int(v) for i, v in zip(ids, last.tolist(), strict=True)}
        masks[suppress] = self.settings.occlusion_suppressed_logit

    def _update_memories(self, frame: int, masks: torch.Tensor, features: FrameFeatures) -> None:
        """Encode the tracked masks of ``frame`` into every state's entry for it (sigmoid of the masks upsampled
        to 4x, after the area-shrinkage rule across all objects; object score +-10 from the mask area)."""
        size = self.core.mask_size
        full = F.interpolate(masks[:, None], size=size, mode="bilinear", align_corners=False)
        full = suppress_shrunk(full, self.settings.shrink_threshold)
        scores = torch.where((full > 0).flatten(2).any(-1), 10.0, -10.0)
        start = 0
        for state in self.states:
            n = len(state.obj_ids)
            if n == 0:
                continue
            memory = self.core.encode_memory(features, full[start : start + n], scores[start : start + n],
                                             binarize=False)  # fmt: skip
            for entries in (state.cond, state.non_cond):
                if frame in entries:
                    entries[frame].maskmem_features = memory
            start += n

    def _recondition(self, frame: int, det: dict, high_conf: dict[int, int], trk_scores: torch.Tensor,
                     ids: list[int], features: FrameFeatures) -> None:  # fmt: skip
        """Periodic reconditioning: a confidently tracked object matched by a high-confidence detection makes
        ``frame`` a conditioning frame of its state (pointer from the detection mask; the memory is rewritten
        by the memory update that follows)."""
        size = self.core.mask_size
        touched: dict[int, tuple[list[int], list[torch.Tensor]]] = {}
        for obj_id, d in high_conf.items():
            mask = F.interpolate(det["masks"][d : d + 1, None], size=size, mode="bilinear",
                                 align_corners=False)[0, 0] > 0  # fmt: skip
            if float(trk_scores[ids.index(obj_id)]) <= self.settings.high_conf_thresh:
                continue
            for k, state in enumerate(self.states):
                if obj_id in state.obj_ids:
                    touched.setdefault(k, ([], []))
                    touched[k][0].append(obj_id)
                    touched[k][1].append(mask)
        for k, (obj_ids, masks) in touched.items():
            self.core.add_masks(self.states[k], frame, features, obj_ids, torch.stack(masks), self.video_size)

    # ------------------------------------------------------------------------------------------- execution
    def _add_objects(
        self, frame: int, obj_ids: list[int], det_masks: torch.Tensor, features: FrameFeatures
    ) -> None:
        masks = F.interpolate(det_masks[:, None], size=self.core.mask_size, mode="bilinear",
                              align_corners=False)[:, 0] > 0  # fmt: skip
        state = TrackerState(obj_ids=list(obj_ids))
        self.core.add_masks(state, frame, features, obj_ids, masks, self.video_size)
        self.states.append(state)

    def _remove_object(self, obj_id: int) -> None:
        kept = []
        for state in self.states:
            if obj_id in state.obj_ids:
                if len(state.obj_ids) == 1:
                    continue
                self.core.remove_object(state, obj_id)
            kept.append(state)
        self.states = kept

    def _prune(self, frame: int) -> None:
        for state in self.states:
            self.core.prune(state, frame)
        horizon = frame - self.settings.hotstart_delay + 1  # objects first seen at or before it are settled
        h = self.hotstart
        h.unmatched = {i: c for i, c in h.unmatched.items() if h.first_frame[i] > horizon - 1}
        h.overlaps = {p: c for p, c in h.overlaps.items() if h.first_frame[p[1]] > horizon - 1}
        for old in [f for f in self.suppressed if f < frame]:
            del self.suppressed[old]
        for old in [f for f in self.tracker_scores if f < frame]:
            del self.tracker_scores[old]

    def _record_memories(self, frame: int) -> None:
        if self.trace is None:
            return
        for state in self.states:
            entry = state.cond.get(frame, state.non_cond.get(frame))
            if entry is None:
                continue
            self._record("mem_obj_ids", torch.tensor(state.obj_ids, dtype=torch.long))
            self._record("mem_is_cond", torch.full((len(state.obj_ids),), frame in state.cond))
            self._record("mem_maskmem_features", entry.maskmem_features.float())
            self._record("mem_obj_ptr", entry.obj_ptr)
            self._record("mem_object_score_logits", entry.object_score_logits)
            self._record("mem_pred_masks", entry.pred_masks[:, 0])

    # ------------------------------------------------------------------------------------------- outputs
    def finalize(self, record: _FrameRecord, hide: bool = True) -> VideoFrameOutput:
        """The original's output post-processing of a held-back frame: masks at the video size, empty and hidden
        objects (hotstart-removed so far, suppressed on the frame) dropped, boxes, then one object per pixel
        (the highest tracker score wins)."""
        height, width = self.video_size
        ids = sorted(record.logits)
        if not ids:
            return VideoFrameOutput(record.frame, torch.zeros(0, dtype=torch.long), torch.zeros(0),
                                    torch.zeros(0, 4), torch.zeros(0, height, width, dtype=torch.bool),
                                    torch.zeros(0))  # fmt: skip
        logits = torch.cat([record.logits[i] for i in ids])[:, None]
        logits = F.interpolate(logits, size=(height, width), mode="bilinear", align_corners=False)[:, 0]
        masks = logits > 0
        keep = masks.flatten(1).any(1)
        if hide:
            hidden = record.suppressed | self.hotstart.removed
            keep &= torch.tensor([i not in hidden for i in ids])
        index = keep.nonzero().flatten()
        obj_ids = torch.tensor(ids, dtype=torch.long)[index]
        scores = torch.tensor([record.scores[i] for i in ids], dtype=torch.float32)[index]
        tracker = torch.tensor([record.tracker_scores.get(i, 0.0) for i in ids], dtype=torch.float32)[index]
        masks = masks[index]
        boxes = masks_to_boxes_xyxy(masks)
        boxes = torch.stack(
            [boxes[:, 0], boxes[:, 1], boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]], 1
        )
        boxes = boxes / torch.tensor([width, height, width, height], dtype=torch.float32)
        if len(masks) > 1:
            ranked = torch.where(masks, tracker[:, None, None], 0.0)[:, None]
            masks = (pixelwise_non_overlap(ranked)[:, 0] > 0) & masks
        traced = logits[index] if self.trace is not None else None
        return VideoFrameOutput(record.frame, obj_ids, scores, boxes, masks, tracker, traced)


def track_video_like_original(model: Any, input_ids: torch.Tensor, pixel_values: torch.Tensor,
                              settings: Sam3LiteTextVideoSettings | None = None,
                              video_size: tuple[int, int] | None = None,
                              trace: dict[str, torch.Tensor] | None = None,
                              ) -> tuple[VideoFrameOutput, list[VideoFrameOutput]]:  # fmt: skip
    """The original notebook's sequence on ``pixel_values`` [T, 3, S, S]: ``add_prompt`` on frame 0 (its output
    returned first, only empty masks dropped), then the propagation over frames 0..T-1 (frame 0 processed again
    on the same state), outputs held back ``hotstart_delay`` frames and flushed at the last frame."""
    frames = pixel_values.shape[0]
    session = Sam3LiteTextVideoSession(model, input_ids, settings, video_size, num_frames=frames, trace=trace)
    with torch.no_grad():
        first = session.finalize(session.process_frame(0, pixel_values[0:1], prefix="p0_"), hide=False)
        outputs = []
        for t in range(frames):
            session.buffer.append(session.process_frame(t, pixel_values[t : t + 1]))
            outputs += session.flush() if t == frames - 1 else session.ready()
    return first, outputs
