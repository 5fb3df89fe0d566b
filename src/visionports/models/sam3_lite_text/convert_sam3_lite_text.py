"""Conversion of released SAM3-LiteText checkpoints (SimonZeng7108/efficientsam3, branch sam3_litetext).

Released files are ``{"model": state_dict}`` with keys ``detector.<Sam3Image key>``; the student text encoder
lives under ``detector.backbone.language_backbone.``. A full file converts to ``Sam3LiteTextModel`` (text encoder +
SAM3 detector built from transformers' SAM3 parts, see ``detector_sam3_lite_text``); a file holding only the text
encoder converts to ``Sam3LiteTextTextModel``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch

from ...core.checkpoint import CheckpointError
from ...core.key_mapping import KeyMapping, MappedStateDict, Rename, Skip
from .configuration_sam3_lite_text import (
    DETECTOR_DEFAULTS,
    TEXT_PRESETS,
    Sam3LiteTextConfig,
    Sam3LiteTextTextConfig,
)
from .detector_sam3_lite_text import detector_key_mapping

TEXT_PREFIX = "backbone.language_backbone."
StateDict = Mapping[str, torch.Tensor]


def strip_prefixes(sd: StateDict) -> dict[str, torch.Tensor]:
    """Drop ``module.`` / ``detector.`` / ``student_trunk.`` prefixes as the original loader does."""
    out = dict(sd)
    for prefix in ("module.", "detector.", "student_trunk."):
        out = {(k[len(prefix) :] if k.startswith(prefix) else k): v for k, v in out.items()}
    return out


def _text(sd: StateDict, key: str) -> torch.Tensor:
    full = TEXT_PREFIX + key
    if full not in sd:
        raise CheckpointError(f"not a SAM3-LiteText checkpoint: expected {('detector.' + full)!r}")
    return sd[full]


def guess_variant(sd: StateDict) -> str:
    sd = strip_prefixes(sd)
    dim = _text(sd, "encoder.embedding_layer.weight").shape[1]
    if f"{TEXT_PREFIX}encoder.transformer.0.token_mixer.layer_scale" in sd:
        return "s0"
    return "l" if dim >= 768 else "s1"


def has_detector(sd: StateDict) -> bool:
    return any(k.startswith("backbone.vision_backbone.") for k in sd)


def infer_detector(sd: StateDict) -> dict[str, Any]:
    """SAM3 detector widths readable from the weights (the rest keep the released values)."""
    trunk = "backbone.vision_backbone.trunk."
    values: dict[str, Any] = {}
    if trunk + "patch_embed.proj.weight" in sd:
        dim, _, patch, _ = sd[trunk + "patch_embed.proj.weight"].shape
        values.update(vit_embed_dim=dim, patch_size=patch)
        blocks = sorted(
            {int(m.group(1)) for k in sd if (m := re.match(re.escape(trunk) + r"blocks\.(\d+)\.", k))}
        )
        values["vit_depth"] = len(blocks)
        values["vit_mlp_ratio"] = sd[f"{trunk}blocks.0.mlp.fc1.weight"].shape[0] / dim
        if trunk + "pos_embed" in sd:
            values["pretrain_img_size"] = round((sd[trunk + "pos_embed"].shape[1] - 1) ** 0.5) * patch
        rows = {
            i: sd[f"{trunk}blocks.{i}.attn.freqs_cis"].shape
            for i in blocks
            if f"{trunk}blocks.{i}.attn.freqs_cis" in sd
        }
        if rows:
            longest = max(r[0] for r in rows.values())
            window = min(r[0] for r in rows.values())
            values["vit_heads"] = dim // (2 * next(iter(rows.values()))[1])
            values["vit_global_att_blocks"] = [i for i, r in rows.items() if r[0] == longest]
            values["image_size"] = round(longest**0.5) * patch
            values["vit_window_size"] = round(window**0.5) if window != longest else round(longest**0.5)
    if "transformer.encoder.layers.0.linear1.weight" in sd:
        values["ffn_dim"], values["d_model"] = sd["transformer.encoder.layers.0.linear1.weight"].shape
    if "transformer.decoder.query_embed.weight" in sd:
        values["num_queries"] = sd["transformer.decoder.query_embed.weight"].shape[0]
    return values


def infer_config(
    sd: StateDict, variant: str | None = None, **overrides: Any
) -> Sam3LiteTextConfig | Sam3LiteTextTextConfig:
    """The full configuration (text + detector) of a released file, or the text encoder's alone.

    Text heads default to width / 64 (every release); detector values the weights cannot tell (its
    attention heads) keep the released numbers. ``detector`` in ``overrides`` updates detector widths.
    """
    sd = strip_prefixes(sd)
    detector = overrides.pop("detector", {})
    text = infer_text_config(sd, variant, **overrides)
    if not has_detector(sd):
        return text
    widths = {**DETECTOR_DEFAULTS, **infer_detector(sd), **detector}
    return Sam3LiteTextConfig(variant=text.variant, text_config=text, detector=widths)


def infer_text_config(sd: StateDict, variant: str | None = None, **overrides: Any) -> Sam3LiteTextTextConfig:
    """Text-encoder configuration from the weights (heads default to width / 64, as in every release)."""
    vocab, dim = _text(sd, "encoder.embedding_layer.weight").shape
    name = variant or guess_variant(sd)
    if name not in TEXT_PRESETS:
        raise CheckpointError(
            f"unknown SAM3-LiteText variant {variant!r}; choose from {', '.join(TEXT_PRESETS)}"
        )
    blocks = {
        int(m.group(1))
        for k in sd
        if (m := re.match(re.escape(TEXT_PREFIX) + r"encoder\.transformer\.(\d+)\.", k))
    }
    attention = [
        i
        for i in sorted(blocks)
        if f"{TEXT_PREFIX}encoder.transformer.{i}.pre_norm_mha.1.qkv_proj.weight" in sd
    ]
    mct = f"{TEXT_PREFIX}encoder.transformer.0.token_mixer.layer_scale" in sd
    if (TEXT_PRESETS[name]["layout"] == "mct") != mct:
        raise CheckpointError(
            f"the weights hold a {'mct' if mct else 'base'} text encoder but variant {name!r} does not"
        )
    fc1 = _text(sd, f"encoder.transformer.{attention[0]}.pre_norm_ffn.1.weight").shape[0]
    values: dict[str, Any] = {
        "layout": "mct" if mct else "base",
        "vocab_size": vocab,
        "hidden_size": dim,
        "num_transformer_layers": len(attention),
        "num_attention_heads": max(1, dim // 64),
        "ffn_multiplier": fc1 / dim,
        "projection_dim": _text(sd, "projector.weight").shape[0],
    }
    values.update(overrides)
    return Sam3LiteTextTextConfig.from_preset(name, **values)


def key_mapping(config: Sam3LiteTextConfig | Sam3LiteTextTextConfig) -> KeyMapping:
    """Text rules (prefixed ``text_model.`` for the full model) + the detector's rules (prefixed ``detector.``)."""
    if isinstance(config, Sam3LiteTextTextConfig):
        return KeyMapping(text_rules())
    detector = [r for r in detector_key_mapping() if "language_backbone" not in r.pattern]
    prefix_text = Rename(r"^(token_embedding|position_embedding|layers|final_layer_norm|text_projection|projector)\b",
                         r"text_model.\1")  # fmt: skip
    unused = [
        Skip(r"backbone\.vision_backbone\.sam2_convs\..*",
             "SAM2-style second neck, built only for interactive (point/box) instance prediction"),
        Skip(r"tracker\..*", "SAM3 video tracker weights copied from facebook/sam3; not part of the image model"),
    ]  # fmt: skip
    prefix_detector = Rename(
        r"^(vision_encoder|geometry_encoder|detr_encoder|detr_decoder|mask_decoder|dot_product_scoring)\.",
        r"detector.\1.",
    )
    return KeyMapping([*unused, *text_rules(), prefix_text, *detector, prefix_detector])


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


def convert_state_dict(sd: StateDict, config: Sam3LiteTextConfig | Sam3LiteTextTextConfig) -> MappedStateDict:
    """Map a released state dict. The stored 77-row text position table is sliced to ``context_length`` rows
    (what the released inference does; never interpolated) and the ViT position table loses its unused
    pre-training CLS row."""
    sd = strip_prefixes(sd)
    context = (config.text if isinstance(config, Sam3LiteTextConfig) else config).context_length
    key = f"{TEXT_PREFIX}encoder.positional_embedding.pos_embed.pos_embed"
    table = sd.get(key)
    if table is not None:
        rows = table.reshape(-1, table.shape[-1])
        if rows.shape[0] < context:
            raise CheckpointError(
                f"the position table has {rows.shape[0]} rows, fewer than context_length {context}"
            )
        sd[key] = rows[:context]
    vit_table = sd.get("backbone.vision_backbone.trunk.pos_embed")
    if vit_table is not None and round((vit_table.shape[1] - 1) ** 0.5) ** 2 == vit_table.shape[1] - 1:
        sd["backbone.vision_backbone.trunk.pos_embed"] = vit_table[:, 1:]  # drop the pre-training CLS row
    return key_mapping(config).apply(sd)
