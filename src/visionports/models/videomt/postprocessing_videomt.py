"""Video-level post-processing of VidEoMT outputs, as the original evaluation (one video at a time).

Inputs per video: ``class_logits`` [T, Q, K+1] and ``mask_logits`` [Q, T, h, w] (stride 4 of the padded
frames). Class scores are taken from the mean of the class logits over frames; a track is a query slot.
Masks go back to the original size in three steps: bilinear to the padded input size, crop to the resized
(unpadded) size, bilinear to the original size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def restore_mask_size(
    masks: torch.Tensor,
    padded: tuple[int, int],
    resized: tuple[int, int],
    original: tuple[int, int],
    sigmoid: bool = False,
) -> torch.Tensor:
    """[n, T, h, w] stride-4 logits -> [n, T, H, W] at the original size (probabilities when ``sigmoid``)."""
    masks = F.interpolate(masks, size=padded, mode="bilinear", align_corners=False)
    masks = masks[:, :, : resized[0], : resized[1]]
    if sigmoid:
        masks = masks.sigmoid()
    return F.interpolate(masks, size=original, mode="bilinear", align_corners=False)


def video_class_logits(class_logits: torch.Tensor) -> torch.Tensor:
    """Mean over frames of the per-frame class logits: [T, Q, K+1] -> [Q, K+1]."""
    return class_logits.mean(dim=0)


def video_class_probs(class_logits: torch.Tensor) -> torch.Tensor:
    """Class probabilities of each query over the video (no-object last): [T, Q, K+1] -> [Q, K+1]."""
    return F.softmax(video_class_logits(class_logits), dim=-1)


def instance_segmentation(
    class_logits: torch.Tensor,
    mask_logits: torch.Tensor,
    padded: tuple[int, int],
    resized: tuple[int, int],
    original: tuple[int, int],
    max_instances: int = 10,
) -> dict:
    """Video instances: the ``max_instances`` best (query, class) pairs, masks ``logit > 0`` per frame.

    Returns ``scores`` [N], ``labels`` [N], ``track_ids`` [N] (query slots) and ``masks`` [N, T, H, W] bool,
    sorted by descending score.
    """
    probs = video_class_probs(class_logits)[:, :-1]
    num_classes = probs.shape[-1]
    k = min(max_instances, probs.numel())
    scores, flat = probs.flatten().topk(k, sorted=True)
    labels, queries = flat % num_classes, flat // num_classes
    masks = restore_mask_size(mask_logits[queries], padded, resized, original) > 0.0
    return {"scores": scores, "labels": labels, "track_ids": queries, "masks": masks}


def semantic_segmentation(
    class_logits: torch.Tensor,
    mask_logits: torch.Tensor,
    padded: tuple[int, int],
    resized: tuple[int, int],
    original: tuple[int, int],
) -> torch.Tensor:
    """Per-pixel class map [T, H, W]: argmax over classes of sum_q p(q, c) * sigmoid mask_q."""
    probs = video_class_probs(class_logits)[:, :-1]
    masks = restore_mask_size(mask_logits, padded, resized, original, sigmoid=True)
    return torch.einsum("qc,qthw->cthw", probs, masks).max(0).indices


def panoptic_segmentation(
    class_logits: torch.Tensor,
    mask_logits: torch.Tensor,
    padded: tuple[int, int],
    resized: tuple[int, int],
    original: tuple[int, int],
    num_thing_classes: int,
    object_threshold: float = 0.8,
    overlap_threshold: float = 0.8,
) -> dict:
    """Video panoptic segmentation: ``segmentation`` [T, H, W] int32 (0 = void) and ``segments``
    (id, label, is_thing, track_id); stuff segments of one class are merged."""
    probs = video_class_probs(class_logits)
    scores, labels = probs.max(-1)
    num_classes = probs.shape[-1] - 1
    keep = labels.ne(num_classes) & (scores > object_threshold)
    queries = torch.nonzero(keep).flatten()
    masks = restore_mask_size(mask_logits[keep], padded, resized, original, sigmoid=True)
    segmentation = torch.zeros(masks.shape[1:], dtype=torch.int32)
    segments: list[dict] = []
    if masks.shape[0] == 0:
        return {"segmentation": segmentation, "segments": segments}
    owner = (scores[keep].view(-1, 1, 1, 1) * masks).argmax(0)
    stuff_ids: dict[int, int] = {}
    next_id = 0
    for k in range(masks.shape[0]):
        label = int(labels[keep][k])
        is_thing = label < num_thing_classes
        area = int((owner == k).sum())
        original_area = int((masks[k] >= 0.5).sum())
        region = (owner == k) & (masks[k] >= 0.5)
        if (
            area == 0
            or original_area == 0
            or int(region.sum()) == 0
            or area / original_area < overlap_threshold
        ):
            continue
        if not is_thing and label in stuff_ids:
            segmentation[region] = stuff_ids[label]
            continue
        next_id += 1
        if not is_thing:
            stuff_ids[label] = next_id
        segmentation[region] = next_id
        segments.append({"id": next_id, "label": label, "is_thing": is_thing, "track_id": int(queries[k])})
    return {"segmentation": segmentation, "segments": segments}


# ---------------------------------------------------------------- streaming (chunk by chunk)
# The functions above need every frame's mask logits at once. Those below split the same computations into
# a video-level choice made from the class logits of all frames (small) and per-chunk steps on the mask
# logits of a few frames ([Q, t, h, w]); bilinear resizing, sigmoid, the semantic einsum and the panoptic
# owner map are per frame, so the chunks' results are the slices of the whole-video results.


def instance_choice(class_logits: torch.Tensor, max_instances: int = 10) -> tuple[torch.Tensor, ...]:
    """``instance_segmentation``'s video-level choice: (scores, labels, track_ids) of the best pairs."""
    probs = video_class_probs(class_logits)[:, :-1]
    num_classes = probs.shape[-1]
    scores, flat = probs.flatten().topk(min(max_instances, probs.numel()), sorted=True)
    return scores, flat % num_classes, flat // num_classes


def instance_chunk_masks(
    mask_logits: torch.Tensor,
    queries: torch.Tensor,
    padded: tuple[int, int],
    resized: tuple[int, int],
    original: tuple[int, int],
) -> torch.Tensor:
    """The chosen queries' masks [N, t, H, W] bool for a chunk's ``mask_logits`` [Q, t, h, w]."""
    return restore_mask_size(mask_logits[queries], padded, resized, original) > 0.0


def semantic_chunk_map(
    class_probs: torch.Tensor,
    mask_logits: torch.Tensor,
    padded: tuple[int, int],
    resized: tuple[int, int],
    original: tuple[int, int],
) -> torch.Tensor:
    """A chunk's class map [t, H, W] given the video's ``class_probs`` [Q, K] (no-object dropped)."""
    masks = restore_mask_size(mask_logits, padded, resized, original, sigmoid=True)
    return torch.einsum("qc,qthw->cthw", class_probs, masks).max(0).indices


def panoptic_choice(class_logits: torch.Tensor, object_threshold: float = 0.8) -> dict:
    """``panoptic_segmentation``'s video-level choice: ``keep`` [Q] bool, ``queries``, and the kept
    queries' ``scores`` and ``labels``."""
    scores, labels = video_class_probs(class_logits).max(-1)
    keep = labels.ne(class_logits.shape[-1] - 1) & (scores > object_threshold)
    return {
        "keep": keep,
        "queries": torch.nonzero(keep).flatten(),
        "scores": scores[keep],
        "labels": labels[keep],
    }


def panoptic_chunk_regions(
    choice: dict,
    mask_logits: torch.Tensor,
    padded: tuple[int, int],
    resized: tuple[int, int],
    original: tuple[int, int],
) -> tuple[torch.Tensor, torch.Tensor]:
    """A chunk's (owner [t, H, W], kept masks [N, t, H, W] probabilities); N may be 0."""
    masks = restore_mask_size(mask_logits[choice["keep"]], padded, resized, original, sigmoid=True)
    if masks.shape[0] == 0:
        return torch.zeros(masks.shape[1:], dtype=torch.int64), masks
    return (choice["scores"].view(-1, 1, 1, 1) * masks).argmax(0), masks


def panoptic_chunk_counts(owner: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Per kept query, this chunk's (owned area, area >= 0.5, owned and >= 0.5) pixel counts [N, 3]."""
    counts = [
        (int((owner == k).sum()), int((masks[k] >= 0.5).sum()), int(((owner == k) & (masks[k] >= 0.5)).sum()))
        for k in range(masks.shape[0])
    ]
    return torch.tensor(counts, dtype=torch.int64).reshape(-1, 3)


def panoptic_ids(
    choice: dict, counts: torch.Tensor, num_thing_classes: int, overlap_threshold: float = 0.8
) -> tuple[torch.Tensor, list[dict]]:
    """From the whole video's summed ``counts``: each kept query's segment id [N] (0 = dropped; stuff of one
    class shares the first one's id) and the ``segments``, as ``panoptic_segmentation`` decides them."""
    ids = torch.zeros(counts.shape[0], dtype=torch.int32)
    segments: list[dict] = []
    stuff_ids: dict[int, int] = {}
    for k, (area, original_area, region) in enumerate(counts.tolist()):
        label = int(choice["labels"][k])
        is_thing = label < num_thing_classes
        if area == 0 or original_area == 0 or region == 0 or area / original_area < overlap_threshold:
            continue
        if not is_thing and label in stuff_ids:
            ids[k] = stuff_ids[label]
            continue
        ids[k] = len(segments) + 1
        if not is_thing:
            stuff_ids[label] = int(ids[k])
        segments.append({"id": int(ids[k]), "label": label, "is_thing": is_thing,
                         "track_id": int(choice["queries"][k])})  # fmt: skip
    return ids, segments


def panoptic_chunk_map(owner: torch.Tensor, masks: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """A chunk's ``segmentation`` [t, H, W] int32 (0 = void) from its regions and ``panoptic_ids``."""
    segmentation = torch.zeros(masks.shape[1:], dtype=torch.int32)
    for k in range(masks.shape[0]):
        if ids[k]:
            segmentation[(owner == k) & (masks[k] >= 0.5)] = ids[k]
    return segmentation
