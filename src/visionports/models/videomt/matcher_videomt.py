"""Clip-consistent Hungarian matching of VidEoMT query slots to ground-truth tracks.

A track is matched once, in the first frame of the clip where it is present, against that frame's predictions;
frames are visited in order and a slot taken by an earlier frame costs ``1e6``. The assignment then holds for
every frame of the clip, which is how a slot learns to follow its object.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ...utils.assignment import linear_sum_assignment
from ...utils.point_sampling import point_sample

TAKEN_COST = 1e6
Assignment = tuple[torch.Tensor, torch.Tensor]  # (query slots, track indices), int64, matched order


def pairwise_mask_bce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean sigmoid cross-entropy of every prediction ``[Q, P]`` against every target ``[N, P]``: ``[Q, N]``."""
    positive = F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits), reduction="none")
    negative = F.binary_cross_entropy_with_logits(logits, torch.zeros_like(logits), reduction="none")
    cost = torch.einsum("qp,np->qn", positive, targets) + torch.einsum("qp,np->qn", negative, 1 - targets)
    return cost / logits.shape[1]


def pairwise_dice(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Dice loss (+1 smoothed) of every sigmoid prediction ``[Q, P]`` against every target ``[N, P]``."""
    probabilities = logits.sigmoid()
    overlap = 2 * torch.einsum("qp,np->qn", probabilities, targets)
    total = probabilities.sum(-1)[:, None] + targets.sum(-1)[None, :]
    return 1 - (overlap + 1) / (total + 1)


class VideomtClipMatcher:
    """Matches each clip's tracks to query slots with ``class_cost · (−p) + mask_cost · BCE + dice_cost · dice``,
    BCE and dice on ``num_points`` uniform points shared by all masks of the frame."""

    def __init__(self, class_cost: float, mask_cost: float, dice_cost: float, num_points: int):
        self.class_cost, self.mask_cost, self.dice_cost = class_cost, mask_cost, dice_cost
        self.num_points = num_points

    def frame_cost(
        self, class_logits: torch.Tensor, mask_logits: torch.Tensor, labels: torch.Tensor, masks: torch.Tensor
    ) -> torch.Tensor:
        """``[Q, n]`` cost of one frame's predictions (``[Q, K+1]``, ``[Q, h, w]``) against ``n`` tracks."""
        cost_class = -class_logits.softmax(-1)[:, labels]
        points = torch.rand(1, self.num_points, 2, device=mask_logits.device)
        target = point_sample(
            masks[:, None].to(mask_logits), points.expand(len(masks), -1, -1).to(mask_logits)
        )
        predicted = point_sample(
            mask_logits[:, None], points.expand(len(mask_logits), -1, -1).to(mask_logits)
        )
        predicted, target = predicted.flatten(1).float(), target.flatten(1).float()
        cost_mask, cost_dice = pairwise_mask_bce(predicted, target), pairwise_dice(predicted, target)
        return self.mask_cost * cost_mask + self.class_cost * cost_class + self.dice_cost * cost_dice

    @torch.no_grad()
    def match_clip(
        self, class_logits: torch.Tensor, mask_logits: torch.Tensor, labels: torch.Tensor,
        masks: torch.Tensor, present: torch.Tensor,
    ) -> Assignment:  # fmt: skip
        """The clip's assignment, from ``[T, Q, K+1]`` / ``[T, Q, h, w]`` predictions, ``labels`` ``[N]``,
        ``masks`` ``[N, T, H, W]`` and ``present`` ``[N, T]`` (tracks absent from every frame are never matched)."""
        first = torch.where(present.any(1), present.float().argmax(1), -1)
        taken: list[int] = []
        queries: list[int] = []
        tracks: list[int] = []
        for frame in sorted(set(first[first >= 0].tolist())):
            new = torch.nonzero(first == frame).flatten()
            cost = self.frame_cost(class_logits[frame], mask_logits[frame], labels[new], masks[new, frame])
            cost = cost.reshape(len(cost), -1).cpu()
            if taken:
                cost[taken, :] = TAKEN_COST
            rows, cols = linear_sum_assignment(cost)
            taken += rows.tolist()
            queries += rows.tolist()
            tracks += new[torch.as_tensor(cols, dtype=torch.int64)].tolist()
        return torch.tensor(queries, dtype=torch.int64), torch.tensor(tracks, dtype=torch.int64)


__all__ = ["Assignment", "VideomtClipMatcher", "pairwise_dice", "pairwise_mask_bce"]
