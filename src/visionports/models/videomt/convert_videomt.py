"""Conversion of released VidEoMT checkpoints (tue-mps/videomt, detectron2 ``videomt_online`` names).

The architecture is read from the weights (backbone kind, width, depth, MLP width, registers, position
grid, queries, classes, number of segmenter blocks); what they cannot tell (attention heads, whether the
propagated queries are normalised) comes from the preset or the defaults documented in ``infer_config``.

``infer_config`` and ``convert_state_dict`` read prepared weights: the wrapper prefix already dropped once by
:func:`strip_wrapper_prefix` (the family's ``prepare_state_dict``).
"""

from __future__ import annotations

import re
from typing import Any

import torch

from ...core.checkpoint import CheckpointError
from ...core.key_mapping import KeyMapping, MappedStateDict, Rename, Skip
from ...core.state_dict import StateDict, count_blocks, shape_of
from ...core.state_dict import strip_wrapper_prefix as _strip
from .configuration_videomt import PRESETS, VideomtConfig

_V2 = "backbone.encoder.backbone."
WRAPPER_PREFIXES = ("module.", "model.")


def strip_wrapper_prefix(sd: StateDict) -> dict[str, torch.Tensor]:
    """Raw weights -> prepared ones: drop a ``module.`` / ``model.`` prefix shared by every key."""
    return _strip(sd, WRAPPER_PREFIXES)


def _shape(sd: StateDict, key: str) -> tuple[int, ...]:
    return shape_of(sd, key, "VidEoMT")


def detect_backbone(sd: StateDict) -> str:
    if _V2 + "pos_embed" in sd:
        return "dinov2"
    if _V2 + "patch_embed.patch_embeddings.weight" in sd:
        return "dinov3"
    raise CheckpointError(
        "not a VidEoMT checkpoint: expected backbone.encoder.backbone.pos_embed (DINOv2) or "
        "backbone.encoder.backbone.patch_embed.patch_embeddings.weight (DINOv3)"
    )


def infer_config(sd: StateDict, variant: str | None = None, **overrides: Any) -> VideomtConfig:
    """:class:`VideomtConfig` of prepared weights.

    Without ``variant`` or an override, attention heads default to ``hidden_size // 64`` (every released
    DINOv2/DINOv3 ViT) and ``norm_queries`` to True only for DINOv3 models with 124 classes (the released
    DINOv3 VIPSeg/VSPW models).
    """
    kind = detect_backbone(sd)
    depth = count_blocks(sd, re.escape(_V2) + r"blocks\.(\d+)\.")
    num_blocks = _shape(sd, "backbone.attn_mask_probs")[0]
    num_queries, dim = _shape(sd, "backbone.q.weight")
    num_labels = _shape(sd, "backbone.class_head.weight")[0] - 1
    values: dict[str, Any] = {
        "backbone_type": kind,
        "hidden_size": dim,
        "num_hidden_layers": depth,
        "segmenter_blocks": list(range(depth - num_blocks, depth)),
        "num_queries": num_queries,
        "num_upscale_blocks": count_blocks(sd, r"backbone\.upscale\.(\d+)\."),
    }
    if kind == "dinov2":
        grid = round(_shape(sd, _V2 + "pos_embed")[1] ** 0.5)
        values.update(
            intermediate_size=_shape(sd, _V2 + "blocks.0.mlp.fc1.weight")[0],
            num_register_tokens=_shape(sd, _V2 + "reg_token")[1],
            patch_size=_shape(sd, _V2 + "patch_embed.proj.weight")[-1],
            position_grid_size=grid,
        )
    else:
        values.update(
            intermediate_size=_shape(sd, _V2 + "blocks.0.mlp.up_proj.weight")[0],
            num_register_tokens=_shape(sd, _V2 + "patch_embed.register_tokens")[1],
            patch_size=_shape(sd, _V2 + "patch_embed.patch_embeddings.weight")[-1],
            position_grid_size=None,
        )
    if variant is not None:
        if variant not in PRESETS:
            raise CheckpointError(f"unknown VidEoMT variant {variant!r}; choose from {', '.join(PRESETS)}")
        if PRESETS[variant]["backbone_type"] != kind:
            raise CheckpointError(f"the weights hold a {kind} backbone but variant {variant!r} does not")
        base = dict(PRESETS[variant])
    else:
        base = {"num_attention_heads": max(1, dim // 64), "layer_norm_eps": 1e-6 if kind == "dinov2" else 1e-5,
                "norm_queries": kind == "dinov3" and num_labels == 124}  # fmt: skip
    base.update(values)
    base.pop("num_labels", None)
    base.setdefault("id2label", {i: f"LABEL_{i}" for i in range(num_labels)})
    base.update(overrides)
    if variant is not None:
        base["variant"] = variant
    return VideomtConfig(**base)


def key_mapping(config: VideomtConfig) -> KeyMapping:
    """Original VidEoMT key names -> ``VideomtForUniversalSegmentation`` key names."""
    v2 = re.escape(_V2)
    return KeyMapping([
        Skip(r"backbone\.attn_mask_probs", "mask-annealing buffer of the original; never read by the forward"),
        Skip(r"criterion\.empty_weight", "training-loss class weights (no-object 0.1)"),
        Rename(rf"^{v2}cls_token$", "embeddings.cls_token"),
        Rename(rf"^{v2}reg_token$", "embeddings.register_tokens"),
        Rename(rf"^{v2}pos_embed$", "embeddings.position_embeddings"),
        Rename(rf"^{v2}patch_embed\.proj\.", "embeddings.patch_embeddings."),
        Rename(rf"^{v2}patch_embed\.", "embeddings."),
        Rename(rf"^{v2}norm\.", "norm."),
        Rename(rf"^{v2}blocks\.(\d+)\.attn\.", r"layers.\1.attention."),
        Rename(rf"^{v2}blocks\.(\d+)\.ls([12])\.", r"layers.\1.layer_scale\2."),
        Rename(rf"^{v2}blocks\.(\d+)\.mlp\.(fc[12])\.", r"layers.\1.\2."),
        Rename(rf"^{v2}blocks\.", "layers."),
        Rename(r"^backbone\.q\.", "query."),
        Rename(r"^backbone\.", ""),
    ])  # fmt: skip


def convert_state_dict(sd: StateDict, config: VideomtConfig) -> MappedStateDict:
    """Map prepared weights to our names."""
    return key_mapping(config).apply(sd)
