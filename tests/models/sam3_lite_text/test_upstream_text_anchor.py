"""Upstream ``transformers`` Sam3LiteTextTextModel (5.23) as a black-box anchor for our text encoder.

Same random weights, mapped into our layout. Upstream agrees with ours (and the original) only when its
position table already has the context length and no attention mask is passed: with the released 77-row table
it *interpolates* the positions to 16 rows (the original slices), and a passed attention mask hides padding
inside the encoder (the original attends to it).
"""

from __future__ import annotations

import re

import pytest
import torch
from transformers.models.sam3_lite_text.configuration_sam3_lite_text import (
    Sam3LiteTextTextConfig as UpstreamConfig,
)
from transformers.models.sam3_lite_text.modeling_sam3_lite_text import Sam3LiteTextTextModel as UpstreamText

from visionports.models.sam3_lite_text import (
    Sam3LiteTextTextConfig,
    Sam3LiteTextTextModel,
    Sam3LiteTextTokenizer,
)

_NAMES = [
    (r"^embeddings\.token_embedding\.", "token_embedding."),
    (r"^layers\.(\d+)\.layer_scale$", r"layers.\1.ffn_scale"),
    (r"^layers\.(\d+)\.token_mixer\.layer_scale$", r"layers.\1.mixer_scale"),
    (r"^layers\.(\d+)\.token_mixer\.reference_batchnorm\.", r"layers.\1.norm_skip."),
    (r"^layers\.(\d+)\.token_mixer\.mixer\.batchnorm_skip\.", r"layers.\1.mixer_skip."),
    (r"^layers\.(\d+)\.token_mixer\.mixer\.conv\.", r"layers.\1.mixer_conv.conv."),
    (r"^layers\.(\d+)\.token_mixer\.mixer\.batchnorm_conv\.", r"layers.\1.mixer_conv.bn."),
    (r"^layers\.(\d+)\.conv_feed_forward\.depthwise_conv\.", r"layers.\1.ffn_conv.conv."),
    (r"^layers\.(\d+)\.conv_feed_forward\.depthwise_batchnorm\.", r"layers.\1.ffn_conv.bn."),
    (r"^layers\.(\d+)\.conv_feed_forward\.mlp\.", r"layers.\1."),
    (r"^layers\.(\d+)\.layer_norm([12])\.", r"layers.\1.norm\2."),
    (r"^layers\.(\d+)\.self_attn\.out_proj\.", r"layers.\1.attention.out_proj."),
    (r"^layers\.(\d+)\.mlp\.", r"layers.\1."),
]


def _ours_from_upstream(upstream: UpstreamText, context_length: int) -> dict[str, torch.Tensor]:
    sd = upstream.state_dict()
    out: dict[str, torch.Tensor] = {}
    for key, value in sd.items():
        if re.search(r"self_attn\.[qkv]_proj\.", key):
            if ".q_proj." in key:
                kind = key.rsplit(".", 1)[1]
                parts = [sd[key.replace("q_proj", p)] for p in ("q_proj", "k_proj", "v_proj")]
                out[re.sub(r"self_attn\.q_proj\..*", f"attention.qkv_proj.{kind}", key)] = torch.cat(parts)
            continue
        name = key
        for pattern, replacement in _NAMES:
            name = re.sub(pattern, replacement, name)
        out[name] = value
    table = out.pop("embeddings.position_embedding.position_embedding")
    out["position_embedding"] = table.reshape(-1, table.shape[-1])[:context_length]
    out["text_projection"] = out.pop("projection.weight").T.contiguous()
    return out


def _pair(table_rows: int, layout: str = "mct") -> tuple[UpstreamText, Sam3LiteTextTextModel]:
    torch.manual_seed(0)
    upstream = UpstreamText(UpstreamConfig(hidden_size=32, num_attention_heads=4, vocab_size=49408, num_hidden_layers=6,
                                           intermediate_size=128, projection_dim=32, use_repmixer_blocks=layout == "mct",
                                           max_position_embeddings=table_rows)).eval()  # fmt: skip
    with torch.no_grad():
        for name, p in upstream.named_parameters():
            p.copy_(
                torch.randn_like(p) * (0.3 if p.ndim > 1 else 0.1)
                + (1.0 if "norm" in name and "weight" in name else 0.0)
            )
        for name, b in upstream.named_buffers():
            if "running_var" in name:
                b.uniform_(0.5, 1.5)
            elif "running_mean" in name:
                b.normal_(0, 0.1)
    preset = "s0" if layout == "mct" else "s1"
    layers = {} if layout == "mct" else {"num_transformer_layers": 6}
    config = Sam3LiteTextTextConfig.from_preset(preset, hidden_size=32, num_attention_heads=4, **layers)
    ours = Sam3LiteTextTextModel(config).eval()
    missing, unexpected = ours.load_state_dict(_ours_from_upstream(upstream, 16), strict=False)
    assert not unexpected and set(missing) == {"projector.weight", "projector.bias"}
    return upstream, ours


@pytest.mark.parametrize("layout", ["mct", "base"])
def test_agrees_without_interpolation_or_mask(layout: str) -> None:
    upstream, ours = _pair(table_rows=16, layout=layout)
    ids = Sam3LiteTextTokenizer(16)(["a cat", "person wearing a red hat", ""])["input_ids"]
    with torch.no_grad():
        theirs = upstream(input_ids=ids)
        mine = ours(ids)
    torch.testing.assert_close(mine.encoder_last_hidden_state, theirs.last_hidden_state, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(mine.pooled_output, theirs.pooler_output, atol=1e-5, rtol=1e-5)


def test_deviations_from_the_original() -> None:
    upstream, ours = _pair(table_rows=77)  # the released table length
    batch = Sam3LiteTextTokenizer(16)(["a cat", "person wearing a red hat"])
    with torch.no_grad():
        mine = ours(batch["input_ids"]).encoder_last_hidden_state
        interpolated = upstream(input_ids=batch["input_ids"]).last_hidden_state
        masked = upstream(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
        ).last_hidden_state
    assert (
        interpolated - mine
    ).abs().max() > 1e-3  # upstream interpolates the 77-row table; the original slices
    assert (
        masked - interpolated
    ).abs().max() > 1e-3  # upstream masks padding when given a mask; the original never
