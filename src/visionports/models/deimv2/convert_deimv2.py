"""Conversion of original DEIMv2 checkpoints (Intellindust-AI-Lab/DEIMv2) to ``Deimv2ForObjectDetection``.

The variant is inferred from the weights: every shape-bearing value (stage tables, widths, depths, points
per level, bins, input size of the stored anchors) is read from the state dict; values the weights cannot
tell (number of queries, attention heads of the encoder, ViT layers tapped) come from the nearest preset.

Every function here reads prepared weights: keys as the original model names them, the wrapper prefix already
dropped once by :func:`strip_wrapper_prefix` (the family's ``prepare_state_dict``).
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass
from typing import Any

import torch

from ...core.checkpoint import CheckpointError
from ...core.key_mapping import Duplicate, Fold, KeyMapping, MappedStateDict, Rename, Skip, Split
from ...core.state_dict import StateDict, build_config, check_overrides, config_keys, count_blocks, dim_of
from ...core.state_dict import strip_wrapper_prefix as _strip
from .configuration_deimv2 import _HGNET_ARCHS, PRESETS, Deimv2Config
from .decoder_deimv2 import generate_anchors

_HGNET_PRESET_OF_ARCH = {"Atto": "atto", "Femto": "femto", "Pico": "pico", "B0": "n"}
WRAPPER_PREFIXES = ("module.", "ema.module.", "model.")
logger = logging.getLogger(__name__)


def _count(sd: StateDict, pattern: str) -> int:
    return count_blocks(sd, pattern)


def _dim(sd: StateDict, key: str, axis: int, minimum: int = 1) -> int:
    return dim_of(sd, key, axis, "DEIMv2", minimum)


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
            first = f"{p}blocks.0.layers.0.conv1.conv.weight"
            kernel = _dim(sd, f"{p}blocks.0.layers.0.conv2.conv.weight", -1)
        else:
            first = f"{p}blocks.0.layers.0.conv.weight"
            kernel = _dim(sd, first, -1)
        stages.append([
            _dim(sd, first, 1), _dim(sd, first, 0), _dim(sd, f"{p}blocks.0.aggregation.1.conv.weight", 0),
            _count(sd, rf"{re.escape(p)}blocks\.(\d+)\."), f"{p}downsample.conv.weight" in sd, light, kernel,
            _count(sd, rf"{re.escape(p)}blocks\.0\.layers\.(\d+)\."),
        ])  # fmt: skip
    stem = [
        _dim(sd, "backbone.stem.stem1.conv.weight", 1),
        _dim(sd, "backbone.stem.stem1.conv.weight", 0),
        _dim(sd, "backbone.stem.stem4.conv.weight", 0),
    ]
    return {
        "hgnet_stem_channels": stem,
        "hgnet_stages": stages,
        "hgnet_use_lab": "backbone.stem.stem1.lab.scale" in sd,
    }


def _infer_vit(sd: StateDict, flavor: str) -> dict[str, Any]:
    p = "backbone.dinov3._model." if flavor == "vit_tiny" else "backbone.dinov3."
    dim = _dim(sd, p + "cls_token", -1)
    head_dim = 4 * _dim(sd, p + "rope_embed.periods", 0)
    if dim % head_dim:
        raise CheckpointError(
            f"{p}cls_token width {dim} is not a multiple of the head width {head_dim} (4 x rope_embed.periods)"
        )
    swiglu = f"{p}blocks.0.mlp.w1.weight" in sd
    ffn_key = f"{p}blocks.0.mlp.w1.weight" if swiglu else f"{p}blocks.0.mlp.fc1.weight"
    return {
        "vit_flavor": flavor,
        "vit_hidden_size": dim,
        "vit_num_heads": dim // head_dim,
        "vit_depth": _count(sd, rf"{re.escape(p)}blocks\.(\d+)\."),
        "vit_patch_size": _dim(sd, p + "patch_embed.proj.weight", -1),
        "vit_ffn_type": "swiglu" if swiglu else "mlp",
        "vit_ffn_hidden_size": _dim(sd, ffn_key, 0),
        "vit_num_register_tokens": _dim(sd, p + "storage_tokens", 1, 0) if p + "storage_tokens" in sd else 0,
        "vit_layer_scale": f"{p}blocks.0.ls1.gamma" in sd,
        "vit_final_norm": p + "norm.weight" in sd,
        "vit_mask_k_bias": f"{p}blocks.0.attn.qkv.bias_mask" in sd,
        "sta_inplanes": _dim(sd, "backbone.sta.stem.0.weight", 0),
        "backbone_hidden_dim": _dim(sd, "backbone.convs.0.weight", 0),
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
        hidden = _dim(sd, "encoder.input_proj.0.conv.weight", 0)
        levels = _count(sd, r"encoder\.input_proj\.(\d+)\.")
        in_channels = [_dim(sd, f"encoder.input_proj.{i}.conv.weight", 1) for i in range(levels)]
        block = "encoder.fpn_block."
    else:
        hidden = _dim(sd, "encoder.lateral_convs.0.conv.weight", 0)
        levels = _count(sd, r"encoder\.fpn_blocks\.(\d+)\.") + 1
        in_channels = [
            _dim(sd, f"encoder.input_proj.{i}.conv.weight", 1) if f"encoder.input_proj.{i}.conv.weight" in sd
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
        values["encoder_ffn_dim"] = _dim(sd, "encoder.encoder.0.layers.0.linear1.weight", 0)
    return EncoderLayout(
        values=values,
        csp_channels=_dim(sd, block + "cv2.0.conv1.conv.weight", 0) // 2,
        csp_blocks=_count(sd, rf"{re.escape(block)}cv2\.0\.bottlenecks\.(\d+)\."),
        num_aifi=num_aifi,
    )


_SCALE = "decoder.decoder.layers.0.cross_attn.num_points_scale"
_OFFSETS = "decoder.decoder.layers.0.cross_attn.sampling_offsets.weight"


def _points_from_scale(scale: torch.Tensor) -> list[int]:
    """Sampling points per level from ``num_points_scale`` (``1/n`` repeated ``n`` times per level).

    Bounded: every step advances by at least one entry; a value that is not such a run (NaN, inf, <= 0,
    > 1, or a run cut short) is refused naming the key, index and value."""
    values = scale.detach().double().reshape(-1).tolist()
    points, i = [], 0
    while i < len(values):
        value = values[i]
        n = round(1 / value) if math.isfinite(value) and 0 < value <= 1 else 0
        run = values[i : i + n]
        if n < 1 or len(run) < n or any(abs(v * n - 1) > 1e-2 for v in run):
            raise CheckpointError(
                f"{_SCALE} holds {value} at index {i} of {values}; expected 1/n repeated n times for each "
                "level (n sampling points)"
            )
        points.append(n)
        i += n
    return points


def _decoder_points(sd: StateDict, preset: dict[str, Any]) -> tuple[list[int], int]:
    """Sampling points per level and attention heads of the decoder's deformable cross-attention."""
    total = _dim(sd, _SCALE, 0)
    scale = sd[_SCALE]
    if _has_values(scale):
        points = _points_from_scale(scale)
    elif sum(preset["decoder_n_points"]) == total:
        points = list(preset["decoder_n_points"])
    else:
        raise CheckpointError(
            f"cannot tell the sampling points per level from a num_points_scale of size {total}"
        )
    rows = _dim(sd, _OFFSETS, 0)
    if rows % (2 * total):
        raise CheckpointError(f"{_OFFSETS} has {rows} rows, not a multiple of 2 x {total} sampling points")
    return points, rows // (2 * total)


def _same(tensor: torch.Tensor, other: torch.Tensor | None) -> bool:
    return other is not None and _has_values(other) and torch.equal(tensor, other)


def _scalar(sd: StateDict, key: str) -> float | None:
    """The finite number stored in ``sd[key]`` (None when absent or without values)."""
    tensor = sd.get(key)
    if tensor is None or not _has_values(tensor):
        return None
    value = float(tensor.reshape(-1)[0]) if tensor.numel() else math.nan
    if not math.isfinite(value):
        raise CheckpointError(f"{key} holds {value}; expected a finite number")
    return value


def _infer_decoder(sd: StateDict, preset: dict[str, Any]) -> dict[str, Any]:
    num_labels = _dim(sd, "decoder.enc_score_head.weight", 0)
    dim = _dim(sd, "decoder.enc_score_head.weight", 1)
    layers = _count(sd, r"decoder\.decoder\.layers\.(\d+)\.")
    points, heads = _decoder_points(sd, preset)
    bbox_heads = _count(sd, r"decoder\.dec_bbox_head\.(\d+)\.")
    first = [k for k in sd if k.startswith("decoder.dec_bbox_head.0.")]
    if bbox_heads == 1 and layers > 1:
        shared = True  # safetensors exports (e.g. the Hugging Face uploads) keep one copy of shared tensors
    elif bbox_heads > 1 and all(_has_values(sd[k]) for k in first):
        shared = all(
            _same(sd[k], sd.get(k.replace("dec_bbox_head.0.", f"dec_bbox_head.{i}.", 1)))
            for i in range(1, bbox_heads)
            for k in first
        )
    else:
        shared = preset["share_bbox_head"]
    values: dict[str, Any] = {
        "num_labels": num_labels,
        "d_model": dim,
        "decoder_layers": layers,
        "decoder_ffn_dim": _dim(sd, "decoder.decoder.layers.0.swish_ffn.w12.weight", 0),
        "decoder_n_points": points,
        "num_feature_levels": len(points),
        "decoder_attention_heads": heads,
        "use_gateway": "decoder.decoder.layers.0.gateway.gate.weight" in sd,
        "share_bbox_head": shared,
        "max_num_bins": _dim(sd, "decoder.dec_bbox_head.0.layers.2.weight", 0) // 4 - 1,
        "lqe_hidden_dim": _dim(sd, "decoder.decoder.lqe_layers.0.reg_conf.layers.0.weight", 0),
        "lqe_top_k": _dim(sd, "decoder.decoder.lqe_layers.0.reg_conf.layers.0.weight", 1) // 4 - 1,
    }
    for name in ("up", "reg_scale"):
        value = _scalar(sd, f"decoder.{name}")
        if value is not None:
            values[name] = value
    return values


def _eval_size_from_anchors(sd: StateDict, strides: list[int]) -> list[int] | None:
    anchors = sd.get("decoder.anchors")
    if anchors is None:
        return None
    if anchors.dim() < 2 or anchors.shape[1] < 1:
        return None  # refused by verify_recomputed_buffers, which names the shape
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
    """Build the :class:`Deimv2Config` of prepared weights (variant inferred when not given).

    A named ``variant`` the weights contradict (they hold another released variant) is refused; unknown
    ``overrides`` keys and invalid values are refused (ValueError naming the key)."""
    check_overrides(config_keys(Deimv2Config), overrides, "DEIMv2")
    kind = detect_backbone(sd)
    backbone = _infer_backbone(sd, kind)
    name = _preset_name(sd, kind, backbone, variant)
    encoder = _infer_encoder(sd)
    decoder = _infer_decoder(sd, PRESETS[name])
    _check_variant(name, kind, {**backbone, **encoder.values, **decoder}, variant is not None, overrides)
    values = {**PRESETS[name], **backbone, **encoder.values, **decoder}
    values.update(_levels(values, kind, encoder.num_aifi))
    values.update(_encoder_width_factors(values, encoder.csp_channels, encoder.csp_blocks))
    eval_size = _eval_size_from_anchors(sd, list(values["decoder_feat_strides"]))
    if eval_size is not None:
        values["eval_image_size"] = eval_size
    num_labels = values.pop("num_labels")
    if num_labels != 80:
        values["id2label"] = {i: f"LABEL_{i}" for i in range(num_labels)}
    values.update(overrides)
    return build_config(Deimv2Config.from_preset, name, **values)


# Values no DEIMv2 weight depends on (taken from the preset), and read values that do not identify a variant.
_UNREADABLE = ("num_queries", "vit_out_indices")
_NOT_COMPARED = ("num_labels", "share_bbox_head", "up", "reg_scale")


def _family_of(name: str) -> str:
    preset = PRESETS[name]
    return "hgnetv2" if preset["backbone_type"] == "hgnetv2" else preset["vit_flavor"]


def _differences(name: str, read: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """(key, preset value, value in the weights) where preset ``name`` and the weights differ, scalars first."""
    preset = PRESETS[name]
    found = [
        (k, preset[k], v)
        for k, v in read.items()
        if k in preset and k not in _NOT_COMPARED and preset[k] != v
    ]
    return sorted(found, key=lambda item: isinstance(item[1], list | tuple))


def _unreadable(name: str) -> dict[str, Any]:
    return {k: PRESETS[name][k] for k in _UNREADABLE if k in PRESETS[name]}


def _unreadable_text(name: str, other: str) -> str:
    return ", ".join(
        f"{k} ({name}: {v}, {other}: {_unreadable(other).get(k)})" for k, v in _unreadable(name).items()
    )


def _check_variant(
    name: str, kind: str, read: dict[str, Any], named: bool, overrides: dict[str, Any]
) -> None:
    """Refuse a named variant when the weights hold another released one; warn when values the weights
    cannot tell come from a preset neither named nor matched by the weights (and not set)."""
    matches = [p for p in PRESETS if _family_of(p) == kind and not _differences(p, read)]
    if named:
        differences = _differences(name, read)
        if differences and matches:
            key, wanted, held = differences[0]
            raise CheckpointError(
                f"--variant {name} has {key}={wanted} but the weights hold {held}, those of variant "
                f"{matches[0]!r}; {_unreadable_text(name, matches[0])} cannot be read from the weights, so a "
                f"wrong --variant silently changes it: pass --variant {matches[0]} or none"
            )
        return
    guessed = {k: v for k, v in _unreadable(name).items() if k not in overrides}
    if name not in matches and guessed:
        settings = " ".join(f"--set {k}=..." for k in guessed)
        logger.warning(
            "DEIMv2 weights of no released size: %s cannot be read from them and were guessed from the "
            "nearest variant %r; pass --variant NAME or %s",
            ", ".join(f"{k}={v}" for k, v in guessed.items()), name, settings,
        )  # fmt: skip


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
