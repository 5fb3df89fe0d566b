"""Conversion of released VidEoMT checkpoints (tue-mps/videomt, detectron2 ``videomt_online`` names).

The architecture is read from the weights (backbone kind, width, depth, MLP width, registers, position
grid, queries, classes, number of segmenter blocks); what they cannot tell (attention heads, whether the
propagated queries are normalised) comes from the preset or the defaults documented in ``infer_config``.

``infer_config`` and ``convert_state_dict`` read prepared weights: the wrapper prefix already dropped once by
:func:`strip_wrapper_prefix` (the family's ``prepare_state_dict``).
"""

from __future__ import annotations

import logging
import re
from typing import Any

import torch

from ...core.checkpoint import CheckpointError
from ...core.key_mapping import KeyMapping, MappedStateDict, Rename, Skip
from ...core.state_dict import StateDict, build_config, check_overrides, config_keys, count_blocks, dim_of
from ...core.state_dict import strip_wrapper_prefix as _strip
from .configuration_videomt import PRESETS, VideomtConfig

_V2 = "backbone.encoder.backbone."
WRAPPER_PREFIXES = ("module.", "model.")
logger = logging.getLogger(__name__)


def strip_wrapper_prefix(sd: StateDict) -> dict[str, torch.Tensor]:
    """Raw weights -> prepared ones: drop a ``module.`` / ``model.`` prefix shared by every key."""
    return _strip(sd, WRAPPER_PREFIXES)


def detect_backbone(sd: StateDict) -> str:
    if _V2 + "pos_embed" in sd:
        return "dinov2"
    if _V2 + "patch_embed.patch_embeddings.weight" in sd:
        return "dinov3"
    raise CheckpointError(
        "not a VidEoMT checkpoint: expected backbone.encoder.backbone.pos_embed (DINOv2) or "
        "backbone.encoder.backbone.patch_embed.patch_embeddings.weight (DINOv3)"
    )


def _dim(sd: StateDict, key: str, axis: int, minimum: int = 1) -> int:
    return dim_of(sd, key, axis, "VidEoMT", minimum)


def _read_values(sd: StateDict, kind: str) -> dict[str, Any]:
    """Architecture values the (prepared) weights determine, each size checked."""
    depth = count_blocks(sd, re.escape(_V2) + r"blocks\.(\d+)\.")
    num_blocks = _dim(sd, "backbone.attn_mask_probs", 0)
    if not 0 < num_blocks <= depth:
        raise CheckpointError(
            f"backbone.attn_mask_probs names {num_blocks} segmenter blocks of {depth} blocks"
        )
    values: dict[str, Any] = {
        "backbone_type": kind,
        "hidden_size": _dim(sd, "backbone.q.weight", 1),
        "num_hidden_layers": depth,
        "segmenter_blocks": list(range(depth - num_blocks, depth)),
        "num_queries": _dim(sd, "backbone.q.weight", 0),
        "num_upscale_blocks": count_blocks(sd, r"backbone\.upscale\.(\d+)\."),
    }
    if kind == "dinov2":
        values.update(
            intermediate_size=_dim(sd, _V2 + "blocks.0.mlp.fc1.weight", 0),
            num_register_tokens=_dim(sd, _V2 + "reg_token", 1, 0),
            patch_size=_dim(sd, _V2 + "patch_embed.proj.weight", -1),
            position_grid_size=round(_dim(sd, _V2 + "pos_embed", 1) ** 0.5),
        )
    else:
        values.update(
            intermediate_size=_dim(sd, _V2 + "blocks.0.mlp.up_proj.weight", 0),
            num_register_tokens=_dim(sd, _V2 + "patch_embed.register_tokens", 1, 0),
            patch_size=_dim(sd, _V2 + "patch_embed.patch_embeddings.weight", -1),
            position_grid_size=None,
        )
    return values


def _loss_values(sd: StateDict, num_labels: int) -> dict[str, Any]:
    """The no-object class weight of the training loss, from ``criterion.empty_weight`` when present (ones for
    the classes, then the no-object weight), refused when it is anything else."""
    weight = sd.get("criterion.empty_weight")
    if weight is None:
        return {}
    if tuple(weight.shape) != (num_labels + 1,):
        raise CheckpointError(
            f"criterion.empty_weight has shape {list(weight.shape)}; the class head has {num_labels} classes "
            f"+ no object, so [{num_labels + 1}] was expected"
        )
    if weight.is_meta:  # a manifest: shapes only
        return {}
    values = weight.double()
    last = float(values[-1])
    if not bool(torch.isfinite(values).all()) or bool((values[:-1] != 1).any()) or not 0 <= last <= 1:
        raise CheckpointError(
            "criterion.empty_weight must be ones for the classes and a no-object weight in [0, 1]"
        )
    return {"no_object_weight": float(f"{last:.7g}")}  # the float32 value, as written in the original config


# What identifies a released size (a named variant whose values differ holds other weights).
_SIZE_KEYS = ("hidden_size", "num_hidden_layers", "intermediate_size", "segmenter_blocks")


def _variant_base(variant: str, kind: str, read: dict[str, Any]) -> dict[str, Any]:
    """The preset of a named variant, refused when the weights contradict it."""
    if variant not in PRESETS:
        raise CheckpointError(f"unknown VidEoMT variant {variant!r}; choose from {', '.join(PRESETS)}")
    preset = PRESETS[variant]
    if preset["backbone_type"] != kind:
        raise CheckpointError(f"the weights hold a {kind} backbone but variant {variant!r} does not")
    for key in _SIZE_KEYS:
        if preset[key] != read[key]:
            raise CheckpointError(
                f"--variant {variant} has {key}={preset[key]} but the weights hold {read[key]}; its "
                f"num_attention_heads={preset['num_attention_heads']} cannot be read from the weights: pass the "
                "variant of these weights, or none and --set num_attention_heads=N"
            )
    return dict(preset)


def _guessed_base(kind: str, dim: int, num_labels: int, overrides: dict[str, Any]) -> dict[str, Any]:
    """Values the weights cannot tell, guessed as documented in ``infer_config``; a warning names each
    guessed value that no override sets."""
    base = {"num_attention_heads": max(1, dim // 64), "layer_norm_eps": 1e-6 if kind == "dinov2" else 1e-5,
            "norm_queries": kind == "dinov3" and num_labels == 124}  # fmt: skip
    guessed = {k: base[k] for k in ("num_attention_heads", "norm_queries") if k not in overrides}
    if guessed:
        logger.warning(
            "VidEoMT: the weights cannot tell %s; guessed %s (hidden_size %d // 64, the released rule); set "
            "them if the checkpoint differs: %s",
            " and ".join(guessed), ", ".join(f"{k}={v}" for k, v in guessed.items()), dim,
            " ".join(f"--set {k}=..." for k in guessed),
        )  # fmt: skip
    return base


def infer_config(sd: StateDict, variant: str | None = None, **overrides: Any) -> VideomtConfig:
    """:class:`VideomtConfig` of prepared weights.

    Without ``variant`` or an override, attention heads default to ``hidden_size // 64`` (every released
    DINOv2/DINOv3 ViT) and ``norm_queries`` to True only for DINOv3 models with 124 classes (the released
    DINOv3 VIPSeg/VSPW models); a warning names each such guess. A named ``variant`` whose sizes the weights
    contradict, unknown ``overrides`` keys and invalid values are refused.
    """
    check_overrides(config_keys(VideomtConfig), overrides, "VidEoMT")
    kind = detect_backbone(sd)
    values = _read_values(sd, kind)
    num_labels = _dim(sd, "backbone.class_head.weight", 0, 2) - 1
    values.update(_loss_values(sd, num_labels))
    if variant is not None:
        base = _variant_base(variant, kind, values)
    else:
        base = _guessed_base(kind, values["hidden_size"], num_labels, overrides)
    base.update(values)
    base.pop("num_labels", None)
    base.setdefault("id2label", {i: f"LABEL_{i}" for i in range(num_labels)})
    base.update(overrides)
    if variant is not None:
        base["variant"] = variant
    return build_config(VideomtConfig, **base)


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
