"""Conversion of released SAM3-LiteText checkpoints (SimonZeng7108/efficientsam3, branch sam3_litetext).

Released files are ``{"model": state_dict}`` with keys ``detector.<Sam3Image key>``; the student text encoder
lives under ``detector.backbone.language_backbone.``. This converter ports the text encoder; the SAM3 detector is
not ported yet, so a full released file reports its detector keys as unexpected (``--allow-partial`` converts
the text encoder alone).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch

from ...checkpoint import CheckpointError
from ...key_mapping import KeyMapping, MappedStateDict, Rename
from .configuration_sam3_lite_text import TEXT_PRESETS, Sam3LiteTextTextConfig

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


def infer_config(sd: StateDict, variant: str | None = None, **overrides: Any) -> Sam3LiteTextTextConfig:
    """Text-encoder configuration from the weights (heads default to width / 64, as in every release)."""
    sd = strip_prefixes(sd)
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


def key_mapping(config: Sam3LiteTextTextConfig) -> KeyMapping:
    t = re.escape(TEXT_PREFIX)
    block = rf"^{t}encoder\.transformer\.(\d+)\."
    return KeyMapping([
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
    ])  # fmt: skip


def convert_state_dict(sd: StateDict, config: Sam3LiteTextTextConfig) -> MappedStateDict:
    """Map a released state dict; the stored 77-row position table is sliced to ``context_length`` rows
    (what the released inference does; the table is never interpolated)."""
    sd = strip_prefixes(sd)
    key = f"{TEXT_PREFIX}encoder.positional_embedding.pos_embed.pos_embed"
    table = sd.get(key)
    if table is not None:
        rows = table.reshape(-1, table.shape[-1])
        if rows.shape[0] < config.context_length:
            raise CheckpointError(
                f"the position table has {rows.shape[0]} rows, fewer than context_length {config.context_length}"
            )
        sd[key] = rows[: config.context_length]
    return key_mapping(config).apply(sd)
