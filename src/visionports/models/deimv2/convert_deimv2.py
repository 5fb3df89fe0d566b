"""Conversion of original DEIMv2 checkpoints (Intellindust-AI-Lab/DEIMv2) to ``Deimv2ForObjectDetection``.

The variant is inferred from the weights: every shape-bearing value (stage tables, widths, depths, points
per level, bins, input size of the stored anchors) is read from the state dict; values the weights cannot
tell (number of queries, attention heads of the encoder, ViT layers tapped) come from the nearest preset.

Every function here reads prepared weights: keys as the original model names them, the wrapper prefix already
dropped once by :func:`strip_wrapper_prefix` (the family's ``prepare_state_dict``).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import torch

from ...core.checkpoint import CheckpointError
from ...core.key_mapping import Duplicate, Fold, KeyMapping, MappedStateDict, Rename, Skip, Split
from ...core.state_dict import StateDict, count_blocks, shape_of
from ...core.state_dict import strip_wrapper_prefix as _strip
from .configuration_deimv2 import _HGNET_ARCHS, PRESETS, Deimv2Config
from .decoder_deimv2 import generate_anchors

_HGNET_PRESET_OF_ARCH = {"Atto": "atto", "Femto": "femto", "Pico": "pico", "B0": "n"}
WRAPPER_PREFIXES = ("module.", "ema.module.", "model.")


def _count(sd: StateDict, pattern: str) -> int:
    return count_blocks(sd, pattern)


def _shape(sd: StateDict, key: str) -> tuple[int, ...]:
    return shape_of(sd, key, "DEIMv2")


def _has_values(t: torch.Tensor) -> bool:
    return not t.is_meta


def strip_wrapper_prefix(sd: StateDict) -> dict[str, torch.Tensor]:
    """Raw weights -> prepared ones: drop a prefix shared by every key (``module.`` of DistributedDataParallel,
    or a flattened ``ema.module.`` / ``model.`` top level); original DEIMv2 keys start with backbone/encoder/decoder.
    """
    return _strip(sd, WRAPPER_PREFIXES)


def detect_backbone(sd: StateDict) -> str:
    if "backbone.stem.stem1.conv.weight" in sd:
        return "hgnetv2"
    if "backbone.dinov3._model.cls_token" in sd:
        return "vit_tiny"
    if "backbone.dinov3.cls_token" in sd:
        return "dinov3"
    raise CheckpointError(
        "not a DEIMv2 checkpoint: found neither HGNetV2 keys (backbone.stem.*) nor DINOv3/ViT keys "
        "(backbone.dinov3.*)"
    )


def _infer_hgnet(sd: StateDict) -> dict[str, Any]:
    stages = []
    for i in range(_count(sd, r"backbone\.stages\.(\d+)\.")):
        p = f"backbone.stages.{i}."
        light = f"{p}blocks.0.layers.0.conv1.conv.weight" in sd
        if light:
            first = _shape(sd, f"{p}blocks.0.layers.0.conv1.conv.weight")
            kernel = _shape(sd, f"{p}blocks.0.layers.0.conv2.conv.weight")[-1]
        else:
            first = _shape(sd, f"{p}blocks.0.layers.0.conv.weight")
            kernel = first[-1]
        stages.append([
            first[1], first[0], _shape(sd, f"{p}blocks.0.aggregation.1.conv.weight")[0],
            _count(sd, rf"{re.escape(p)}blocks\.(\d+)\."), f"{p}downsample.conv.weight" in sd, light, kernel,
            _count(sd, rf"{re.escape(p)}blocks\.0\.layers\.(\d+)\."),
        ])  # fmt: skip
    stem = [
        _shape(sd, "backbone.stem.stem1.conv.weight")[1],
        _shape(sd, "backbone.stem.stem1.conv.weight")[0],
        _shape(sd, "backbone.stem.stem4.conv.weight")[0],
    ]
    return {
        "hgnet_stem_channels": stem,
        "hgnet_stages": stages,
        "hgnet_use_lab": "backbone.stem.stem1.lab.scale" in sd,
    }


def _infer_vit(sd: StateDict, flavor: str) -> dict[str, Any]:
    p = "backbone.dinov3._model." if flavor == "vit_tiny" else "backbone.dinov3."
    dim = _shape(sd, p + "cls_token")[-1]
    head_dim = 4 * _shape(sd, p + "rope_embed.periods")[0]
    swiglu = f"{p}blocks.0.mlp.w1.weight" in sd
    ffn_key = f"{p}blocks.0.mlp.w1.weight" if swiglu else f"{p}blocks.0.mlp.fc1.weight"
    return {
        "vit_flavor": flavor,
        "vit_hidden_size": dim,
        "vit_num_heads": dim // head_dim,
        "vit_depth": _count(sd, rf"{re.escape(p)}blocks\.(\d+)\."),
        "vit_patch_size": _shape(sd, p + "patch_embed.proj.weight")[-1],
        "vit_ffn_type": "swiglu" if swiglu else "mlp",
        "vit_ffn_hidden_size": _shape(sd, ffn_key)[0],
        "vit_num_register_tokens": _shape(sd, p + "storage_tokens")[1] if p + "storage_tokens" in sd else 0,
        "vit_layer_scale": f"{p}blocks.0.ls1.gamma" in sd,
        "vit_final_norm": p + "norm.weight" in sd,
        "vit_mask_k_bias": f"{p}blocks.0.attn.qkv.bias_mask" in sd,
        "sta_inplanes": _shape(sd, "backbone.sta.stem.0.weight")[0],
        "backbone_hidden_dim": _shape(sd, "backbone.convs.0.weight")[0],
    }


@dataclass(frozen=True)
class EncoderLayout:
    """What the weights tell about the encoder: config values, and the CSP widths / AIFI count that
    select the yml factors and AIFI levels (read once, passed on; never stored in the config)."""

    values: dict[str, Any]
    csp_channels: int
    csp_blocks: int
    num_aifi: int | None = None


def _infer_encoder(sd: StateDict) -> EncoderLayout:
    lite = "encoder.bi_fusion.cv.conv.weight" in sd
    if lite:
        hidden = _shape(sd, "encoder.input_proj.0.conv.weight")[0]
        levels = _count(sd, r"encoder\.input_proj\.(\d+)\.")
        in_channels = [_shape(sd, f"encoder.input_proj.{i}.conv.weight")[1] for i in range(levels)]
        block = "encoder.fpn_block."
    else:
        hidden = _shape(sd, "encoder.lateral_convs.0.conv.weight")[0]
        levels = _count(sd, r"encoder\.fpn_blocks\.(\d+)\.") + 1
        in_channels = [
            _shape(sd, f"encoder.input_proj.{i}.conv.weight")[1] if f"encoder.input_proj.{i}.conv.weight" in sd
            else hidden
            for i in range(levels)
        ]  # fmt: skip
        block = "encoder.fpn_blocks.0."
    values: dict[str, Any] = {
        "encoder_type": "lite" if lite else "hybrid",
        "encoder_hidden_dim": hidden,
        "encoder_in_channels": in_channels,
        "encoder_block": "elan4" if block + "cv2.1.conv.weight" in sd else "elan5",
    }
    num_aifi = None
    if not lite:
        num_aifi = _count(sd, r"encoder\.encoder\.(\d+)\.")
        values["encoder_layers"] = _count(sd, r"encoder\.encoder\.0\.layers\.(\d+)\.")
        values["encoder_ffn_dim"] = _shape(sd, "encoder.encoder.0.layers.0.linear1.weight")[0]
    return EncoderLayout(
        values=values,
        csp_channels=_shape(sd, block + "cv2.0.conv1.conv.weight")[0] // 2,
        csp_blocks=_count(sd, rf"{re.escape(block)}cv2\.0\.bottlenecks\.(\d+)\."),
        num_aifi=num_aifi,
    )


def _infer_decoder(sd: StateDict, preset: dict[str, Any]) -> dict[str, Any]:
    num_labels, dim = _shape(sd, "decoder.enc_score_head.weight")
    layers = _count(sd, r"decoder\.decoder\.layers\.(\d+)\.")
    scale = sd["decoder.decoder.layers.0.cross_attn.num_points_scale"]
    total = scale.shape[0]
    if _has_values(scale):
        points, i = [], 0
        while i < total:
            n = round(1 / float(scale[i]))
            points.append(n)
            i += n
    elif sum(preset["decoder_n_points"]) == total:
        points = list(preset["decoder_n_points"])
    else:
        raise CheckpointError(
            f"cannot tell the sampling points per level from a num_points_scale of size {total}"
        )
    heads = _shape(sd, "decoder.decoder.layers.0.cross_attn.sampling_offsets.weight")[0] // (2 * total)
    bbox_heads = _count(sd, r"decoder\.dec_bbox_head\.(\d+)\.")
    first = [k for k in sd if k.startswith("decoder.dec_bbox_head.0.")]
    if bbox_heads == 1 and layers > 1:
        shared = True  # safetensors exports (e.g. the Hugging Face uploads) keep one copy of shared tensors
    elif bbox_heads > 1 and all(_has_values(sd[k]) for k in first):
        shared = all(
            torch.equal(sd[k], sd[k.replace("dec_bbox_head.0.", f"dec_bbox_head.{i}.", 1)])
            for i in range(1, bbox_heads)
            for k in first
        )
    else:
        shared = preset["share_bbox_head"]
    values: dict[str, Any] = {
        "num_labels": num_labels,
        "d_model": dim,
        "decoder_layers": layers,
        "decoder_ffn_dim": _shape(sd, "decoder.decoder.layers.0.swish_ffn.w12.weight")[0],
        "decoder_n_points": points,
        "num_feature_levels": len(points),
        "decoder_attention_heads": heads,
        "use_gateway": "decoder.decoder.layers.0.gateway.gate.weight" in sd,
        "share_bbox_head": shared,
        "max_num_bins": _shape(sd, "decoder.dec_bbox_head.0.layers.2.weight")[0] // 4 - 1,
        "lqe_hidden_dim": _shape(sd, "decoder.decoder.lqe_layers.0.reg_conf.layers.0.weight")[0],
        "lqe_top_k": _shape(sd, "decoder.decoder.lqe_layers.0.reg_conf.layers.0.weight")[1] // 4 - 1,
    }
    for name in ("up", "reg_scale"):
        tensor = sd.get(f"decoder.{name}")
        if tensor is not None and _has_values(tensor):
            values[name] = float(tensor.reshape(-1)[0])
    return values


def _eval_size_from_anchors(sd: StateDict, strides: list[int]) -> list[int] | None:
    anchors = sd.get("decoder.anchors")
    if anchors is None:
        return None
    count = anchors.shape[1]
    side = math.sqrt(count / sum(1 / s**2 for s in strides))
    size = round(side)
    if abs(side - size) > 1e-6 or sum((size // s) ** 2 for s in strides) != count:
        return None
    return [size, size]


def _infer_backbone(sd: StateDict, kind: str) -> dict[str, Any]:
    return _infer_hgnet(sd) if kind == "hgnetv2" else _infer_vit(sd, kind)


def _variant_of(sd: StateDict, kind: str, backbone: dict[str, Any]) -> str:
    """Released variant matching the backbone values already read from ``sd``."""
    if kind == "hgnetv2":
        stages = backbone["hgnet_stages"]
        for arch, table in _HGNET_ARCHS.items():
            if [list(s) for s in table["stages"]] == stages:
                return _HGNET_PRESET_OF_ARCH[arch]
        return "n" if len(stages) == 4 else "atto"
    if kind == "vit_tiny":
        return "m" if backbone["vit_hidden_size"] >= 256 else "s"
    return "x" if "backbone.dinov3.blocks.0.mlp.w1.weight" in sd else "l"


def guess_variant(sd: StateDict) -> str:
    """Name of the released variant whose architecture family matches the (prepared) weights."""
    kind = detect_backbone(sd)
    return _variant_of(sd, kind, _infer_backbone(sd, kind))


def _preset_name(sd: StateDict, kind: str, backbone: dict[str, Any], variant: str | None) -> str:
    """The requested (or inferred) preset, checked against the backbone kind of the weights."""
    name = (variant or _variant_of(sd, kind, backbone)).lower()
    if name not in PRESETS:
        raise CheckpointError(f"unknown DEIMv2 variant {variant!r}; choose from {', '.join(PRESETS)}")
    preset_family = "hgnetv2" if PRESETS[name]["backbone_type"] == "hgnetv2" else PRESETS[name]["vit_flavor"]
    if preset_family != kind:
        raise CheckpointError(f"the weights hold a {kind} backbone but variant {name!r} uses {preset_family}")
    return name


def infer_config(sd: StateDict, variant: str | None = None, **overrides: Any) -> Deimv2Config:
    """Build the :class:`Deimv2Config` of prepared weights (variant inferred when not given)."""
    kind = detect_backbone(sd)
    backbone = _infer_backbone(sd, kind)
    name = _preset_name(sd, kind, backbone, variant)
    values = {**PRESETS[name], **backbone}
    encoder = _infer_encoder(sd)
    values.update(encoder.values)
    values.update(_infer_decoder(sd, PRESETS[name]))
    values.update(_levels(values, kind, encoder.num_aifi))
    values.update(_encoder_width_factors(values, encoder.csp_channels, encoder.csp_blocks))
    eval_size = _eval_size_from_anchors(sd, list(values["decoder_feat_strides"]))
    if eval_size is not None:
        values["eval_image_size"] = eval_size
    num_labels = values.pop("num_labels")
    if num_labels != 80:
        values["id2label"] = {i: f"LABEL_{i}" for i in range(num_labels)}
    values.update(overrides)
    return Deimv2Config.from_preset(name, **values)


def _levels(values: dict[str, Any], kind: str, num_aifi: int | None) -> dict[str, Any]:
    """HGNetV2 stages tapped and AIFI levels, from the number of encoder input levels."""
    levels = len(values["encoder_in_channels"])
    out: dict[str, Any] = {}
    if kind == "hgnetv2":
        out["hgnet_out_indices"] = list(
            range(len(values["hgnet_stages"]) - levels, len(values["hgnet_stages"]))
        )
    if num_aifi is not None and num_aifi != len(values.get("encoder_aifi_indices", [])):
        out["encoder_aifi_indices"] = list(range(levels - num_aifi, levels))
    return out


def _encoder_width_factors(values: dict[str, Any], channels: int, blocks: int) -> dict[str, float]:
    """Original yml factors (expansion, depth_mult) that reproduce the CSP widths found in the weights."""
    hidden = values["encoder_hidden_dim"]
    expansion, depth = values["encoder_expansion"], values["encoder_depth_mult"]
    if round(expansion * hidden // 2) != channels:
        expansion = (2 * channels + 1) / hidden
    if round(3 * depth) != blocks:
        depth = blocks / 3
    return {"encoder_expansion": expansion, "encoder_depth_mult": depth}


def _mask_bias(bias: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return bias * mask.to(bias.dtype)


def key_mapping(config: Deimv2Config) -> KeyMapping:
    """Original DEIMv2 key names -> ``Deimv2ForObjectDetection`` key names."""
    rules: list = [
        Skip(r"decoder\.(anchors|valid_mask)", "recomputed for each input size (checked against the checkpoint)"),
        Skip(r"decoder\.decoder\.layers\.\d+\.cross_attn\.num_points_scale", "recomputed from decoder_n_points"),
        Skip(r"backbone\.dinov3\.mask_token", "masked-token embedding of DINOv3 pre-training; unused by detection"),
        Duplicate(r"decoder\.decoder\.(up|reg_scale)", r"decoder.\1"),
        Fold(r"(backbone\.dinov3\.blocks\.\d+\.attn\.qkv)\.bias_mask", r"\1.bias", _mask_bias,
             "the k third of the qkv bias is masked"),
        # backbone: HGNetV2 (transformers' module names)
        Rename(r"^backbone\.stem\.", "model.backbone.hgnet.embedder."),
        Rename(r"^backbone\.stages\.", "model.backbone.hgnet.encoder.stages."),
        Rename(r"^(model\.backbone\.hgnet\..*)\.conv\.weight$", r"\1.convolution.weight"),
        Rename(r"^(model\.backbone\.hgnet\..*)\.bn\.", r"\1.normalization."),
        # backbone: ViT + Spatial Tuning Adapter
        Rename(r"^backbone\.dinov3\.(_model\.)?", "model.backbone.vit."),
        Rename(r"^model\.backbone\.vit\.patch_embed\.proj\.", "model.backbone.vit.patch_embed."),
        Rename(r"^model\.backbone\.vit\.blocks\.(\d+)\.attn\.", r"model.backbone.vit.layers.\1.attention."),
        Rename(r"^model\.backbone\.vit\.blocks\.(\d+)\.ls([12])\.", r"model.backbone.vit.layers.\1.layer_scale\2."),
        Rename(r"^model\.backbone\.vit\.blocks\.", "model.backbone.vit.layers."),
        Rename(r"^model\.backbone\.vit\.storage_tokens$", "model.backbone.vit.register_tokens"),
        Rename(r"^model\.backbone\.vit\.rope_embed\.", "model.backbone.vit.rope."),
        Rename(r"^backbone\.sta\.stem\.0\.", "model.backbone.sta.stem_conv."),
        Rename(r"^backbone\.sta\.stem\.1\.", "model.backbone.sta.stem_norm."),
        Rename(r"^backbone\.sta\.conv2\.0\.", "model.backbone.sta.conv2."),
        Rename(r"^backbone\.sta\.conv2\.1\.", "model.backbone.sta.norm2."),
        Rename(r"^backbone\.sta\.conv([34])\.1\.", r"model.backbone.sta.conv\1."),
        Rename(r"^backbone\.sta\.conv([34])\.2\.", r"model.backbone.sta.norm\1."),
        Rename(r"^backbone\.convs\.(\d+)\.", r"model.backbone.projections.\1.conv."),
        Rename(r"^backbone\.norms\.(\d+)\.", r"model.backbone.projections.\1.norm."),
        # encoder
        Rename(r"^encoder\.down_sample([12])\.1\.", r"model.encoder.downsample\1.proj.conv."),
        Rename(r"^encoder\.down_sample([12])\.2\.", r"model.encoder.downsample\1.proj.norm."),
        Rename(r"^encoder\.bi_fusion\.cv\.", "model.encoder.gap_fusion."),
        Rename(r"^encoder\.encoder\.(\d+)\.layers\.(\d+)\.linear([12])\.", r"model.encoder.aifi.\1.layers.\2.fc\3."),
        Rename(r"^encoder\.encoder\.", "model.encoder.aifi."),
        Rename(r"^encoder\.downsample_convs\.(\d+)\.0\.", r"model.encoder.downsample_convs.\1."),
        Rename(r"^encoder\.", "model.encoder."),
        # decoder
        Rename(r"^decoder\.decoder\.(layers|lqe_layers)\.", r"model.decoder.\1."),
        Rename(r"^decoder\.", "model.decoder."),
        Rename(r"^(model\.decoder\.layers\.\d+\.)swish_ffn\.", r"\1ffn."),
        Rename(r"^(model\.decoder\.layers\.\d+\..*norm\d?)\.scale$", r"\1.weight"),
        Split(r"(.*\.self_attn)\.in_proj_(weight|bias)", (r"\1.q_proj.\2", r"\1.k_proj.\2", r"\1.v_proj.\2")),
    ]  # fmt: skip
    if config.share_bbox_head:
        rules.insert(0, Duplicate(r"decoder\.dec_bbox_head\.([1-9]\d*)\.(.*)", r"decoder.dec_bbox_head.0.\2"))
    return KeyMapping(rules)


def verify_recomputed_buffers(sd: StateDict, config: Deimv2Config) -> None:
    """Check that the buffers we recompute (anchors, valid mask) equal the checkpoint's."""
    anchors = sd.get("decoder.anchors")
    if anchors is None or anchors.is_meta:
        return
    height, width = config.eval_image_size
    shapes = [(int(height / s), int(width / s)) for s in config.decoder_feat_strides]
    ours, valid = generate_anchors(shapes, config.anchor_grid_size, config.anchor_eps)
    if anchors.shape != ours.shape or not torch.equal(anchors.to(ours.dtype), ours):
        raise CheckpointError(
            f"decoder.anchors in the checkpoint ({list(anchors.shape)}) differ from the anchors of a "
            f"{height}x{width} input with strides {config.decoder_feat_strides}; pass the right --image-size"
        )
    mask = sd.get("decoder.valid_mask")
    if mask is not None and not torch.equal(mask.bool(), valid):
        raise CheckpointError(
            "decoder.valid_mask in the checkpoint differs from the recomputed validity mask"
        )


def convert_state_dict(sd: StateDict, config: Deimv2Config) -> MappedStateDict:
    """Map prepared weights to our names (after checking recomputed buffers)."""
    verify_recomputed_buffers(sd, config)
    return key_mapping(config).apply(sd)
