"""Contrastive denoising queries for DEIMv2 training.

Every ground-truth box is repeated in groups of a positive copy (small box noise, some labels flipped) and a
negative copy (larger box noise); the decoder must reconstruct the positives and reject the negatives. The
random draws are made in the same order, with the same shapes and dtypes, as the original recipe, so a seeded
run reproduces the original's queries.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ...utils.boxes import center_to_corners, corners_to_center


def inverse_sigmoid(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    x = x.clip(min=0.0, max=1.0)
    return torch.log(x.clip(min=eps) / (1 - x).clip(min=eps))


@dataclass
class DenoisingGroups:
    """Denoising queries prepended to the decoder's queries.

    Attributes:
        content: query content (label embeddings), ``[B, N, d_model]``.
        reference_logits: noisy reference boxes as logits, ``[B, N, 4]``.
        attention_mask: ``[N + Q, N + Q]``, ``True`` where attention is allowed.
        positive_indices: per image, the denoising query of every positive copy (group-major), ``[G * n_i]``.
        num_groups: number of groups ``G``.
        num_queries: ``N`` (denoising queries per image).
    """

    content: torch.Tensor
    reference_logits: torch.Tensor
    attention_mask: torch.Tensor
    positive_indices: tuple[torch.Tensor, ...]
    num_groups: int
    num_queries: int


def make_denoising_groups(
    class_labels: list[torch.Tensor],
    boxes: list[torch.Tensor],
    num_classes: int,
    num_queries: int,
    class_embed: nn.Embedding,
    num_denoising: int = 100,
    label_noise_ratio: float = 0.5,
    box_noise_scale: float = 1.0,
) -> DenoisingGroups | None:
    """Build the denoising queries of a batch (``None`` when disabled or when no image has a box).

    ``boxes`` are normalised ``(cx, cy, w, h)``; noise is drawn in float32 as in the original.
    """
    if num_denoising <= 0:
        return None
    counts = [len(labels) for labels in class_labels]
    max_count = max(counts)
    if max_count == 0:
        return None
    device = class_labels[0].device
    num_groups = max(num_denoising // max_count, 1)
    batch = len(counts)

    query_class = torch.full([batch, max_count], num_classes, dtype=torch.int32, device=device)
    query_box = torch.zeros([batch, max_count, 4], device=device)
    is_real = torch.zeros([batch, max_count], dtype=torch.bool, device=device)
    for index, count in enumerate(counts):
        if count:
            query_class[index, :count] = class_labels[index]
            query_box[index, :count] = boxes[index]
            is_real[index, :count] = True
    query_class = query_class.tile([1, 2 * num_groups])
    query_box = query_box.tile([1, 2 * num_groups, 1])
    is_real = is_real.tile([1, 2 * num_groups])
    negative = torch.zeros([batch, max_count * 2, 1], device=device)
    negative[:, max_count:] = 1
    negative = negative.tile([1, num_groups, 1])
    positive = (1 - negative).squeeze(-1) * is_real
    positive_indices = torch.split(torch.nonzero(positive)[:, 1], [n * num_groups for n in counts])
    total = max_count * 2 * num_groups

    if label_noise_ratio > 0:
        flip = torch.rand_like(query_class, dtype=torch.float) < (label_noise_ratio * 0.5)
        random_class = torch.randint_like(flip, 0, num_classes, dtype=query_class.dtype)
        query_class = torch.where(flip & is_real, random_class, query_class)

    if box_noise_scale > 0:
        corners = center_to_corners(query_box, clamp_size=True)
        span = torch.tile(query_box[..., 2:] * 0.5, [1, 1, 2]) * box_noise_scale
        sign = torch.randint_like(query_box, 0, 2) * 2.0 - 1.0
        magnitude = torch.rand_like(query_box)
        magnitude = (magnitude + 1.0) * negative + magnitude * (1 - negative)
        corners = (corners + sign * magnitude * span).clip(min=0.0, max=1.0)
        query_box = corners_to_center(corners)
        query_box[query_box < 0] *= -1

    blocked = torch.zeros([total + num_queries, total + num_queries], dtype=torch.bool, device=device)
    blocked[total:, :total] = True  # matching queries do not see the denoising ones
    group = max_count * 2
    for index in range(num_groups):  # groups do not see each other
        rows = slice(group * index, group * (index + 1))
        blocked[rows, group * (index + 1) : total] = True
        blocked[rows, : group * index] = True

    return DenoisingGroups(
        content=class_embed(query_class),
        reference_logits=inverse_sigmoid(query_box),
        attention_mask=~blocked,
        positive_indices=tuple(positive_indices),
        num_groups=num_groups,
        num_queries=total,
    )


__all__ = ["DenoisingGroups", "inverse_sigmoid", "make_denoising_groups"]
