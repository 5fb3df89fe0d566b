"""SAM3 detector for SAM3-LiteText, composed from transformers' generic SAM3 building blocks.

The student text encoder lives in :mod:`.modeling_text_sam3_lite_text`; this module wires its projected features
into transformers' SAM3 vision model, geometry encoder, DETR encoder/decoder, dot-product scoring and mask decoder.
The original ``detector.*`` checkpoint keys are mapped onto them by :mod:`.convert_sam3_lite_text`.

transformers' SAM3 modules are imported as modules: through the lazy ``transformers.models.sam3`` package they
become placeholders when torchvision is missing, although only the box-prompt path (``roi_align``) needs it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import transformers.models.sam3.configuration_sam3 as sam3_config
import transformers.models.sam3.modeling_sam3 as sam3
from torch import nn
from transformers.utils import ModelOutput

from .geometry_sam3_lite_text import Sam3LiteTextGeometryEncoder


def sam3_config_for(
    d_model: int = 256,
    ffn_dim: int = 2048,
    n_heads: int = 8,
    num_queries: int = 200,
    image_size: int = 1008,
    patch_size: int = 14,
    pretrain_img_size: int = 336,
    vit_embed_dim: int = 1024,
    vit_depth: int = 32,
    vit_heads: int = 16,
    vit_window_size: int = 24,
    vit_global_att_blocks: tuple[int, ...] = (7, 15, 23, 31),
    vit_mlp_ratio: float = 4.625,
) -> sam3_config.Sam3Config:
    """A transformers ``Sam3Config`` for the original detector widths (defaults: the released detector)."""
    grid = image_size // patch_size
    vit = sam3_config.Sam3ViTConfig(
        hidden_size=vit_embed_dim,
        intermediate_size=int(vit_embed_dim * vit_mlp_ratio),
        num_hidden_layers=vit_depth,
        num_attention_heads=vit_heads,
        image_size=image_size,
        patch_size=patch_size,
        window_size=vit_window_size,
        global_attn_indexes=list(vit_global_att_blocks),
        pretrain_image_size=pretrain_img_size,
        layer_norm_eps=1e-5,  # the original trunk's LayerNorms (transformers' default is 1e-6)
    )
    vision = sam3_config.Sam3VisionConfig(
        backbone_config=vit,
        fpn_hidden_size=d_model,
        backbone_feature_sizes=[[grid * 4] * 2, [grid * 2] * 2, [grid] * 2],
    )
    common = {"hidden_size": d_model, "num_attention_heads": n_heads}
    return sam3_config.Sam3Config(
        vision_config=vision,
        geometry_encoder_config={**common, "intermediate_size": ffn_dim},
        detr_encoder_config={**common, "intermediate_size": ffn_dim},
        detr_decoder_config={**common, "intermediate_size": ffn_dim, "num_queries": num_queries},
        mask_decoder_config=common,
    )


def pair_indices(
    num_images: int,
    num_texts: int,
    image_ids: torch.Tensor | None = None,
    text_ids: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Which image and which prompt every query reads (the original ``FindStage.img_ids`` / ``text_ids``).

    Without ids: image b with prompt b when the counts agree, otherwise one image with every prompt or one
    prompt on every image. A missing side of a given pair defaults the same way.
    """
    if image_ids is None and text_ids is None:
        if num_images != num_texts and 1 not in (num_images, num_texts):
            raise ValueError(
                f"{num_images} images and {num_texts} prompts: give image_ids and text_ids to pair them "
                "(or one image, or one prompt, or as many images as prompts)"
            )
        count = max(num_images, num_texts)
        image_ids = torch.arange(count) if num_images > 1 else torch.zeros(count, dtype=torch.long)
        text_ids = torch.arange(count) if num_texts > 1 else torch.zeros(count, dtype=torch.long)
    elif image_ids is None or text_ids is None:
        given = torch.as_tensor(image_ids if text_ids is None else text_ids, dtype=torch.long).reshape(-1)
        other = num_texts if text_ids is None else num_images
        default = (
            torch.arange(len(given)) if other == len(given) else torch.zeros(len(given), dtype=torch.long)
        )
        image_ids, text_ids = (given, default) if text_ids is None else (default, given)
    image_ids = torch.as_tensor(image_ids, dtype=torch.long).reshape(-1)
    text_ids = torch.as_tensor(text_ids, dtype=torch.long).reshape(-1)
    if len(image_ids) != len(text_ids) or not len(image_ids):
        raise ValueError(f"image_ids and text_ids must have the same non-zero length, got {len(image_ids)} and "
                         f"{len(text_ids)}")  # fmt: skip
    for name, ids, count in (("image_ids", image_ids, num_images), ("text_ids", text_ids, num_texts)):
        if ids.min() < 0 or ids.max() >= count:
            raise ValueError(f"{name} must lie in [0, {count}), got {ids.tolist()}")
    return image_ids, text_ids


def _gather(tensors: tuple[torch.Tensor, ...], ids: torch.Tensor, count: int) -> tuple[torch.Tensor, ...]:
    """``t[ids]`` for every tensor; one shared item is expanded (no copy), an identity pairing is kept."""
    if len(ids) == count and torch.equal(ids, torch.arange(count)):
        return tuple(tensors)
    if count == 1:
        return tuple(t.expand(len(ids), *t.shape[1:]) for t in tensors)
    return tuple(t[ids.to(t.device)] for t in tensors)


@dataclass
class Sam3LiteTextDetectorOutput(ModelOutput):
    """Detector outputs (boxes normalised cxcywh and xyxy; logits before sigmoid)."""

    pred_logits: torch.Tensor | None = None
    pred_boxes: torch.Tensor | None = None
    pred_boxes_xyxy: torch.Tensor | None = None
    pred_masks: torch.Tensor | None = None
    semantic_seg: torch.Tensor | None = None
    presence_logits: torch.Tensor | None = None
    decoder_hidden_states: torch.Tensor | None = None
    decoder_reference_boxes: torch.Tensor | None = None
    encoder_memory: torch.Tensor | None = None
    prompt_features: torch.Tensor | None = None
    prompt_mask: torch.Tensor | None = None
    geometry_features: torch.Tensor | None = None
    geometry_mask: torch.Tensor | None = None
    fpn_hidden_states: tuple[torch.Tensor, ...] | None = None
    fpn_position_encoding: tuple[torch.Tensor, ...] | None = None
    vision_last_hidden_state: torch.Tensor | None = None
    image_ids: torch.Tensor | None = None
    text_ids: torch.Tensor | None = None
    vision_hidden_states: tuple[torch.Tensor, ...] | None = None
    vision_attentions: tuple[torch.Tensor, ...] | None = None
    encoder_hidden_states: tuple[torch.Tensor, ...] | None = None
    encoder_attentions: tuple[torch.Tensor, ...] | None = None
    decoder_attentions: tuple[torch.Tensor, ...] | None = None


class Sam3LiteTextDetector(nn.Module):
    """SAM3 image detector fed by precomputed (projected) text features.

    ``text_features`` are the student encoder's projected features ``[B, ctx, d_model]``; ``attention_mask`` is
    1 for real tokens and 0 for padding, which the detector masks everywhere it reads the prompt.
    """

    def __init__(self, config: sam3_config.Sam3Config | None = None, **widths: Any):
        super().__init__()
        config = config if config is not None else sam3_config_for(**widths)
        # The plain-module parts (geometry encoder, scoring) do not resolve an attention backend themselves.
        config._attn_implementation = config._attn_implementation or "sdpa"
        self.config = config
        self.vision_encoder = sam3.Sam3VisionModel(config.vision_config)
        self.geometry_encoder = Sam3LiteTextGeometryEncoder(config.geometry_encoder_config)
        self.detr_encoder = sam3.Sam3DetrEncoder(config.detr_encoder_config)
        self.detr_decoder = sam3.Sam3DetrDecoder(config.detr_decoder_config)
        self.mask_decoder = sam3.Sam3MaskDecoder(config.mask_decoder_config)
        self.dot_product_scoring = sam3.Sam3DotProductScoring(config)

    def encode_image(self, pixel_values: torch.Tensor, **flags: bool) -> Any:
        """Vision features of a batch of images; pass them back as ``vision_outputs`` to reuse them.

        ``flags``: ``output_hidden_states`` / ``output_attentions`` of the ViT trunk."""
        return self.vision_encoder(pixel_values, return_dict=True, **flags)

    def forward(
        self,
        pixel_values: torch.Tensor | None,
        text_features: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        vision_outputs: Any = None,
        image_ids: torch.Tensor | None = None,
        text_ids: torch.Tensor | None = None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
        input_points: torch.Tensor | None = None,
        input_points_labels: torch.Tensor | None = None,
        input_boxes: torch.Tensor | None = None,
        input_boxes_labels: torch.Tensor | None = None,
    ) -> Sam3LiteTextDetectorOutput:
        """One query per (``image_ids[q]``, ``text_ids[q]``) pair (the original ``FindStage``); see
        :func:`pair_indices` for the defaults. The flags ask the ViT trunk, the DETR encoder (hidden states and
        attentions) and the DETR decoder (attentions) for their intermediate outputs.

        Geometric prompts per query (or one set for every query): ``input_points`` ``[Q, P, 2]`` normalised
        ``(x, y)``, ``input_boxes`` ``[Q, N, 4]`` normalised ``(cx, cy, w, h)``, labels 1 positive / 0 negative /
        -10 padding (see :class:`Sam3LiteTextGeometryEncoder`)."""
        flags = {"output_attentions": output_attentions, "output_hidden_states": output_hidden_states}
        vision = vision_outputs if vision_outputs is not None else self.encode_image(pixel_values, **flags)
        num_images = vision.fpn_hidden_states[0].shape[0]
        image_ids, text_ids = pair_indices(num_images, text_features.shape[0], image_ids, text_ids)
        fpn = _gather(vision.fpn_hidden_states[:-1], image_ids, num_images)  # the 0.5x level is not used
        fpn_pos = _gather(vision.fpn_position_encoding[:-1], image_ids, num_images)
        text_features = _gather((text_features,), text_ids, text_features.shape[0])[0]
        batch, ctx = text_features.shape[:2]
        if attention_mask is None:
            attention_mask = torch.ones(batch, ctx, dtype=torch.bool, device=text_features.device)
        else:
            attention_mask = _gather((attention_mask,), text_ids, attention_mask.shape[0])[0]
        geometry, geometry_mask = self.geometry_encoder(
            fpn[-1], fpn_pos[-1], input_points, input_points_labels, input_boxes, input_boxes_labels
        )
        prompt = torch.cat([text_features, geometry.to(text_features.dtype)], dim=1)
        prompt_mask = torch.cat([attention_mask.bool(), geometry_mask.to(prompt.device)], dim=1)

        encoder = self.detr_encoder(
            vision_features=[fpn[-1]],
            text_features=prompt,
            vision_pos_embeds=[fpn_pos[-1]],
            text_mask=prompt_mask,
            **flags,
        )
        decoder = self.detr_decoder(
            vision_features=encoder.last_hidden_state,
            text_features=encoder.text_features,
            vision_pos_encoding=encoder.pos_embeds_flattened,
            text_mask=prompt_mask,
            spatial_shapes=encoder.spatial_shapes,
            output_attentions=output_attentions,
        )
        states = decoder.intermediate_hidden_states
        offsets = self.detr_decoder.box_head(states[-1])
        boxes = (sam3.inverse_sigmoid(decoder.reference_boxes[-1]) + offsets).sigmoid()
        logits = self.dot_product_scoring(
            decoder_hidden_states=states[-1:], text_features=encoder.text_features, text_mask=prompt_mask
        )[0]
        masks = self.mask_decoder(
            decoder_queries=states[-1],
            backbone_features=list(fpn),
            encoder_hidden_states=encoder.last_hidden_state,
            prompt_features=prompt,
            prompt_mask=prompt_mask,
            geometry_features=geometry,
            geometry_mask=geometry_mask,
        )
        return Sam3LiteTextDetectorOutput(
            pred_logits=logits,
            pred_boxes=boxes,
            pred_boxes_xyxy=sam3.box_cxcywh_to_xyxy(boxes),
            pred_masks=masks.pred_masks,
            semantic_seg=masks.semantic_seg,
            presence_logits=decoder.presence_logits[-1],
            decoder_hidden_states=states,
            decoder_reference_boxes=decoder.reference_boxes,
            encoder_memory=encoder.last_hidden_state,
            prompt_features=prompt,
            prompt_mask=prompt_mask,
            geometry_features=geometry,
            geometry_mask=geometry_mask,
            fpn_hidden_states=fpn,
            fpn_position_encoding=fpn_pos,
            vision_last_hidden_state=vision.last_hidden_state,
            image_ids=image_ids,
            text_ids=text_ids,
            vision_hidden_states=vision.hidden_states,
            vision_attentions=vision.attentions,
            encoder_hidden_states=encoder.hidden_states,
            encoder_attentions=encoder.attentions,
            decoder_attentions=decoder.attentions,
        )
