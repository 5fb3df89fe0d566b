"""Golden batch case for SAM3-LiteText from the ORIGINAL code: 2 images x 2 prompts through ``forward_grounding``.

    ORIGINAL_VENV/bin/python tools/sam3_lite_text_original/make_batch_case.py ORIGINAL_SAM3_DIR OUT_DIR

``ORIGINAL_VENV`` is a separate environment for the original code (never the project's .venv).

``ORIGINAL_SAM3_DIR`` is the ``sam3/`` folder of ``SimonZeng7108/efficientsam3`` (branch ``sam3_litetext``,
commit bef17f5), not part of this project. The tiny detector is the visible case ``tiny_detector_s0_mct_seed5``:
the original classes with ``build_sam3_image_model``'s arguments at that case's reduced widths, its
checkpoint loaded with the original ``strict=False`` rule (checked: the replica reproduces that case's
outputs). The batch is one ``FindStage(img_ids=[0, 1], text_ids=[0, 1])``; the images are 56 x 56 (the
ViT's pre-training grid, no tiling) so that the case stays small, and the case's ``checkpoint.pt`` is a link
to the visible case's file (the RoPE tables in it are for 112 x 112 and are skipped by both sides).
"""

from __future__ import annotations

import json
import sys
from functools import partial
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from original_import import cuda_on_cpu, import_original  # noqa: E402

VISIBLE = Path(__file__).resolve().parents[2] / "tests/fixtures/sam3_lite_text/tiny_detector_s0_mct_seed5"
PROMPTS = ["a cat", "person wearing a red hat"]


def build(image_size: int, d: dict, student: dict, ctx: int) -> nn.Module:
    """The original Sam3Image wired as ``build_sam3_image_model`` wires it, at reduced widths."""
    from sam3.model.decoder import TransformerDecoder, TransformerDecoderLayer
    from sam3.model.encoder import TransformerEncoderFusion, TransformerEncoderLayer
    from sam3.model.geometry_encoders import SequenceGeometryEncoder
    from sam3.model.maskformer_segmentation import PixelDecoder, UniversalSegmentationHead
    from sam3.model.model_misc import MLP, DotProductScoring, TransformerWrapper
    from sam3.model.model_misc import MultiheadAttentionWrapper as MultiheadAttention
    from sam3.model.necks import Sam3DualViTDetNeck
    from sam3.model.position_encoding import PositionEmbeddingSine
    from sam3.model.sam3_image import Sam3Image
    from sam3.model.text_encoder_student import TextStudentEncoder
    from sam3.model.vitdet import ViT
    from sam3.model.vl_combiner import SAM3VLBackbone

    m, f, h = d["d_model"], d["ffn_dim"], d["n_heads"]
    pos = partial(PositionEmbeddingSine, num_pos_feats=m, normalize=True, scale=None, temperature=10000)
    vit = ViT(img_size=image_size, pretrain_img_size=d["pretrain_img_size"], patch_size=d["patch_size"],
              embed_dim=d["vit_embed_dim"], depth=d["vit_depth"], num_heads=d["vit_heads"],
              mlp_ratio=d["vit_mlp_ratio"], norm_layer="LayerNorm", drop_path_rate=0.1, qkv_bias=True,
              use_abs_pos=True, tile_abs_pos=True, global_att_blocks=tuple(d["vit_global_att_blocks"]),
              rel_pos_blocks=(), use_rope=True, use_interp_rope=True, window_size=d["vit_window_size"],
              pretrain_use_cls_token=True, retain_cls_token=False, ln_pre=True, ln_post=False,
              return_interm_layers=False, bias_patch_embed=False)  # fmt: skip
    neck = Sam3DualViTDetNeck(position_encoding=pos(precompute_resolution=image_size), d_model=m,
                              scale_factors=[4.0, 2.0, 1.0, 0.5], trunk=vit, add_sam2_neck=False)  # fmt: skip
    text = TextStudentEncoder(cfg={**student, "context_length": 77}, context_length=77, output_dim=m,
                              bpe_path=str(_bpe()))  # fmt: skip
    backbone = SAM3VLBackbone(visual=neck, text=text, scalp=1)
    mha = partial(MultiheadAttention, num_heads=h, dropout=0.1, embed_dim=m)
    enc_layer = TransformerEncoderLayer(activation="relu", d_model=m, dim_feedforward=f, dropout=0.1,
                                        pos_enc_at_attn=True, pos_enc_at_cross_attn_keys=False,
                                        pos_enc_at_cross_attn_queries=False, pre_norm=True,
                                        self_attention=mha(batch_first=True), cross_attention=mha(batch_first=True))  # fmt: skip
    encoder = TransformerEncoderFusion(layer=enc_layer, num_layers=6, d_model=m, num_feature_levels=1, frozen=False,
                                       use_act_checkpoint=True, add_pooled_text_to_img_feat=False,
                                       pool_text_with_mask=True)  # fmt: skip
    dec_layer = TransformerDecoderLayer(activation="relu", d_model=m, dim_feedforward=f, dropout=0.1,
                                        cross_attention=mha(), n_heads=h, use_text_cross_attention=True)  # fmt: skip
    decoder = TransformerDecoder(layer=dec_layer, num_layers=6, num_queries=d["num_queries"], return_intermediate=True,
                                 box_refine=True, num_o2m_queries=0, dac=True, boxRPB="log", d_model=m, frozen=False,
                                 interaction_layer=None, dac_use_selfatt_ln=True, resolution=image_size,
                                 stride=d["patch_size"], use_act_checkpoint=True, presence_token=True)  # fmt: skip
    transformer = TransformerWrapper(encoder=encoder, decoder=decoder, d_model=m)
    prompt_mlp = MLP(input_dim=m, hidden_dim=f, output_dim=m, num_layers=2, dropout=0.1, residual=True,
                     out_norm=nn.LayerNorm(m))  # fmt: skip
    scoring = DotProductScoring(d_model=m, d_proj=m, prompt_mlp=prompt_mlp)
    seg = UniversalSegmentationHead(hidden_dim=m, upsampling_stages=3, aux_masks=False, presence_head=False,
                                    dot_product_scorer=None, act_ckpt=True, cross_attend_prompt=mha(dropout=0),
                                    pixel_decoder=PixelDecoder(num_upsampling_stages=3, interpolation_mode="nearest",
                                                               hidden_dim=m))  # fmt: skip
    geo_layer = TransformerEncoderLayer(activation="relu", d_model=m, dim_feedforward=f, dropout=0.1,
                                        pos_enc_at_attn=False, pre_norm=True, self_attention=mha(batch_first=False),
                                        pos_enc_at_cross_attn_queries=False, pos_enc_at_cross_attn_keys=True,
                                        cross_attention=mha(batch_first=False))  # fmt: skip
    geometry = SequenceGeometryEncoder(pos_enc=pos(), encode_boxes_as_points=False, points_direct_project=True,
                                       points_pool=True, points_pos_enc=True, boxes_direct_project=True,
                                       boxes_pool=True, boxes_pos_enc=True, d_model=m, num_layers=3, layer=geo_layer,
                                       use_act_ckpt=True, add_cls=True, add_post_encode_proj=True)  # fmt: skip
    model = Sam3Image(backbone=backbone, transformer=transformer, input_geometry_encoder=geometry,
                      segmentation_head=seg, num_feature_levels=1, o2m_mask_predict=True, dot_prod_scoring=scoring,
                      use_instance_query=False, multimask_output=True, inst_interactive_predictor=None,
                      matcher=None)  # fmt: skip
    return model.eval()


def _bpe() -> Path:
    return Path(__file__).resolve().parents[2] / "src/visionports/assets/bpe_simple_vocab_16e6.txt.gz"


def load(model: nn.Module, checkpoint: Path, ctx: int) -> None:
    """The original ``_load_checkpoint`` rule (strip ``detector.``, strict=False), RoPE tables kept as built."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["model"]
    state = {k.removeprefix("detector."): v for k, v in state.items() if not k.endswith("freqs_cis")}
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert not unexpected and all(k.endswith("freqs_cis") for k in missing), (missing, unexpected)
    model.backbone.language_backbone.set_context_length(ctx)


@torch.no_grad()
def ground(
    model: nn.Module, pixels: torch.Tensor, prompts: list[str], img_ids: list[int], text_ids: list[int]
):
    """``forward_grounding`` with one FindStage over the given pairs (empty geometric prompt per query)."""
    from sam3.model.data_misc import FindStage

    backbone_out = {"img_batch_all_stages": pixels, **model.backbone.forward_image(pixels)}
    backbone_out.update(model.backbone.forward_text(prompts, device="cpu"))
    n = len(img_ids)
    stage = FindStage(img_ids=torch.tensor(img_ids), text_ids=torch.tensor(text_ids), input_boxes=None,
                      input_boxes_mask=None, input_boxes_label=None, input_points=None, input_points_mask=None)  # fmt: skip
    captured = {}
    hook = model.geometry_encoder.register_forward_hook(lambda mod, a, out: captured.update(geo=out))
    enc_hook = model.transformer.encoder.register_forward_hook(lambda mod, a, out: captured.update(enc=out))
    dec_hook = model.transformer.decoder.register_forward_hook(lambda mod, a, out: captured.update(dec=out))
    out = model.forward_grounding(backbone_out=backbone_out, find_input=stage, find_target=None,
                                  geometric_prompt=model._get_dummy_prompt(num_prompts=n))  # fmt: skip
    for h in (hook, enc_hook, dec_hook):
        h.remove()
    return backbone_out, out, captured


def tensors(backbone_out: dict, out: dict, captured: dict, grid: int) -> dict[str, torch.Tensor]:
    """The visible case's names, for a whole batch (query axis where the original has it)."""
    geo_feats, geo_mask = captured["geo"]
    hs, refs, presence = captured["dec"][:3]
    vit = backbone_out.get("vit_trunk")
    result = {
        "language_features": backbone_out["language_features"], "language_mask": backbone_out["language_mask"],
        "geometry_prompt_feats": geo_feats, "geometry_prompt_mask": geo_mask,
        "encoder_memory": captured["enc"]["memory"],
        "prompt_tokens": out["prev_encoder_out"]["encoder_out"]["prompt_before_enc"],
        "prompt_mask": out["prev_encoder_out"]["encoder_out"]["prompt_mask"],
        "decoder_hidden_states": hs, "decoder_reference_boxes": refs,
        "presence_logit_dec": out["presence_logit_dec"], "pred_logits": out["pred_logits"],
        "pred_boxes": out["pred_boxes"], "pred_boxes_xyxy": out["pred_boxes_xyxy"], "pred_masks": out["pred_masks"],
        "semantic_seg": out["semantic_seg"], "presence_score": out["presence_logit_dec"].sigmoid(),
    }  # fmt: skip
    for level in range(3):
        result[f"backbone_fpn_{level}"] = backbone_out["backbone_fpn"][level]
        result[f"vision_pos_enc_{level}"] = backbone_out["vision_pos_enc"][level]
    if vit is not None:
        result["vit_trunk_output"] = vit
    return {k: v.contiguous() for k, v in result.items()}


def _trunk_hook(model: nn.Module, store: dict):
    return model.backbone.vision_backbone.trunk.register_forward_hook(
        lambda mod, a, out: store.update(vit=out[-1])
    )


def check_replica(model: nn.Module, case_dir: Path) -> float:
    """Worst abs difference of the replica's batch-1 queries against the visible case's outputs."""
    from safetensors.torch import load_file

    inputs, reference = (
        load_file(str(case_dir / "inputs.safetensors")),
        load_file(str(case_dir / "outputs.safetensors")),
    )
    store: dict = {}
    hook = _trunk_hook(model, store)
    worst = 0.0
    for k, prompt in enumerate(PROMPTS):
        backbone_out, out, captured = ground(model, inputs["pixel_values"], [prompt], [0], [0])
        got = tensors({**backbone_out, "vit_trunk": store["vit"]}, out, captured, 0)
        for name, value in got.items():
            ref = reference.get(f"p{k}_{name}", reference.get(name))
            if ref is not None:
                worst = max(worst, (value.double() - ref.double()).abs().max().item() if ref.numel() else 0.0)
    hook.remove()
    return worst


def threshold_between_top_scores(scores: torch.Tensor) -> float:
    """A threshold in the widest gap among the 8 best scores, keeping at least 2 (random weights score low)."""
    top = scores.sort(descending=True).values[:8]
    cut = int((top[1:-1] - top[2:]).argmax()) + 1
    return float((top[cut] + top[cut + 1]) / 2)


def processor_selection(out: dict, k: int, size: int, outputs: dict) -> float:
    """``Sam3Processor``'s selection on query ``k`` at a ``size`` x ``size`` image, as ``p{k}_post_*`` in
    ``outputs``, with a threshold that keeps a few queries of random weights; returns that threshold."""
    scores = (out["pred_logits"][k].sigmoid() * out["presence_logit_dec"][k].sigmoid()).squeeze(-1)
    threshold = threshold_between_top_scores(scores)
    keep = scores > threshold
    boxes = out["pred_boxes_xyxy"][k][keep] * torch.tensor([size, size, size, size])
    masks = torch.nn.functional.interpolate(out["pred_masks"][k][keep][:, None], (size, size), mode="bilinear",
                                            align_corners=False).sigmoid()  # fmt: skip
    outputs.update({f"p{k}_post_scores": scores[keep], f"p{k}_post_boxes_xyxy": boxes,
                    f"p{k}_post_masks_prob": masks, f"p{k}_post_masks": masks > 0.5})  # fmt: skip
    return threshold


def main(original: Path, out_dir: Path, seed: int = 11) -> None:
    import_original(original)
    torch.manual_seed(0)
    case = json.loads((VISIBLE / "case.json").read_text())
    cfg = case["config"]
    det, student, ctx = cfg["detector"], cfg["student_cfg"], cfg["context_length"]
    with cuda_on_cpu():
        visible = build(det["image_size"], det, student, ctx)
    load(visible, VISIBLE / "checkpoint.pt", ctx)
    replica_error = check_replica(visible, VISIBLE)
    print("replica vs visible case: max abs", replica_error)
    assert replica_error < 1e-5, (
        replica_error
    )  # 0 in the environment that wrote the case; torch builds differ
    size = det["pretrain_img_size"]
    with cuda_on_cpu():
        model = build(size, det, student, ctx)
    load(model, VISIBLE / "checkpoint.pt", ctx)
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (2, 3, size, size), generator=generator, dtype=torch.uint8)
    pixels = (images.float() / 255 - 0.5) / 0.5  # Sam3Processor.transform; Resize is the identity here
    store: dict = {}
    hook = _trunk_hook(model, store)
    backbone_out, out, captured = ground(model, pixels, PROMPTS, [0, 1], [0, 1])
    hook.remove()
    outputs = tensors({**backbone_out, "vit_trunk": store["vit"]}, out, captured, 0)
    thresholds = [processor_selection(out, k, size, outputs) for k in range(2)]
    ids = torch.stack(
        [model.backbone.language_backbone.tokenizer([p], context_length=ctx)[0] for p in PROMPTS]
    )
    inputs = {"image_uint8": images, "pixel_values": pixels, "input_ids": ids, "attention_mask": (ids != 0).long(),
              "img_ids": torch.tensor([0, 1]), "text_ids": torch.tensor([0, 1]),
              "original_size": torch.tensor([[size, size], [size, size]])}  # fmt: skip
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in inputs.items()}, str(out_dir / "inputs.safetensors"))
    save_file(outputs, str(out_dir / "outputs.safetensors"))
    link = out_dir / "checkpoint.pt"
    if not link.exists():
        link.symlink_to(Path("..") / VISIBLE.name / "checkpoint.pt")
    config = {**cfg, "detector": {**det, "image_size": size}, "confidence_threshold": thresholds,
              "prompts": PROMPTS, "img_ids": [0, 1], "text_ids": [0, 1]}  # fmt: skip
    meta = {
        "case": out_dir.name,
        "description": "2 images x 2 prompts, one Sam3Image.forward_grounding with FindStage(img_ids=[0, 1], "
        "text_ids=[0, 1]) (image b with prompt b) on the tiny detector of tiny_detector_s0_mct_seed5 (same "
        "checkpoint: checkpoint.pt links to it) at 56 x 56 (RoPE tables rebuilt by the constructor). Unprefixed "
        "tensors are the batched run (query axis as the original has it); p{k}_post_* is Sam3Processor's "
        "selection applied to query k at its image's size (the original processor has no batch post-processing).",
        "original_repo": case["original_repo"], "original_commit": case["original_commit"],
        "generator": "tools/sam3_lite_text_original/make_batch_case.py", "seed": seed,
        "replica_check": f"replica reproduces tiny_detector_s0_mct_seed5 outputs: max abs {replica_error}",
        "config": config, "preprocessing": {"original_size_for_postprocessing": [[size, size], [size, size]]},
        "stand_ins": ["torchvision", "decord", "pycocotools", "iopath", "triton", "timm (Mlp, DropPath, trunc_normal_)"],
        "tolerances": case["tolerances"],
        "inputs": [{"name": k, "shape": list(v.shape), "dtype": str(v.dtype).removeprefix("torch.")} for k, v in inputs.items()],
        "outputs": [{"name": k, "shape": list(v.shape), "dtype": str(v.dtype).removeprefix("torch.")} for k, v in outputs.items()],
    }  # fmt: skip
    (out_dir / "case.json").write_text(json.dumps(meta, indent=1))
    print("thresholds", thresholds, "kept", [len(outputs[f"p{k}_post_scores"]) for k in range(2)])


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
