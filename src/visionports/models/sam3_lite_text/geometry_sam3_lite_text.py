"""SAM3's geometry encoder with every prompt kind of the original: points and boxes, positive and negative.

transformers' ``Sam3GeometryEncoder`` holds the box path and the prompt transformer; this subclass adds the
original's three point projections (coordinates, features sampled at the point, sine position) and pools box
features with :func:`visionports.utils.roi_align.roi_align` instead of torchvision's. The prompt sequence is
the original's: points, then boxes, then the CLS token, right-padded per query.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import transformers.models.sam3.modeling_sam3 as sam3
from torch import nn
from transformers.masking_utils import create_bidirectional_mask

from ...utils.roi_align import roi_align

PAD_LABEL = -10
"""The label of a padding point or box (transformers' SAM3 processors use the same value)."""


class Sam3LiteTextGeometryEncoder(sam3.Sam3GeometryEncoder):
    """Prompt tokens ``[B, points + boxes + 1, d_model]`` and their mask (True = real) for a batch of queries.

    Points are normalised ``(x, y)`` in ``[0, 1]``, boxes normalised ``(cx, cy, w, h)``; labels 1 (positive),
    0 (negative) or :data:`PAD_LABEL` (padding, when queries hold different counts).
    """

    def __init__(self, config: sam3.Sam3GeometryEncoderConfig):
        super().__init__(config)
        self.points_direct_project = nn.Linear(2, self.hidden_size)
        self.points_pool_project = nn.Linear(self.hidden_size, self.hidden_size)
        self.points_pos_enc_project = nn.Linear(self.hidden_size, self.hidden_size)

    def forward(
        self,
        vision_features: torch.Tensor,
        vision_pos: torch.Tensor,
        points: torch.Tensor | None = None,
        point_labels: torch.Tensor | None = None,
        boxes: torch.Tensor | None = None,
        box_labels: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode the prompts of every query against its image's last FPN level ``[B, C, H, W]`` (and its
        position encoding). Omitted points or boxes count as none."""
        batch = vision_features.shape[0]
        points, point_labels = _prompt(points, point_labels, batch, 2, vision_features)
        boxes, box_labels = _prompt(boxes, box_labels, batch, 4, vision_features)
        tokens, mask = self._embed_points_and_boxes(vision_features, points, point_labels, boxes, box_labels)
        cls = self.cls_embed.weight[None].expand(batch, -1, -1).to(tokens.dtype)
        tokens, mask = sam3.concat_padded_sequences(tokens, mask, cls, mask.new_ones(batch, 1))
        tokens = self.prompt_layer_norm(self.final_proj(tokens))
        attention_mask = None if bool(mask.all()) else mask
        if attention_mask is not None:
            attention_mask = create_bidirectional_mask(
                config=self.config, inputs_embeds=tokens, attention_mask=attention_mask
            )
        feats = vision_features.flatten(2).transpose(1, 2)
        pos = vision_pos.flatten(2).transpose(1, 2)
        for layer in self.layers:
            tokens = layer(
                prompt_feats=tokens, vision_feats=feats, vision_pos_encoding=pos, prompt_mask=attention_mask
            )
        return self.output_layer_norm(tokens), mask

    def _embed_points_and_boxes(
        self,
        vision_features: torch.Tensor,
        points: torch.Tensor,
        point_labels: torch.Tensor,
        boxes: torch.Tensor,
        box_labels: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Point tokens followed by box tokens, right-padded: ``[B, P + N, d]`` and the mask (True = real)."""
        if points.shape[1] or boxes.shape[1]:
            normed = self.vision_layer_norm(vision_features.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        point_tokens = self._embed_points(normed, points) if points.shape[1] else points.new_zeros(
            *points.shape[:2], self.hidden_size)  # fmt: skip
        box_tokens = self._embed_boxes(normed, boxes) if boxes.shape[1] else boxes.new_zeros(
            *boxes.shape[:2], self.hidden_size)  # fmt: skip
        point_tokens = self.label_embed(point_labels.clamp(min=0)) + point_tokens
        box_tokens = self.label_embed(box_labels.clamp(min=0)) + box_tokens
        return sam3.concat_padded_sequences(
            point_tokens, point_labels != PAD_LABEL, box_tokens, box_labels != PAD_LABEL
        )

    def _embed_points(self, features: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
        """Coordinates + features sampled at the point (bilinear, zeros outside) + its sine position."""
        embed = self.points_direct_project(points)
        grid = (points * 2 - 1).unsqueeze(2).to(features.dtype)
        sampled = F.grid_sample(features, grid, align_corners=False).squeeze(-1).transpose(1, 2)
        embed = embed + self.points_pool_project(sampled)
        x, y = points.flatten(0, 1).unbind(-1)
        pos_x, pos_y = self.position_encoding.encode_1d_positions(x, y)
        position = torch.cat([pos_x, pos_y], dim=-1).view(*points.shape[:2], -1)
        return embed + self.points_pos_enc_project(position)

    def _embed_boxes(self, features: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        """Coordinates + ROI-aligned features inside the box + the sine position of its centre and its size."""
        batch, count = boxes.shape[:2]
        height, width = features.shape[-2:]
        embed = self.boxes_direct_project(boxes)
        scale = torch.tensor([width, height, width, height], dtype=boxes.dtype, device=boxes.device)
        corners = sam3.box_cxcywh_to_xyxy(boxes) * scale
        pooled = roi_align(features, list(corners.to(features.dtype).unbind(0)), self.roi_size)
        embed = embed + self.boxes_pool_project(pooled).view(batch, count, self.hidden_size)
        cx, cy, w, h = boxes.flatten(0, 1).unbind(-1)
        position = self._encode_box_coordinates(cx, cy, w, h).view(batch, count, -1)
        return embed + self.boxes_pos_enc_project(position)


def _prompt(
    coords: torch.Tensor | None, labels: torch.Tensor | None, batch: int, width: int, like: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``[B, n, width]`` coordinates and ``[B, n]`` long labels (positive when omitted), one query's broadcast."""
    if coords is None:
        return like.new_zeros(batch, 0, width), torch.zeros(batch, 0, dtype=torch.long, device=like.device)
    coords = coords.to(like.device, like.dtype)
    if labels is None:
        labels = torch.ones(coords.shape[:2], dtype=torch.long, device=like.device)
    labels = labels.to(like.device, torch.long)
    if coords.ndim != 3 or coords.shape[-1] != width or labels.shape != coords.shape[:2]:
        raise ValueError(f"prompts must be [queries, n, {width}] with labels [queries, n], got "
                         f"{list(coords.shape)} and {list(labels.shape)}")  # fmt: skip
    if not torch.isfinite(coords).all():
        raise ValueError("prompt coordinates must be finite")
    if coords.shape[0] not in (1, batch):
        raise ValueError(
            f"prompts: give one set for every query or one per query ({batch}), got {coords.shape[0]}"
        )
    padding = labels == PAD_LABEL
    if not ((labels == 0) | (labels == 1) | padding).all():
        raise ValueError(f"labels must be 1 (positive), 0 (negative) or {PAD_LABEL} (padding)")
    if (padding.long().cummax(dim=1).values != padding.long()).any():
        raise ValueError(f"padding ({PAD_LABEL} labels) must come after every real point or box of a query")
    if coords.shape[0] == 1 and batch > 1:
        coords, labels = coords.expand(batch, -1, -1), labels.expand(batch, -1)
    return coords, labels
