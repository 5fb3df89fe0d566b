"""DEIMv2 training criterion: matchability-aware loss (MAL), box L1 + GIoU, and the fine-grained
localisation (FGL) and decoupled distillation (DDF) losses of the edge distributions, summed over the final
decoder layer, the auxiliary layers, the first-layer head, the encoder proposals and the denoising groups.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

from ...training.distributed import mean_counts
from ...utils.boxes import center_to_corners, pairwise_generalized_iou, pairwise_iou
from .configuration_deimv2 import Deimv2Config
from .decoder_deimv2 import Deimv2Predictions, Deimv2TrainingOutputs, weighting_function
from .matcher_deimv2 import Deimv2HungarianMatcher, Matching

Targets = list[dict[str, torch.Tensor]]


def prepare_targets(
    labels: Sequence[dict], batch_size: int, num_labels: int, device: torch.device, dtype: torch.dtype
) -> Targets:
    """Check ``labels`` (``[{"class_labels", "boxes"}, ...]``, boxes normalised cx, cy, w, h) and move them.

    ``"labels"`` is accepted for ``"class_labels"``. Raises ``ValueError``/``TypeError`` naming the entry.
    """
    if isinstance(labels, dict) or not isinstance(labels, Sequence):
        raise TypeError(f"labels must be a list of dicts (one per image), got {type(labels).__name__}")
    if len(labels) != batch_size:
        raise ValueError(
            f"labels must hold one dict per image: got {len(labels)} for a batch of {batch_size}"
        )
    targets = []
    for index, entry in enumerate(labels):
        name = f"labels[{index}]"
        if not isinstance(entry, dict):
            raise TypeError(
                f"{name} must be a dict with 'class_labels' and 'boxes', got {type(entry).__name__}"
            )
        classes = entry.get("class_labels", entry.get("labels"))
        boxes = entry.get("boxes")
        if classes is None or boxes is None:
            raise ValueError(f"{name} must have 'class_labels' and 'boxes', got keys {sorted(entry)}")
        classes, boxes = torch.as_tensor(classes), torch.as_tensor(boxes)
        if classes.ndim != 1 or classes.dtype.is_floating_point or classes.dtype == torch.bool:
            raise ValueError(
                f"{name}['class_labels'] must be a 1-D integer tensor, got {classes.dtype} {list(classes.shape)}"
            )
        if boxes.ndim != 2 or boxes.shape[1] != 4 or boxes.shape[0] != classes.shape[0]:
            raise ValueError(
                f"{name}['boxes'] must have shape [{classes.shape[0]}, 4] (normalised cx, cy, w, h), "
                f"got {list(boxes.shape)}"
            )
        if len(classes) and (int(classes.min()) < 0 or int(classes.max()) >= num_labels):
            raise ValueError(
                f"{name}['class_labels'] must lie in [0, {num_labels - 1}] (the model has {num_labels} labels), "
                f"got values from {int(classes.min())} to {int(classes.max())}"
            )
        boxes = boxes.to(dtype)
        if not bool(torch.isfinite(boxes).all()):
            raise ValueError(f"{name}['boxes'] holds NaN or infinite values")
        if len(boxes) and (bool((boxes < 0).any()) or bool((boxes > 1).any())):
            raise ValueError(
                f"{name}['boxes'] must be normalised to [0, 1] (cx, cy, w, h divided by the image size); "
                f"got values from {float(boxes.min()):.4g} to {float(boxes.max()):.4g}"
            )
        targets.append({"labels": classes.to(device=device, dtype=torch.int64), "boxes": boxes.to(device)})
    return targets


def fdr_targets(
    reference: torch.Tensor,
    target_corners: torch.Tensor,
    max_num_bins: int,
    reg_scale: torch.Tensor,
    up: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Edge distances of target boxes from reference boxes as (left bin, right weight, left weight) per edge."""
    eps = 0.1
    reg_scale = abs(reg_scale)
    cx, cy, w, h = reference.unbind(-1)
    distances = torch.stack(
        [
            (cx - target_corners[:, 0]) / (w / reg_scale + 1e-16) - 0.5 * reg_scale,
            (cy - target_corners[:, 1]) / (h / reg_scale + 1e-16) - 0.5 * reg_scale,
            (target_corners[:, 2] - cx) / (w / reg_scale + 1e-16) - 0.5 * reg_scale,
            (target_corners[:, 3] - cy) / (h / reg_scale + 1e-16) - 0.5 * reg_scale,
        ],
        -1,
    ).reshape(-1)
    values = weighting_function(max_num_bins, up, reg_scale)
    bins = ((values.unsqueeze(0) - distances.unsqueeze(1)) <= 0).sum(dim=1) - 1
    bins = bins.to(distances.dtype)  # the original's .float() fails for float64 models
    weight_right = torch.zeros_like(bins)
    weight_left = torch.zeros_like(bins)
    inside = (bins >= 0) & (bins < max_num_bins)
    left_index = bins[inside].long()
    left_gap = torch.abs(distances[inside] - values[left_index])
    right_gap = torch.abs(values[left_index + 1] - distances[inside])
    weight_right[inside] = left_gap / (left_gap + right_gap)
    weight_left[inside] = 1.0 - weight_right[inside]
    below = bins < 0
    weight_right[below], weight_left[below], bins[below] = 0.0, 1.0, 0.0
    above = bins >= max_num_bins
    weight_right[above], weight_left[above], bins[above] = 1.0, 0.0, max_num_bins - 0.1
    return bins.clamp(min=0, max=max_num_bins - eps).detach(), weight_right.detach(), weight_left.detach()


def union_matching(matching: Matching, others: Sequence[Matching]) -> Matching:
    """One target per query across several matchings: the pair found most often wins (first seen on ties)."""
    for other in others:
        matching = [
            (torch.cat([a[0], b[0]]), torch.cat([a[1], b[1]])) for a, b in zip(matching, other, strict=True)
        ]
    result = []
    for rows, cols in matching:
        pairs = torch.stack([rows, cols], 1)
        unique, counts = torch.unique(pairs, return_counts=True, dim=0)
        chosen: dict[int, int] = {}
        for row, col in unique[torch.argsort(counts, descending=True)].tolist():
            chosen.setdefault(row, col)
        result.append(
            (
                torch.tensor(list(chosen), dtype=torch.int64),
                torch.tensor(list(chosen.values()), dtype=torch.int64),
            )
        )
    return result


def _flat_index(matching: Matching) -> tuple[torch.Tensor, torch.Tensor]:
    batch = torch.cat([torch.full_like(rows, index) for index, (rows, _) in enumerate(matching)])
    return batch, torch.cat([rows for rows, _ in matching])


def _matched_target_boxes(targets: Targets, matching: Matching) -> torch.Tensor:
    return torch.cat([t["boxes"][cols] for t, (_, cols) in zip(targets, matching, strict=True)], dim=0)


def _matched_ious(pred_boxes: torch.Tensor, target_boxes: torch.Tensor) -> torch.Tensor:
    iou, _ = pairwise_iou(
        center_to_corners(pred_boxes, clamp_size=True), center_to_corners(target_boxes, clamp_size=True)
    )
    return torch.diag(iou).detach()


@dataclass
class _CallState:
    """Values the original criterion computes once per call and reuses across outputs."""

    fgl: tuple[torch.Tensor, ...] | None = None
    fgl_denoising: tuple[torch.Tensor, ...] | None = None
    num_pos: torch.Tensor | None = None
    num_neg: torch.Tensor | None = None


@dataclass
class _Head:
    """One prediction head the criterion scores: its predictions, its own matching and its terms' suffix.

    ``union_losses`` are the losses that use the union matching (when enabled).
    """

    pred: Deimv2Predictions
    matching: Matching
    suffix: str
    union_losses: tuple[str, ...] = ("boxes", "local")
    is_denoising: bool = False


@dataclass
class _CallContext:
    """What every head's terms share within one call: targets, FDR parameters, union matching, counts."""

    targets: Targets
    up: torch.Tensor
    reg_scale: torch.Tensor
    union: Matching | None
    counts: tuple[float, float]  # (number of target boxes, number of union-matched queries)
    state: _CallState


class Deimv2Criterion:
    """The original recipe's criterion, configured from a :class:`Deimv2Config`.

    ``__call__(outputs, targets, epoch)`` returns the weighted loss terms by name (``loss_mal``,
    ``loss_bbox_aux_0``, ``loss_giou_pre``, ``loss_mal_enc_0``, ``loss_fgl_dn_1``, ``loss_bbox_dn_pre``, ...);
    their sum is the training loss.
    """

    def __init__(self, config: Deimv2Config):
        self.num_classes = config.num_labels
        self.loss_types = list(config.loss_types)
        self.weights = {
            "loss_mal": config.weight_loss_mal,
            "loss_vfl": config.weight_loss_vfl,
            "loss_focal": config.weight_loss_focal,
            "loss_bbox": config.weight_loss_bbox,
            "loss_giou": config.weight_loss_giou,
            "loss_fgl": config.weight_loss_fgl,
            "loss_ddf": config.weight_loss_ddf,
        }
        self.gamma, self.alpha, self.mal_alpha = config.loss_gamma, config.loss_alpha, config.mal_alpha
        self.max_num_bins = config.max_num_bins
        self.temperature = config.ddf_temperature
        self.use_union_set = config.use_union_set_matching
        self.matcher = Deimv2HungarianMatcher(
            class_cost=config.matcher_class_cost,
            bbox_cost=config.matcher_bbox_cost,
            giou_cost=config.matcher_giou_cost,
            alpha=config.matcher_alpha,
            gamma=config.matcher_gamma,
            change=config.matcher_change,
            iou_order_alpha=config.matcher_iou_order_alpha,
            change_epoch=config.matcher_change_epoch,
        )

    # ----------------------------------------------------------------------------------------- class losses
    def _one_hot_targets(self, logits: torch.Tensor, targets: Targets, matching: Matching) -> tuple:
        index = _flat_index(matching)
        classes = torch.full(logits.shape[:2], self.num_classes, dtype=torch.int64, device=logits.device)
        classes[index] = torch.cat(
            [t["labels"][cols] for t, (_, cols) in zip(targets, matching, strict=True)]
        )
        return index, F.one_hot(classes, num_classes=self.num_classes + 1)[..., :-1]

    def _iou_scores(self, pred: Deimv2Predictions, targets: Targets, matching: Matching) -> tuple:
        index, one_hot = self._one_hot_targets(pred.logits, targets, matching)
        ious = _matched_ious(pred.boxes[index], _matched_target_boxes(targets, matching))
        score = torch.zeros(pred.logits.shape[:2], dtype=pred.logits.dtype, device=pred.logits.device)
        score[index] = ious.to(score.dtype)
        return one_hot, score.unsqueeze(-1) * one_hot

    def loss_mal(
        self, pred: Deimv2Predictions, targets: Targets, matching: Matching, num_boxes: float
    ) -> dict:
        one_hot, target_score = self._iou_scores(pred, targets, matching)
        pred_score = F.sigmoid(pred.logits).detach()
        target_score = target_score.pow(self.gamma)
        if self.mal_alpha is not None:
            weight = self.mal_alpha * pred_score.pow(self.gamma) * (1 - one_hot) + one_hot
        else:
            weight = pred_score.pow(self.gamma) * (1 - one_hot) + one_hot
        loss = F.binary_cross_entropy_with_logits(pred.logits, target_score, weight=weight, reduction="none")
        return {"loss_mal": loss.mean(1).sum() * pred.logits.shape[1] / num_boxes}

    def loss_vfl(
        self, pred: Deimv2Predictions, targets: Targets, matching: Matching, num_boxes: float
    ) -> dict:
        one_hot, target_score = self._iou_scores(pred, targets, matching)
        pred_score = F.sigmoid(pred.logits).detach()
        weight = self.alpha * pred_score.pow(self.gamma) * (1 - one_hot) + target_score
        loss = F.binary_cross_entropy_with_logits(pred.logits, target_score, weight=weight, reduction="none")
        return {"loss_vfl": loss.mean(1).sum() * pred.logits.shape[1] / num_boxes}

    def loss_focal(
        self, pred: Deimv2Predictions, targets: Targets, matching: Matching, num_boxes: float
    ) -> dict:
        _, one_hot = self._one_hot_targets(pred.logits, targets, matching)
        one_hot = one_hot.to(pred.logits.dtype)
        prob = F.sigmoid(pred.logits)
        ce = F.binary_cross_entropy_with_logits(pred.logits, one_hot, reduction="none")
        p_t = prob * one_hot + (1 - prob) * (1 - one_hot)
        loss = ce * ((1 - p_t) ** self.gamma)
        if self.alpha >= 0:
            loss = (self.alpha * one_hot + (1 - self.alpha) * (1 - one_hot)) * loss
        return {"loss_focal": loss.mean(1).sum() * pred.logits.shape[1] / num_boxes}

    # ------------------------------------------------------------------------------------------ box losses
    def loss_boxes(
        self, pred: Deimv2Predictions, targets: Targets, matching: Matching, num_boxes: float
    ) -> dict:
        index = _flat_index(matching)
        src = pred.boxes[index]
        tgt = _matched_target_boxes(targets, matching)
        giou = torch.diag(
            pairwise_generalized_iou(
                center_to_corners(src, clamp_size=True), center_to_corners(tgt, clamp_size=True)
            )
        )
        return {
            "loss_bbox": F.l1_loss(src, tgt, reduction="none").sum() / num_boxes,
            "loss_giou": (1 - giou).sum() / num_boxes,
        }

    def loss_local(
        self,
        pred: Deimv2Predictions,
        targets: Targets,
        matching: Matching,
        num_boxes: float,
        context: _CallContext,
        is_denoising: bool,
    ) -> dict:
        if pred.corners is None:
            return {}
        bins = self.max_num_bins + 1
        index = _flat_index(matching)
        tgt = _matched_target_boxes(targets, matching)
        corners = pred.corners[index].reshape(-1, bins)
        reference = pred.reference_boxes[index].detach()
        state = context.state
        encoded = state.fgl_denoising if is_denoising else state.fgl
        if encoded is None:  # the original encodes the targets once per call (per kind) and reuses them
            with torch.no_grad():
                encoded = fdr_targets(
                    reference,
                    center_to_corners(tgt, clamp_size=True),
                    self.max_num_bins,
                    context.reg_scale,
                    context.up,
                )
            if is_denoising:
                state.fgl_denoising = encoded
            else:
                state.fgl = encoded
        target_bins, weight_right, weight_left = encoded
        ious = _matched_ious(pred.boxes[index], tgt)
        edge_weight = ious.unsqueeze(-1).repeat(1, 1, 4).reshape(-1).detach()
        left = target_bins.long()
        fgl = F.cross_entropy(corners, left, reduction="none") * weight_left.reshape(-1) + F.cross_entropy(
            corners, left + 1, reduction="none"
        ) * weight_right.reshape(-1)
        losses = {"loss_fgl": (fgl * edge_weight.float()).sum() / num_boxes}

        if pred.teacher_corners is None:
            return losses
        student = pred.corners.reshape(-1, bins)
        teacher = pred.teacher_corners.reshape(-1, bins)
        if torch.equal(student, teacher):
            return losses
        weight = pred.teacher_logits.sigmoid().max(dim=-1)[0]
        matched = torch.zeros_like(weight, dtype=torch.bool)
        matched[index] = True
        matched = matched.unsqueeze(-1).repeat(1, 1, 4).reshape(-1)
        weight[index] = ious.reshape_as(weight[index]).to(weight.dtype)
        weight = weight.unsqueeze(-1).repeat(1, 1, 4).reshape(-1).detach()
        t = self.temperature
        divergence = F.kl_div(
            F.log_softmax(student / t, dim=1), F.softmax(teacher.detach() / t, dim=1), reduction="none"
        ).sum(-1)
        ddf = weight * (t**2) * divergence
        if not is_denoising:
            batch_scale = 8 / pred.boxes.shape[0]  # the original's per-GPU batch normalisation
            state.num_pos = (matched.sum() * batch_scale) ** 0.5
            state.num_neg = ((~matched).sum() * batch_scale) ** 0.5
        positive = ddf[matched].mean() if matched.any() else 0
        negative = ddf[~matched].mean() if (~matched).any() else 0
        losses["loss_ddf"] = (positive * state.num_pos + negative * state.num_neg) / (
            state.num_pos + state.num_neg
        )
        return losses

    # --------------------------------------------------------------------------------------------- driver
    def _terms(self, head: _Head, context: _CallContext) -> dict[str, torch.Tensor]:
        """The weighted loss terms of one head, named with its suffix."""
        terms: dict[str, torch.Tensor] = {}
        for loss in self.loss_types:
            use_union = context.union is not None and self.use_union_set and loss in head.union_losses
            matching = context.union if use_union else head.matching
            num_boxes = context.counts[1] if use_union else context.counts[0]
            if loss == "local":
                values = self.loss_local(
                    head.pred, context.targets, matching, num_boxes, context, head.is_denoising
                )
            else:
                values = getattr(self, f"loss_{loss}")(head.pred, context.targets, matching, num_boxes)
            terms.update({f"{k}{head.suffix}": v * self.weights[k] for k, v in values.items()})
        return terms

    def _matched_heads(self, outputs: Deimv2TrainingOutputs, targets: Targets, epoch: int) -> list[_Head]:
        """The final, auxiliary, first-layer and encoder heads, each matched to ``targets``."""

        def head(pred: Deimv2Predictions, suffix: str, union_losses: tuple[str, ...]) -> _Head:
            return _Head(pred, self.matcher(pred.logits, pred.boxes, targets, epoch), suffix, union_losses)

        layers = ("boxes", "local")
        return [
            head(outputs.final, "", layers),
            *(head(p, f"_aux_{i}", layers) for i, p in enumerate(outputs.auxiliary)),
            head(outputs.first_layer, "_pre", layers),
            *(head(p, f"_enc_{i}", ("boxes",)) for i, p in enumerate(outputs.encoder)),
        ]

    def _denoising_heads(self, outputs: Deimv2TrainingOutputs, targets: Targets) -> list[_Head]:
        """Every layer's denoising head and the first-layer one, matched by construction."""
        matching = self.denoising_matching(
            outputs.denoising_positive_indices, outputs.denoising_num_groups, targets
        )
        return [
            *(_Head(p, matching, f"_dn_{i}", (), True) for i, p in enumerate(outputs.denoising)),
            _Head(outputs.denoising_first_layer, matching, "_dn_pre", (), True),
        ]

    def __call__(
        self, outputs: Deimv2TrainingOutputs, targets: Targets, epoch: int = 0
    ) -> dict[str, torch.Tensor]:
        """The weighted loss terms of ``outputs`` against the checked ``targets`` at ``epoch``."""
        heads = self._matched_heads(outputs, targets, epoch)
        union = union_matching(heads[0].matching, [h.matching for h in heads[1:]])
        # per process: the counts averaged over the processes, clamped at 1, as the original criterion
        num_boxes, num_union = mean_counts(
            sum(len(t["labels"]) for t in targets),
            sum(len(rows) for rows, _ in union),
            device=outputs.final.logits.device,
        )
        context = _CallContext(
            targets, outputs.up, outputs.reg_scale, union, (num_boxes, num_union), _CallState()
        )
        losses: dict[str, torch.Tensor] = {}
        for head in heads:
            losses.update(self._terms(head, context))
        if outputs.denoising is not None:
            counts = (num_boxes * outputs.denoising_num_groups,) * 2
            denoising_context = replace(context, union=None, counts=counts)
            for head in self._denoising_heads(outputs, targets):
                losses.update(self._terms(head, denoising_context))
        return {k: torch.nan_to_num(v, nan=0.0) for k, v in losses.items()}

    @staticmethod
    def denoising_matching(
        positive_indices: Sequence[torch.Tensor], num_groups: int, targets: Targets
    ) -> Matching:
        """Each image's positive denoising queries matched to its targets, group after group."""
        matching = []
        for index, target in enumerate(targets):
            count = len(target["labels"])
            if count:
                cols = torch.arange(count, dtype=torch.int64, device=target["labels"].device).tile(num_groups)
                if len(positive_indices[index]) != len(cols):
                    raise RuntimeError("denoising queries do not match the targets they were built from")
                matching.append((positive_indices[index], cols))
            else:
                empty = torch.zeros(0, dtype=torch.int64, device=target["labels"].device)
                matching.append((empty, empty))
        return matching


__all__ = ["Deimv2Criterion", "fdr_targets", "prepare_targets", "union_matching"]
