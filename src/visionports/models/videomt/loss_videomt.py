"""VidEoMT's training loss: per-frame class cross-entropy and point-sampled mask BCE + dice, with the clip's
slot-to-track assignment, on the final prediction and on each deep-supervision prediction but the last.

``labels`` are one dict per clip: ``class_labels`` ``[N]`` (0..K-1), ``mask_labels`` ``[N, T, H, W]`` at the
padded input size (empty where the track is absent) and optionally ``present`` ``[N, T]`` (default: the mask is
not empty). Tracks absent from every frame of their clip are ignored. The mask terms are normalised by the
number of (track, frame) targets, averaged over the processes of a distributed run.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from ...training.distributed import mean_counts
from ...utils.point_sampling import point_sample, uncertain_points
from .matcher_videomt import Assignment, VideomtClipMatcher

Prediction = tuple[torch.Tensor, torch.Tensor]  # class logits [B, T, Q, K+1], mask logits [B, T, Q, h, w]


def mask_bce(logits: torch.Tensor, targets: torch.Tensor, normaliser: float) -> torch.Tensor:
    """Sum over masks of the mean point-wise sigmoid cross-entropy, divided by ``normaliser``."""
    return F.binary_cross_entropy_with_logits(logits, targets, reduction="none").mean(1).sum() / normaliser


def mask_dice(logits: torch.Tensor, targets: torch.Tensor, normaliser: float) -> torch.Tensor:
    """Sum over masks of the (+1 smoothed) dice loss of the sigmoid, divided by ``normaliser``."""
    probabilities = logits.sigmoid().flatten(1)
    overlap = 2 * (probabilities * targets).sum(-1)
    total = probabilities.sum(-1) + targets.sum(-1)
    return (1 - (overlap + 1) / (total + 1)).sum() / normaliser


class VideomtCriterion:
    """The weighted loss terms (``loss_ce``, ``loss_mask``, ``loss_dice``, then ``..._i`` for deep supervision)."""

    def __init__(self, config: Any):
        self.num_labels = config.num_labels
        self.weights = {"ce": config.class_weight, "mask": config.mask_weight, "dice": config.dice_weight}
        self.no_object_weight = config.no_object_weight
        self.num_points = config.train_num_points
        self.oversample_ratio = config.oversample_ratio
        self.importance_sample_ratio = config.importance_sample_ratio
        self.matcher = VideomtClipMatcher(
            config.class_weight, config.mask_weight, config.dice_weight, config.train_num_points
        )

    def __call__(
        self, prediction: Prediction, auxiliary: tuple[Prediction, ...], labels: list[dict[str, torch.Tensor]]
    ) -> dict[str, torch.Tensor]:
        targets = [_clip_targets(clip) for clip in labels]
        frames = prediction[0].shape[1]
        count = sum(int(t["kept"].sum()) for t in targets) * frames
        (normaliser,) = mean_counts(float(count), device=prediction[0].device)
        losses = self.terms(prediction, targets, normaliser, "")
        for index, aux in enumerate(auxiliary[:-1]):  # the prediction before the last block has no weight
            losses.update(self.terms(aux, targets, normaliser, f"_{index}"))
        return losses

    def terms(
        self, prediction: Prediction, targets: list[dict[str, torch.Tensor]], normaliser: float, suffix: str
    ) -> dict[str, torch.Tensor]:
        class_logits, mask_logits = prediction
        assignments = [
            self.matcher.match_clip(class_logits[b], mask_logits[b], t["labels"], t["masks"], t["present"])
            for b, t in enumerate(targets)
        ]
        ce = self.class_loss(class_logits, targets, assignments)
        bce, dice = self.mask_losses(mask_logits, targets, assignments, normaliser)
        return {
            f"loss_ce{suffix}": ce * self.weights["ce"],
            f"loss_mask{suffix}": bce * self.weights["mask"],
            f"loss_dice{suffix}": dice * self.weights["dice"],
        }

    def class_loss(
        self,
        class_logits: torch.Tensor,
        targets: list[dict[str, torch.Tensor]],
        assignments: list[Assignment],
    ) -> torch.Tensor:
        """Cross-entropy of every slot in every frame (unmatched → no object, weighted ``no_object_weight``),
        in float32 as the original."""
        logits = class_logits.flatten(0, 1).float()  # [B*T, Q, K+1]
        classes = torch.full(logits.shape[:2], self.num_labels, dtype=torch.int64, device=logits.device)
        frames = class_logits.shape[1]
        for b, ((queries, tracks), target) in enumerate(zip(assignments, targets, strict=True)):
            queries = queries.to(logits.device)
            classes[b * frames : (b + 1) * frames, queries] = target["labels"][tracks.to(logits.device)]
        weight = torch.ones(self.num_labels + 1, device=logits.device)
        weight[-1] = self.no_object_weight
        return F.cross_entropy(logits.transpose(1, 2), classes, weight)

    def mask_losses(
        self, mask_logits: torch.Tensor, targets: list[dict[str, torch.Tensor]], assignments: list[Assignment],
        normaliser: float,
    ) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
        """BCE and dice of the matched slots' masks in every frame, on points drawn where the prediction is
        least certain (``importance_sample_ratio``) and uniformly (the rest)."""
        predicted, wanted = [], []
        for b, ((queries, tracks), target) in enumerate(zip(assignments, targets, strict=True)):
            for frame in range(mask_logits.shape[1]):
                predicted.append(mask_logits[b, frame, queries.to(mask_logits.device)])
                wanted.append(target["masks"][tracks.to(mask_logits.device), frame])
        source = torch.cat(predicted)[:, None]
        target_masks = torch.cat(wanted)[:, None].to(source)
        with torch.no_grad():
            points = uncertain_points(
                source.float(), self.num_points, self.oversample_ratio, self.importance_sample_ratio
            )
            point_labels = point_sample(target_masks, points.to(target_masks)).squeeze(1)
        point_logits = point_sample(source, points.to(source)).squeeze(1)
        return mask_bce(point_logits, point_labels, normaliser), mask_dice(
            point_logits, point_labels, normaliser
        )


def check_labels(labels: Any, pixel_values: torch.Tensor, num_labels: int) -> None:
    """Refuse ``labels`` that do not describe the clips of ``pixel_values`` ``[B, T, 3, H, W]``."""
    batch, frames, _, height, width = pixel_values.shape
    if not isinstance(labels, list | tuple) or len(labels) != batch:
        raise ValueError(
            f"labels must be a list of one dict per video ({batch}), got {type(labels).__name__}"
        )
    for index, clip in enumerate(labels):
        if not isinstance(clip, dict) or not {"class_labels", "mask_labels"} <= set(clip):
            raise ValueError(f"labels[{index}] must be a dict with 'class_labels' and 'mask_labels'")
        classes, masks = clip["class_labels"], clip["mask_labels"]
        count = len(classes)
        if tuple(masks.shape) != (count, frames, height, width):
            raise ValueError(
                f"labels[{index}]['mask_labels'] must have shape {[count, frames, height, width]} "
                f"([tracks, frames, height, width] of the input), got {list(masks.shape)}"
            )
        if count and (classes.is_floating_point() or classes.min() < 0 or classes.max() >= num_labels):
            raise ValueError(
                f"labels[{index}]['class_labels'] must be class indices in [0, {num_labels - 1}]"
            )
        present = clip.get("present")
        if present is not None and tuple(present.shape) != (count, frames):
            raise ValueError(f"labels[{index}]['present'] must have shape {[count, frames]}")


def _clip_targets(clip: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    masks = clip["mask_labels"]
    present = clip.get("present")
    if present is None:
        present = masks.flatten(2).any(-1)
    present = present.to(torch.bool)
    return {"labels": clip["class_labels"].long(), "masks": masks, "present": present, "kept": present.any(1)}


__all__ = ["VideomtCriterion", "check_labels", "mask_bce", "mask_dice"]
