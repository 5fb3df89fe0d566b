"""Upstream ``transformers.Sam3LiteTextModel`` (5.23) vs ours at shared random weights (tiny widths).

Same weights in both. Checked equal: the vision encoder, the projected text features (text encoder run without
the mask, as the original) and, with upstream's text-only shortcut reproduced on our side (no empty-geometry token),
the fusion encoder + pixel decoder (``semantic_seg``). Checked different (upstream deviations from the original,
whose outputs our model reproduces on the golden case): the geometry token upstream skips, the text mask it
applies inside the text encoder, and its decoder / mask-embedding path (boxes ~2e-4, masks ~0.2 on this model).
"""

from __future__ import annotations

import torch
from test_upstream_text_anchor import _ours_from_upstream
from transformers.models.sam3_lite_text import configuration_sam3_lite_text as upstream_config
from transformers.models.sam3_lite_text import modeling_sam3_lite_text as upstream_modeling

from visionports.models.sam3_lite_text import Sam3LiteTextConfig, Sam3LiteTextModel, Sam3LiteTextTokenizer
from visionports.models.sam3_lite_text.detector_sam3_lite_text import sam3_config_for

WIDTHS = dict(d_model=32, ffn_dim=64, n_heads=8, num_queries=20, image_size=112, patch_size=14, pretrain_img_size=56,
              vit_embed_dim=32, vit_depth=4, vit_heads=2, vit_window_size=4, vit_global_att_blocks=[3],
              vit_mlp_ratio=4.625)  # fmt: skip
DETECTOR_PARTS = (
    "vision_encoder",
    "geometry_encoder",
    "detr_encoder",
    "detr_decoder",
    "mask_decoder",
    "dot_product_scoring",
)


def _pair() -> tuple[torch.nn.Module, Sam3LiteTextModel]:
    torch.manual_seed(0)
    sam3 = sam3_config_for(**WIDTHS)
    text = upstream_config.Sam3LiteTextTextConfig(hidden_size=32, num_attention_heads=4, num_hidden_layers=6,
                                                  intermediate_size=128, projection_dim=32, max_position_embeddings=16)  # fmt: skip
    upstream = upstream_modeling.Sam3LiteTextModel(upstream_config.Sam3LiteTextConfig(
        vision_config=sam3.vision_config.to_dict(), text_config=text.to_dict(),
        geometry_encoder_config=sam3.geometry_encoder_config.to_dict(),
        detr_encoder_config=sam3.detr_encoder_config.to_dict(), detr_decoder_config=sam3.detr_decoder_config.to_dict(),
        mask_decoder_config=sam3.mask_decoder_config.to_dict(),
    )).eval()  # fmt: skip
    with torch.no_grad():
        for name, p in upstream.named_parameters():
            scale = 0.05 if p.ndim == 1 else 1 / max(1, p.shape[-1]) ** 0.5
            p.copy_(
                torch.randn_like(p) * scale + (1.0 if "norm" in name and name.endswith("weight") else 0.0)
            )
    ours = Sam3LiteTextModel(Sam3LiteTextConfig(
        text_config={"layout": "mct", "hidden_size": 32, "num_attention_heads": 4, "projection_dim": 32},
        detector=WIDTHS,
    )).eval()  # fmt: skip
    mapped = {"text_model." + k: v for k, v in _ours_from_upstream(upstream.text_encoder, 16).items()}
    mapped["text_model.projector.weight"] = upstream.text_projection.weight
    mapped["text_model.projector.bias"] = upstream.text_projection.bias
    mapped.update(
        {f"detector.{k}": v for k, v in upstream.state_dict().items() if k.split(".")[0] in DETECTOR_PARTS}
    )
    missing, unexpected = ours.load_state_dict(mapped, strict=False)
    # upstream's geometry encoder takes boxes only: the original's point projections are ours alone
    assert not unexpected and {k.rsplit(".", 1)[0] for k in missing} == {
        f"detector.geometry_encoder.points_{kind}_project" for kind in ("direct", "pool", "pos_enc")
    }
    return upstream, ours


def test_same_detector_where_upstream_follows_the_original() -> None:
    upstream, ours = _pair()
    batch = Sam3LiteTextTokenizer(16)(["a cat"])
    ids, mask = batch["input_ids"], batch["attention_mask"]
    pixels = torch.randn(1, 3, 112, 112)
    with torch.no_grad():
        torch.testing.assert_close(ours.get_image_features(pixels).last_hidden_state,
                                   upstream.vision_encoder(pixels).last_hidden_state, atol=1e-5, rtol=0)  # fmt: skip
        # text encoder without the mask (as the original), detector with it
        text = upstream.get_text_features(input_ids=ids)
        theirs = upstream(pixel_values=pixels, text_embeds=text, attention_mask=mask)
        torch.testing.assert_close(
            ours.get_text_features(ids).last_hidden_state, text.pooler_output, atol=1e-5, rtol=0
        )
        faithful = ours(pixel_values=pixels, input_ids=ids)
        # our detector with upstream's text-only shortcut (no empty-geometry token) reproduces upstream
        geometry = ours.detector.geometry_encoder
        geometry.forward = lambda feats, *args: (
            feats.new_zeros(feats.shape[0], 0, feats.shape[1]),
            torch.zeros(feats.shape[0], 0, dtype=torch.bool),
        )
        try:
            shortcut = ours(pixel_values=pixels, input_ids=ids)
        finally:
            del geometry.forward
        masked_text = upstream(pixel_values=pixels, input_ids=ids, attention_mask=mask)
    torch.testing.assert_close(shortcut.semantic_seg, theirs.semantic_seg, atol=1e-5, rtol=0)
    assert (
        shortcut.pred_masks - theirs.pred_masks
    ).abs().max() > 1e-2  # upstream's decoder/mask path deviates
    assert (
        faithful.pred_logits[..., 0] - theirs.pred_logits
    ).abs().max() > 1e-3  # the geometry token matters
    assert (
        masked_text.pred_logits - theirs.pred_logits
    ).abs().max() > 1e-3  # so does masking the text encoder
