"""Single-object masks from points and boxes: the original ``predict_inst`` (SAM 1 task) of the SAM3 image model.

The ViT trunk is shared with the detector; a second FPN neck (the original ``sam2_convs``, transformers'
``Sam3VisionNeck``) feeds the tracker's SAM heads (transformers' ``Sam3TrackerVideoPromptEncoder`` /
``Sam3TrackerVideoMaskDecoder``, held by the tracker module). The prompt sequence is the original's: box corners
(labels 2 and 3) first, then the points, then one padding point; the lowest-resolution level carries the
tracker's "no memory" embedding, and the two finer levels go through the decoder's ``conv_s0`` / ``conv_s1``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from transformers.utils import ModelOutput

from ...utils.masks import region_sizes

BOX_CORNER_LABELS = (2, 3)


@dataclass
class Sam3LiteTextInteractiveOutput(ModelOutput):
    """``pred_masks`` ``[B, objects, masks, h, w]``: low-resolution mask logits (4x the ViT grid); ``iou_scores``
    ``[B, objects, masks]``: the predicted quality of each mask; ``object_score_logits`` ``[B, objects, 1]``."""

    pred_masks: torch.Tensor | None = None
    iou_scores: torch.Tensor | None = None
    object_score_logits: torch.Tensor | None = None


@dataclass
class TrackerImageFeatures(ModelOutput):
    """The SAM heads' view of an image batch: ``image_embeddings`` (the 1x level + "no memory"),
    ``high_resolution_features`` (4x and 2x levels after ``conv_s0`` / ``conv_s1``), and the raw neck levels
    with their sine position encodings (the video tracker's inputs)."""

    image_embeddings: torch.Tensor | None = None
    high_resolution_features: tuple[torch.Tensor, ...] | None = None
    fpn_hidden_states: tuple[torch.Tensor, ...] | None = None
    fpn_position_encoding: tuple[torch.Tensor, ...] | None = None


def trunk_map(vision_outputs: Any) -> torch.Tensor:
    """The ViT trunk's output as a ``[B, C, H, W]`` map (what both necks read)."""
    hidden = vision_outputs.last_hidden_state
    if hidden.ndim == 4:
        return hidden
    side = int(round(hidden.shape[1] ** 0.5))
    return hidden.reshape(hidden.shape[0], side, side, -1).permute(0, 3, 1, 2)


def tracker_image_features(neck: torch.nn.Module, tracker: torch.nn.Module, trunk: torch.nn.Module) -> Any:
    """Run the second neck on a trunk map and prepare its levels for the SAM heads (the 0.5x level is dropped)."""
    levels, positions = neck(trunk)
    levels, positions = tuple(levels[:-1]), tuple(positions[:-1])
    decoder = tracker.mask_decoder
    high = (decoder.conv_s0(levels[0]), decoder.conv_s1(levels[1]))
    embed = levels[-1] + tracker.no_memory_embedding.reshape(1, -1, 1, 1)
    return TrackerImageFeatures(image_embeddings=embed, high_resolution_features=high, fpn_hidden_states=levels,
                                fpn_position_encoding=positions)  # fmt: skip


def sparse_prompt(
    tracker: torch.nn.Module,
    image_size: int,
    points: torch.Tensor | None,
    labels: torch.Tensor | None,
    boxes: torch.Tensor | None,
    batch: int,
) -> torch.Tensor:
    """``[B, objects, tokens, C]`` prompt tokens: box corners, points, one padding point (the original order).

    ``points`` ``[B, objects, P, 2]`` and ``boxes`` ``[B, objects, 4]`` are normalised to the image (x, y).
    """
    coords, kinds = [], []
    if boxes is not None:
        corners = boxes.reshape(*boxes.shape[:2], 2, 2)
        coords.append(corners)
        kinds.append(torch.tensor(BOX_CORNER_LABELS, device=boxes.device).expand(*boxes.shape[:2], 2))
    if points is not None:
        if labels is None:
            labels = torch.ones(points.shape[:3], dtype=torch.long, device=points.device)
        coords.append(points)
        kinds.append(labels.long())
    if not coords:
        hidden = tracker.prompt_encoder.hidden_size
        return tracker.no_memory_embedding.new_zeros(batch, 1, 0, hidden)
    coords = torch.cat([c.to(tracker.no_memory_embedding.dtype) for c in coords], dim=2) * image_size
    return tracker.prompt_encoder._embed_points(coords, torch.cat(kinds, dim=2), pad=True)


def dense_prompt(
    tracker: torch.nn.Module, masks: torch.Tensor | None, batch: int, size: tuple[int, int]
) -> Any:
    """The dense prompt: a previous low-resolution mask ``[B, objects, h, w]`` embedded, or "no mask"."""
    encoder = tracker.prompt_encoder
    if masks is None:
        return encoder.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(batch, -1, *size)
    masks = masks.flatten(0, 1)[:, None].to(encoder.no_mask_embed.weight.dtype)
    return encoder.mask_embed(masks)


def predict_masks(
    tracker: torch.nn.Module,
    features: TrackerImageFeatures,
    image_size: int,
    input_points: torch.Tensor | None = None,
    input_labels: torch.Tensor | None = None,
    input_boxes: torch.Tensor | None = None,
    input_masks: torch.Tensor | None = None,
    multimask_output: bool = True,
) -> Sam3LiteTextInteractiveOutput:
    """The SAM heads on prepared image features, one mask set per object of each image."""
    _check_object_prompts(input_points, input_labels, input_boxes)
    embed = features.image_embeddings
    batch, size = embed.shape[0], tuple(embed.shape[-2:])
    sparse = sparse_prompt(tracker, image_size, input_points, input_labels, input_boxes, batch)
    objects = sparse.shape[1]
    if input_masks is not None and objects != 1:
        raise ValueError(f"input_masks: a previous mask prompts one object per image, got {objects} objects")
    dense = dense_prompt(tracker, input_masks, batch, size)
    positions = tracker.get_image_wide_positional_embeddings().to(embed.dtype)
    masks, scores, objects_logits = [], [], []
    for index in range(batch):  # the decoder repeats one image for its objects
        low_res, iou, _, object_score = tracker.mask_decoder(
            image_embeddings=embed[index : index + 1],
            image_positional_embeddings=positions,
            sparse_prompt_embeddings=sparse[index : index + 1],
            dense_prompt_embeddings=dense[index : index + 1],
            multimask_output=multimask_output,
            high_resolution_features=[h[index : index + 1] for h in features.high_resolution_features],
        )
        masks.append(low_res)
        scores.append(iou)
        objects_logits.append(object_score)
    return Sam3LiteTextInteractiveOutput(
        pred_masks=torch.cat(masks),
        iou_scores=torch.cat(scores),
        object_score_logits=torch.cat(objects_logits),
    )


def _check_object_prompts(points: Any, labels: Any, boxes: Any) -> None:
    """Shapes, finite coordinates and 0/1 labels (the model-level counterpart of the processor's checks)."""
    if points is not None:
        if points.ndim != 4 or points.shape[-1] != 2 or not torch.isfinite(points).all():
            raise ValueError(f"input_points must be finite [B, objects, P, 2], got {list(points.shape)}")
        if labels is not None and (
            labels.shape != points.shape[:3] or not ((labels == 0) | (labels == 1)).all()
        ):
            raise ValueError("input_labels must be [B, objects, P] of 1 (positive) or 0 (negative)")
    if boxes is not None and (boxes.ndim != 3 or boxes.shape[-1] != 4 or not torch.isfinite(boxes).all()):
        raise ValueError(f"input_boxes must be finite [B, objects, 4], got {list(boxes.shape)}")
    if points is not None and boxes is not None and points.shape[:2] != boxes.shape[:2]:
        raise ValueError("input_points and input_boxes must describe the same objects: one box per object")


def fill_holes(logits: torch.Tensor, threshold: float, max_hole_area: float, max_sprinkle_area: float) -> Any:
    """The original ``SAM2Transforms`` clean-up of low-resolution mask logits ``[..., h, w]``: background regions
    (8-connected, ``<= threshold``) of at most ``max_hole_area`` pixels become foreground (``threshold + 10``),
    then foreground specks of at most ``max_sprinkle_area`` background (``threshold - 10``)."""
    given = cleaned = logits
    for area, region, value in ((max_hole_area, given <= threshold, threshold + 10.0),
                                (max_sprinkle_area, given > threshold, threshold - 10.0)):  # fmt: skip
        if area > 0:  # both regions read the input logits
            cleaned = torch.where(region & (region_sizes(region) <= area), value, cleaned)
    return cleaned


def upsample_masks(logits: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Mask logits ``[N, M, h, w]`` resized (bilinear) to an original image's ``height`` x ``width``."""
    return F.interpolate(logits.float(), (height, width), mode="bilinear", align_corners=False)
