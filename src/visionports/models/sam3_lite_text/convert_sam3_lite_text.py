"""Conversion of released SAM3-LiteText checkpoints (SimonZeng7108/efficientsam3, branch sam3_litetext).

Released files are ``{"model": state_dict}`` with keys ``detector.<Sam3Image key>``; the student text encoder
lives under ``detector.backbone.language_backbone.``. A full file converts to ``Sam3LiteTextModel`` (text encoder +
SAM3 detector built from transformers' SAM3 parts, see ``detector_sam3_lite_text``); a file holding only the text
encoder converts to ``Sam3LiteTextTextModel``.

Every function here but :func:`strip_prefixes` reads prepared weights: the ``module.`` / ``detector.`` /
``student_trunk.`` prefixes already dropped once by :func:`strip_prefixes` (the family's ``prepare_state_dict``).
"""

from __future__ import annotations

import logging
import re
from typing import Any

import torch

from ...core.checkpoint import CheckpointError
from ...core.key_mapping import KeyMapping, MappedStateDict, Rename, Rule, Skip, Split
from ...core.state_dict import (
    StateDict,
    block_indices,
    build_config,
    check_overrides,
    config_keys,
    dim_of,
    strip_key_prefixes,
)
from .configuration_sam3_lite_text import (
    DETECTOR_DEFAULTS,
    TEXT_PRESETS,
    Sam3LiteTextConfig,
    Sam3LiteTextTextConfig,
)
from .convert_tracker_sam3_lite_text import (
    TIED,
    add_tied_copies,
    fpn_neck_key_mapping,
    infer_tracker,
    tracker_key_mapping,
)

TEXT_PREFIX = "backbone.language_backbone."
VIT_POSITIONS = "backbone.vision_backbone.trunk.pos_embed"
WRAPPER_PREFIXES = ("module.", "detector.", "student_trunk.")
logger = logging.getLogger(__name__)


def strip_prefixes(sd: StateDict) -> dict[str, torch.Tensor]:
    """Raw weights -> prepared ones: drop ``module.`` / ``detector.`` / ``student_trunk.`` prefixes as the original
    loader does."""
    return strip_key_prefixes(sd, WRAPPER_PREFIXES)


def _text(sd: StateDict, key: str) -> torch.Tensor:
    full = TEXT_PREFIX + key
    if full not in sd:
        raise CheckpointError(f"not a SAM3-LiteText checkpoint: expected {('detector.' + full)!r}")
    return sd[full]


def guess_variant(sd: StateDict) -> str:
    """Released text-encoder variant of prepared weights."""
    dim = _text(sd, "encoder.embedding_layer.weight").shape[1]
    if f"{TEXT_PREFIX}encoder.transformer.0.token_mixer.layer_scale" in sd:
        return "s0"
    return "l" if dim >= 768 else "s1"


def has_detector(sd: StateDict) -> bool:
    return any(k.startswith("backbone.vision_backbone.") for k in sd)


def _dim(sd: StateDict, key: str, axis: int, minimum: int = 1) -> int:
    return dim_of(sd, key, axis, "SAM3-LiteText", minimum)


def _vit_rope(sd: StateDict, trunk: str, blocks: list[int], dim: int, patch: int) -> dict[str, Any]:
    """ViT heads, global-attention blocks, input size and window from the stored RoPE tables (rows, half head)."""
    rows = {
        i: (_dim(sd, key, 0), _dim(sd, key, 1))
        for i in blocks
        if (key := f"{trunk}blocks.{i}.attn.freqs_cis") in sd
    }
    if not rows:
        return {}
    longest = max(r[0] for r in rows.values())
    window = min(r[0] for r in rows.values())
    head = 2 * next(iter(rows.values()))[1]
    if dim % head:
        raise CheckpointError(f"the ViT width {dim} is not a multiple of the head width {head} (freqs_cis)")
    return {
        "vit_heads": dim // head,
        "vit_global_att_blocks": [i for i, r in rows.items() if r[0] == longest],
        "image_size": round(longest**0.5) * patch,
        "vit_window_size": round(window**0.5) if window != longest else round(longest**0.5),
    }


def infer_detector(sd: StateDict) -> dict[str, Any]:
    """SAM3 detector widths readable from the weights (the rest keep the released values)."""
    trunk = "backbone.vision_backbone.trunk."
    values: dict[str, Any] = {}
    if trunk + "patch_embed.proj.weight" in sd:
        dim, patch = (
            _dim(sd, trunk + "patch_embed.proj.weight", 0),
            _dim(sd, trunk + "patch_embed.proj.weight", 3),
        )
        values.update(vit_embed_dim=dim, patch_size=patch)
        blocks = block_indices(sd, re.escape(trunk) + r"blocks\.(\d+)\.")
        values["vit_depth"] = len(blocks)
        values["vit_mlp_ratio"] = _dim(sd, f"{trunk}blocks.0.mlp.fc1.weight", 0) / dim
        if trunk + "pos_embed" in sd:
            values["pretrain_img_size"] = round((_dim(sd, trunk + "pos_embed", 1, 2) - 1) ** 0.5) * patch
        values.update(_vit_rope(sd, trunk, blocks, dim, patch))
    if "transformer.encoder.layers.0.linear1.weight" in sd:
        values["ffn_dim"] = _dim(sd, "transformer.encoder.layers.0.linear1.weight", 0)
        values["d_model"] = _dim(sd, "transformer.encoder.layers.0.linear1.weight", 1)
    if "transformer.decoder.query_embed.weight" in sd:
        values["num_queries"] = _dim(sd, "transformer.decoder.query_embed.weight", 0)
    return values


_OUTER_KEYS = ("detector", "threshold", "mask_threshold", "tracker")


def infer_config(
    sd: StateDict, variant: str | None = None, **overrides: Any
) -> Sam3LiteTextConfig | Sam3LiteTextTextConfig:
    """The full configuration (text + detector) of a released file's prepared weights, or the text encoder's alone.

    Text heads default to width / 64 (every release; a warning says so when the width is not a release's);
    detector values the weights cannot tell (its attention heads) keep the released numbers. ``detector`` in
    ``overrides`` updates detector widths; ``threshold`` / ``mask_threshold`` set the full model's. Unknown keys
    and invalid values are refused.
    """
    full = has_detector(sd)
    known = config_keys(Sam3LiteTextTextConfig) | set(_OUTER_KEYS if full else ())
    check_overrides(known, overrides, "SAM3-LiteText" if full else "SAM3-LiteText text-encoder")
    outer = {key: overrides.pop(key) for key in _OUTER_KEYS if key in overrides}
    detector = outer.pop("detector", {})
    if not isinstance(detector, dict):
        raise ValueError(f"the detector setting must be a mapping of detector widths, got {detector!r}")
    check_overrides(DETECTOR_DEFAULTS, detector, "SAM3-LiteText detector")
    text = infer_text_config(sd, variant, **overrides)
    if not full:
        return text
    widths = {**DETECTOR_DEFAULTS, **infer_detector(sd), **detector}
    if "tracker" not in outer:  # read from the weights; ``tracker=None`` converts without it
        outer["tracker"] = infer_tracker(sd, widths)
    return build_config(Sam3LiteTextConfig, variant=text.variant, text_config=text, detector=widths, **outer)


def _text_dims(sd: StateDict) -> tuple[int, int, list[int]]:
    """Vocabulary, width and the attention blocks of the text encoder's (prepared) weights."""
    _text(sd, "encoder.embedding_layer.weight")
    key = TEXT_PREFIX + "encoder.embedding_layer.weight"
    vocab, dim = _dim(sd, key, 0), _dim(sd, key, 1)
    blocks = block_indices(sd, re.escape(TEXT_PREFIX) + r"encoder\.transformer\.(\d+)\.")
    attention = [
        i for i in blocks if f"{TEXT_PREFIX}encoder.transformer.{i}.pre_norm_mha.1.qkv_proj.weight" in sd
    ]
    if not attention:
        raise CheckpointError(f"no attention block under {TEXT_PREFIX}encoder.transformer.*.pre_norm_mha")
    return vocab, dim, attention


def _same_size(preset: str, read: dict[str, Any]) -> bool:
    return all(
        TEXT_PRESETS[preset][k] == read[k] for k in ("layout", "hidden_size", "num_transformer_layers")
    )


def _check_text_variant(name: str, read: dict[str, Any], named: bool, overrides: dict[str, Any]) -> None:
    """Refuse a named variant when the weights hold another release's sizes; warn when the heads are
    guessed for a width no release has."""
    matches = [p for p in TEXT_PRESETS if _same_size(p, read)]
    if named and matches and name not in matches:
        preset = TEXT_PRESETS[name]
        raise CheckpointError(
            f"--variant {name} has hidden_size={preset['hidden_size']}, num_transformer_layers="
            f"{preset['num_transformer_layers']} but the weights hold {read['hidden_size']}, "
            f"{read['num_transformer_layers']}, those of variant {matches[0]!r}: pass --variant {matches[0]} or none"
        )
    if not matches and "num_attention_heads" not in overrides:
        logger.warning(
            "SAM3-LiteText: the weights cannot tell the text encoder's attention heads; guessed "
            "num_attention_heads=%d (hidden_size %d // 64, as in every release); set it if the checkpoint "
            "differs: --set num_attention_heads=N",
            read["num_attention_heads"], read["hidden_size"],
        )  # fmt: skip


def infer_text_config(sd: StateDict, variant: str | None = None, **overrides: Any) -> Sam3LiteTextTextConfig:
    """Text-encoder configuration from prepared weights (heads default to width / 64, as in every release)."""
    check_overrides(config_keys(Sam3LiteTextTextConfig), overrides, "SAM3-LiteText text-encoder")
    vocab, dim, attention = _text_dims(sd)
    name = variant or guess_variant(sd)
    if name not in TEXT_PRESETS:
        raise CheckpointError(
            f"unknown SAM3-LiteText variant {variant!r}; choose from {', '.join(TEXT_PRESETS)}"
        )
    mct = f"{TEXT_PREFIX}encoder.transformer.0.token_mixer.layer_scale" in sd
    if (TEXT_PRESETS[name]["layout"] == "mct") != mct:
        raise CheckpointError(
            f"the weights hold a {'mct' if mct else 'base'} text encoder but variant {name!r} does not"
        )
    fc1 = _dim(sd, f"{TEXT_PREFIX}encoder.transformer.{attention[0]}.pre_norm_ffn.1.weight", 0)
    values: dict[str, Any] = {
        "layout": "mct" if mct else "base",
        "vocab_size": vocab,
        "hidden_size": dim,
        "num_transformer_layers": len(attention),
        "num_attention_heads": max(1, dim // 64),
        "ffn_multiplier": fc1 / dim,
        "projection_dim": _dim(sd, TEXT_PREFIX + "projector.weight", 0),
    }
    _check_text_variant(name, values, variant is not None, overrides)
    values.update(overrides)
    return build_config(Sam3LiteTextTextConfig.from_preset, name, **values)


def key_mapping(config: Sam3LiteTextConfig | Sam3LiteTextTextConfig) -> KeyMapping:
    """Text rules (prefixed ``text_model.`` for the full model) + the detector's rules (prefixed ``detector.``)."""
    if isinstance(config, Sam3LiteTextTextConfig):
        return KeyMapping(text_rules())
    detector = detector_key_mapping()
    prefix_text = Rename(r"^(token_embedding|position_embedding|layers|final_layer_norm|text_projection|projector)\b",
                         r"text_model.\1")  # fmt: skip
    if config.tracker is not None:  # first: tracker keys leave the detector's name space before its rules run
        tracker = tracker_key_mapping()
    else:
        tracker = [
            Skip(r"backbone\.vision_backbone\.sam2_convs\..*",
                 "SAM2-style second neck of the tracker; this folder is converted without the tracker"),
            Skip(r"tracker\..*", "SAM3 tracker weights; this folder is converted without the tracker"),
        ]  # fmt: skip
    prefix_detector = Rename(
        r"^(vision_encoder|geometry_encoder|detr_encoder|detr_decoder|mask_decoder|dot_product_scoring)\.",
        r"detector.\1.",
    )
    return KeyMapping([*tracker, *text_rules(), prefix_text, *detector, prefix_detector])


QKV = (r"\1.q_proj.\2", r"\1.k_proj.\2", r"\1.v_proj.\2")


def _attention(prefix: str, original: str, ours: str) -> list[Rule]:
    """Rules for one ``nn.MultiheadAttention`` (fused in-projection) under ``prefix``."""
    return [
        Rename(rf"^({prefix})\.{original}\.in_proj_(weight|bias)$", rf"\1.{ours}.in_proj.\2"),
        Rename(rf"^({prefix})\.{original}\.out_proj\.", rf"\1.{ours}.o_proj."),
        Split(rf"(.*\.{ours})\.in_proj\.(weight|bias)", QKV),
    ]


def _mlp(path: str, num_layers: int) -> list[Rule]:
    """Rules for an original ``MLP`` (``layers.i``) at ``path`` onto a ``Sam3DecoderMLP`` (``layer{i+1}``)."""
    return [Rename(rf"^({path})\.layers\.{i}\.", rf"\1.layer{i + 1}.") for i in range(num_layers)]


def detector_key_mapping() -> list[Rule]:
    """Rules from original detector keys (``detector.`` prefix stripped) to :class:`Sam3LiteTextDetector` keys."""
    vit = r"vision_encoder\.backbone"
    enc = r"detr_encoder\.layers\.\d+"
    geo = r"geometry_encoder\.layers\.\d+"
    dec = r"detr_decoder\.layers\.\d+"
    rules: list[Rule] = [
        Skip(r".*\.attn\.freqs_cis", "RoPE table, recomputed by Sam3ViTRotaryEmbedding"),
        # ViT trunk
        Rename(r"^backbone\.vision_backbone\.trunk\.", "vision_encoder.backbone."),
        Rename(rf"^({vit})\.pos_embed$", r"\1.embeddings.position_embeddings"),
        Rename(rf"^({vit})\.patch_embed\.proj\.", r"\1.embeddings.patch_embeddings.projection."),
        Rename(rf"^({vit})\.ln_pre\.", r"\1.layer_norm."),
        Rename(rf"^({vit})\.blocks\.(\d+)\.norm(\d)\.", r"\1.layers.\2.layer_norm\3."),
        Rename(rf"^({vit})\.blocks\.(\d+)\.attn\.proj\.", r"\1.layers.\2.attention.o_proj."),
        Rename(rf"^({vit})\.blocks\.(\d+)\.attn\.qkv\.", r"\1.layers.\2.attention.qkv."),
        Rename(rf"^({vit})\.blocks\.(\d+)\.mlp\.", r"\1.layers.\2.mlp."),
        Split(r"(.*\.attention)\.qkv\.(weight|bias)", QKV),
        # FPN neck
        *fpn_neck_key_mapping("convs", "vision_encoder.neck"),
        # geometry encoder (points_* and boxes_* keep their names)
        Rename(r"^geometry_encoder\.encode\.(\d+)\.", r"geometry_encoder.layers.\1."),
        Rename(r"^geometry_encoder\.img_pre_norm\.", "geometry_encoder.vision_layer_norm."),
        Rename(r"^geometry_encoder\.norm\.", "geometry_encoder.prompt_layer_norm."),
        Rename(r"^geometry_encoder\.encode_norm\.", "geometry_encoder.output_layer_norm."),
        # DETR encoder
        Rename(r"^transformer\.encoder\.layers\.", "detr_encoder.layers."),
    ]
    for layer in (enc, geo):
        rules += [
            *_attention(layer, "self_attn", "self_attn"),
            *_attention(layer, "cross_attn_image", "cross_attn"),
            Rename(rf"^({layer})\.norm(\d)\.", r"\1.layer_norm\2."),
            Rename(rf"^({layer})\.linear1\.", r"\1.mlp.fc1."),
            Rename(rf"^({layer})\.linear2\.", r"\1.mlp.fc2."),
        ]
    rules += [
        # DETR decoder
        Rename(r"^transformer\.decoder\.", "detr_decoder."),
        *_attention(dec, "cross_attn", "vision_cross_attn"),
        *_attention(dec, "ca_text", "text_cross_attn"),
        *_attention(dec, "self_attn", "self_attn"),
        Rename(rf"^({dec})\.norm1\.", r"\1.vision_cross_attn_layer_norm."),
        Rename(rf"^({dec})\.catext_norm\.", r"\1.text_cross_attn_layer_norm."),
        Rename(rf"^({dec})\.norm2\.", r"\1.self_attn_layer_norm."),
        Rename(rf"^({dec})\.norm3\.", r"\1.mlp_layer_norm."),
        Rename(rf"^({dec})\.linear1\.", r"\1.mlp.fc1."),
        Rename(rf"^({dec})\.linear2\.", r"\1.mlp.fc2."),
        Rename(r"^detr_decoder\.norm\.", "detr_decoder.output_layer_norm."),
        Rename(r"^detr_decoder\.presence_token_out_norm\.", "detr_decoder.presence_layer_norm."),
        Rename(r"^detr_decoder\.boxRPB_embed_(x|y)\.", r"detr_decoder.box_rpb_embed_\1."),
        Rename(r"^detr_decoder\.bbox_embed\.", "detr_decoder.box_head."),
        Rename(r"^detr_decoder\.presence_token_head\.", "detr_decoder.presence_head."),
        *_mlp(r"detr_decoder\.(?:box_head|presence_head)", 3),
        *_mlp(r"detr_decoder\.(?:ref_point_head|box_rpb_embed_x|box_rpb_embed_y)", 2),
        # dot-product scoring
        Rename(r"^dot_prod_scoring\.", "dot_product_scoring."),
        Rename(r"^dot_product_scoring\.prompt_mlp\.out_norm\.", "dot_product_scoring.text_mlp_out_norm."),
        Rename(r"^dot_product_scoring\.prompt_mlp\.", "dot_product_scoring.text_mlp."),
        *_mlp(r"dot_product_scoring\.text_mlp", 2),
        Rename(r"^dot_product_scoring\.prompt_proj\.", "dot_product_scoring.text_proj."),
        Rename(r"^dot_product_scoring\.hs_proj\.", "dot_product_scoring.query_proj."),
        # segmentation head
        Rename(r"^segmentation_head\.", "mask_decoder."),
        Rename(r"^mask_decoder\.mask_predictor\.mask_embed\.", "mask_decoder.mask_embedder."),
        *_attention("mask_decoder", "cross_attend_prompt", "prompt_cross_attn"),
        Rename(r"^mask_decoder\.cross_attn_norm\.", "mask_decoder.prompt_cross_attn_norm."),
        Rename(r"^mask_decoder\.semantic_seg_head\.", "mask_decoder.semantic_projection."),
        Rename(r"^mask_decoder\.instance_seg_head\.", "mask_decoder.instance_projection."),
    ]
    return rules


def text_rules() -> list:
    """Original text-encoder key names -> ``Sam3LiteTextTextModel`` names."""
    t = re.escape(TEXT_PREFIX)
    block = rf"^{t}encoder\.transformer\.(\d+)\."
    return [
        Rename(block + r"pre_norm_mha\.0\.", r"layers.\1.norm1."),
        Rename(block + r"pre_norm_mha\.1\.", r"layers.\1.attention."),
        Rename(block + r"pre_norm_ffn\.0\.", r"layers.\1.norm2."),
        Rename(block + r"pre_norm_ffn\.1\.", r"layers.\1.fc1."),
        Rename(block + r"pre_norm_ffn\.4\.", r"layers.\1.fc2."),
        Rename(block + r"layer_scale$", r"layers.\1.ffn_scale"),
        Rename(block + r"token_mixer\.layer_scale$", r"layers.\1.mixer_scale"),
        Rename(block + r"token_mixer\.norm\.rbr_skip\.", r"layers.\1.norm_skip."),
        Rename(block + r"token_mixer\.mixer\.rbr_skip\.", r"layers.\1.mixer_skip."),
        Rename(block + r"token_mixer\.mixer\.rbr_conv\.0\.", r"layers.\1.mixer_conv."),
        Rename(block + r"convffn\.conv\.", r"layers.\1.ffn_conv."),
        Rename(block + r"convffn\.(fc[12])\.", r"layers.\1.\2."),
        Rename(rf"^{t}encoder\.embedding_layer\.", "token_embedding."),
        Rename(rf"^{t}encoder\.positional_embedding\.pos_embed\.pos_embed$", "position_embedding"),
        Rename(rf"^{t}encoder\.final_layer_norm\.", "final_layer_norm."),
        Rename(rf"^{t}encoder\.projection_layer$", "text_projection"),
        Rename(rf"^{t}projector\.", "projector."),
    ]  # fmt: skip


def filter_checkpoint(sd: StateDict, context_length: int) -> dict[str, torch.Tensor]:
    """Released tables to the port's shapes (timm's ``checkpoint_filter_fn``): the stored 77-row text position
    table is sliced to ``context_length`` rows (what the released inference does; never interpolated) and the
    ViT position table loses its unused pre-training CLS row. The model itself never reshapes loaded tables."""
    out = dict(sd)
    key = f"{TEXT_PREFIX}encoder.positional_embedding.pos_embed.pos_embed"
    table = out.get(key)
    if table is not None:
        rows = table.reshape(-1, table.shape[-1])
        if rows.shape[0] < context_length:
            raise CheckpointError(
                f"the position table has {rows.shape[0]} rows, fewer than context_length {context_length}"
            )
        out[key] = rows[:context_length]
    vit_table = out.get(VIT_POSITIONS)
    if vit_table is not None and round((vit_table.shape[1] - 1) ** 0.5) ** 2 == vit_table.shape[1] - 1:
        out[VIT_POSITIONS] = vit_table[:, 1:]
    return out


def convert_state_dict(sd: StateDict, config: Sam3LiteTextConfig | Sam3LiteTextTextConfig) -> MappedStateDict:
    """Map prepared weights (tables filtered by :func:`filter_checkpoint`) to our names."""
    context = (config.text if isinstance(config, Sam3LiteTextConfig) else config).context_length
    mapped = key_mapping(config).apply(filter_checkpoint(sd, context))
    if isinstance(config, Sam3LiteTextConfig) and config.tracker is not None:
        tied = add_tied_copies(mapped.tensors)
        mapped.source.update({key: mapped.source[TIED[key]] for key in tied if key not in mapped.tensors})
        mapped.tensors = tied
    return mapped
