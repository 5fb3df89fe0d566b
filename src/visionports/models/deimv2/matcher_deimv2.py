"""One-to-one (Hungarian) matching of DEIMv2 predictions to ground-truth boxes."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ...utils.assignment import linear_sum_assignment
from ...utils.boxes import center_to_corners, pairwise_generalized_iou, pairwise_iou

Matching = list[tuple[torch.Tensor, torch.Tensor]]
Targets = list[dict[str, torch.Tensor]]  # per image: "labels" [n_i] and "boxes" [n_i, 4] (cx, cy, w, h)


class Deimv2HungarianMatcher:
    """Matches queries to targets by minimum cost.

    Before ``change_epoch``: ``class_cost * focal-style class cost + bbox_cost * L1 + giou_cost * (-GIoU)``;
    from ``change_epoch`` on (when ``change`` is set): ``-(score * IoU ** iou_order_alpha)``.
    """

    def __init__(
        self,
        class_cost: float = 2.0,
        bbox_cost: float = 5.0,
        giou_cost: float = 2.0,
        alpha: float = 0.25,
        gamma: float = 2.0,
        change: bool = True,
        iou_order_alpha: float = 4.0,
        change_epoch: int = 45,
    ):
        if class_cost == 0 and bbox_cost == 0 and giou_cost == 0:
            raise ValueError("the matcher needs at least one non-zero cost")
        self.class_cost, self.bbox_cost, self.giou_cost = class_cost, bbox_cost, giou_cost
        self.alpha, self.gamma = alpha, gamma
        self.change, self.iou_order_alpha, self.change_epoch = change, iou_order_alpha, change_epoch

    @torch.no_grad()
    def cost_matrix(
        self, logits: torch.Tensor, boxes: torch.Tensor, targets: Targets, epoch: int = 0
    ) -> torch.Tensor:
        """Cost of every (query, target) pair of the batch, ``[B, Q, sum(n_i)]`` on the CPU."""
        batch, num_queries = logits.shape[:2]
        prob = F.sigmoid(logits.flatten(0, 1))
        pred_boxes = boxes.flatten(0, 1)
        target_labels = torch.cat([t["labels"] for t in targets])
        target_boxes = torch.cat([t["boxes"] for t in targets])
        if self.change and epoch >= self.change_epoch:
            iou, _ = pairwise_iou(
                center_to_corners(pred_boxes, clamp_size=True),
                center_to_corners(target_boxes, clamp_size=True),
            )
            cost = -(prob[:, target_labels] * torch.pow(iou, self.iou_order_alpha))
        else:
            prob = prob[:, target_labels]
            negative = (1 - self.alpha) * (prob**self.gamma) * (-(1 - prob + 1e-8).log())
            positive = self.alpha * ((1 - prob) ** self.gamma) * (-(prob + 1e-8).log())
            cost_class = positive - negative
            cost_bbox = torch.cdist(pred_boxes, target_boxes, p=1)
            cost_giou = -pairwise_generalized_iou(
                center_to_corners(pred_boxes, clamp_size=True),
                center_to_corners(target_boxes, clamp_size=True),
            )
            cost = self.bbox_cost * cost_bbox + self.class_cost * cost_class + self.giou_cost * cost_giou
        return torch.nan_to_num(cost.view(batch, num_queries, -1).cpu(), nan=1.0)

    @torch.no_grad()
    def __call__(
        self, logits: torch.Tensor, boxes: torch.Tensor, targets: Targets, epoch: int = 0
    ) -> Matching:
        """Per image ``(query_indices, target_indices)`` (int64, on the CPU)."""
        cost = self.cost_matrix(logits, boxes, targets, epoch)
        sizes = [len(t["boxes"]) for t in targets]
        matching = []
        for index, block in enumerate(cost.split(sizes, -1)):
            rows, cols = linear_sum_assignment(block[index])
            matching.append(
                (torch.as_tensor(rows, dtype=torch.int64), torch.as_tensor(cols, dtype=torch.int64))
            )
        return matching


__all__ = ["Deimv2HungarianMatcher", "Matching"]
