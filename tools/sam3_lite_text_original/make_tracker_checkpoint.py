"""Tiny released-format SAM3-LiteText checkpoint WITH the tracker, built from the ORIGINAL classes.

    ORIGINAL_VENV/bin/python tools/sam3_lite_text_original/make_tracker_checkpoint.py ORIGINAL_SAM3_DIR [OUT_DIR]

``ORIGINAL_VENV`` is a separate environment for the original code (torch + real torchvision; never the project's
.venv). ``ORIGINAL_SAM3_DIR`` is the ``sam3/`` folder of ``SimonZeng7108/efficientsam3`` (branch ``sam3_litetext``,
commit bef17f5), not part of this project. ``OUT_DIR`` defaults to
``tests/fixtures/sam3_lite_text/tiny_tracker_s0_mct``; it receives ``checkpoint.pt`` and ``build.json``.

What a released file holds (``model_builder.py``): ``{"model": state_dict}`` with ``detector.<Sam3Image key>``
(the SAM2-style second neck ``detector.backbone.vision_backbone.sam2_convs.*`` included) and
``tracker.<Sam3TrackerPredictor key>``. ``build_sam3_image_model(enable_inst_interactivity=True)`` loads them
with ``_load_checkpoint``: ``detector.`` stripped, every key containing ``tracker`` renamed
``tracker.`` -> ``inst_interactive_predictor.model.``, ``strict=False``. The video builders load ``tracker.*``
into ``model.tracker`` as they are.

The file written here = the 950 ``detector.*`` keys of the visible case ``tiny_detector_s0_mct_seed5`` (copied
unchanged) + a re-drawn tiny ``sam2_convs`` + a re-drawn tiny tracker. ``build_tracker`` and its helpers hard-code
the released widths, so :func:`build_tracker_tiny` calls the same original classes with the same arguments, only
the numbers in :data:`TINY` (vs :data:`RELEASED`) changed; with :data:`RELEASED` its state dict equals
``build_tracker``'s key for key and shape for shape (checked by :func:`main`). Every change:

* hidden width 256 -> 32 (the detector's d_model: the tracker reads the ``sam2_convs`` features);
* memory width 64 -> 16 (``SimpleMaskEncoder(out_dim)``, memory cross-attention ``kv_in_dim``, memory position
  encoding ``num_pos_feats``); it must divide the hidden width (object pointers are split into hidden/mem tokens);
* memory-attention FFN 2048 -> 64; RoPE ``feat_sizes`` [72, 72] -> [8, 8]; image 1008 -> 112 (patch 14 kept);
  memory position encoding ``precompute_resolution`` 1008 -> 112;
* mask down-sampler ``interpol_size`` [1152, 1152] -> [128, 128] (= 16 x the feature grid, as 1152 = 16 x 72);
  ``SimpleMaskDownSampler(embed_dim)`` / ``SimpleMaskEncoder(in_dim)`` / ``CXBlock(dim)`` 256 -> 32 (their defaults
  / arguments equal the hidden width in the release);
* inside ``Sam3TrackerBase._build_sam_heads`` (hard-coded there, not in the builder): ``TwoWayTransformer(mlp_dim)``
  2048 -> 64 and ``MaskDecoder(iou_head_hidden_dim)`` 256 -> 32, applied by handing the method the same classes
  with these two arguments overridden while the tracker is built;
* ``SAM3InteractiveImagePredictor._bb_feat_sizes`` (hard-coded [(288, 288), (144, 144), (72, 72)]) -> the tiny
  grids [(32, 32), (16, 16), (8, 8)], set after construction.

Unchanged: 1 head in memory attention, 8 heads in the SAM two-way transformer, 4 memory-attention layers, 2 fuser
blocks, 7 memory slots, ``mask_in_chans`` 16, every flag of ``build_tracker``.

New tensors are re-drawn in state-dict order from ``torch.Generator().manual_seed(SEED)`` by the visible case's
``weight_redraw`` rules (see :func:`redraw`). Two runs write identical bytes.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import sys
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_batch_case import VISIBLE, build  # noqa: E402
from original_import import cuda_on_cpu, import_original  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "tests/fixtures/sam3_lite_text/tiny_tracker_s0_mct"
SEED = 7
RELEASED = {"hidden": 256, "mem_dim": 64, "ffn_dim": 2048, "image_size": 1008, "patch_size": 14,
            "sam_mlp_dim": 2048, "iou_head_hidden_dim": 256}  # fmt: skip
TINY = {"hidden": 32, "mem_dim": 16, "ffn_dim": 64, "image_size": 112, "patch_size": 14,
        "sam_mlp_dim": 64, "iou_head_hidden_dim": 32}  # fmt: skip


def grids(w: dict) -> list[tuple[int, int]]:
    """The tracker's three feature grids (strides 4, 8, 16 of the 1/patch map), high resolution first."""
    g = w["image_size"] // w["patch_size"]
    return [(4 * g, 4 * g), (2 * g, 2 * g), (g, g)]


@contextmanager
def _sam_heads(w: dict):
    """While building: the two numbers ``_build_sam_heads`` hard-codes follow ``w``."""
    import sam3.model.sam3_tracker_base as base

    def forced(cls, **fixed):  # the method passes these names itself: ours win over its values
        return lambda *args, **kwargs: cls(*args, **{**kwargs, **fixed})

    saved = base.TwoWayTransformer, base.MaskDecoder
    base.TwoWayTransformer = forced(saved[0], mlp_dim=w["sam_mlp_dim"])
    base.MaskDecoder = forced(saved[1], iou_head_hidden_dim=w["iou_head_hidden_dim"])
    try:
        yield
    finally:
        base.TwoWayTransformer, base.MaskDecoder = saved


def build_tracker_tiny(
    w: dict = TINY, apply_temporal_disambiguation: bool = False, backbone=None
) -> nn.Module:
    """``build_tracker`` with the numbers of ``w`` (a :class:`Sam3TrackerPredictor`, eval mode, not loaded)."""
    from sam3.model.decoder import TransformerDecoderLayerv2, TransformerEncoderCrossAttention
    from sam3.model.memory import CXBlock, SimpleFuser, SimpleMaskDownSampler, SimpleMaskEncoder
    from sam3.model.model_misc import TransformerWrapper
    from sam3.model.position_encoding import PositionEmbeddingSine
    from sam3.model.sam3_tracking_predictor import Sam3TrackerPredictor
    from sam3.sam.transformer import RoPEAttention

    d, m, size = w["hidden"], w["mem_dim"], w["image_size"]
    grid = size // w["patch_size"]
    with cuda_on_cpu(), _sam_heads(w):
        maskmem = SimpleMaskEncoder(
            out_dim=m, in_dim=d,
            position_encoding=PositionEmbeddingSine(num_pos_feats=m, normalize=True, scale=None, temperature=10000,
                                                    precompute_resolution=size),
            mask_downsampler=SimpleMaskDownSampler(embed_dim=d, kernel_size=3, stride=2, padding=1,
                                                   interpol_size=[16 * grid, 16 * grid]),
            fuser=SimpleFuser(layer=CXBlock(dim=d, kernel_size=7, padding=3, layer_scale_init_value=1.0e-06,
                                            use_dwconv=True), num_layers=2),
        )  # fmt: skip
        rope = functools.partial(RoPEAttention, embedding_dim=d, num_heads=1, downsample_rate=1, dropout=0.1,
                                 rope_theta=10000.0, feat_sizes=[grid, grid], use_fa3=False, use_rope_real=False)  # fmt: skip
        layer = TransformerDecoderLayerv2(
            cross_attention_first=False, activation="relu", dim_feedforward=w["ffn_dim"], dropout=0.1,
            pos_enc_at_attn=False, pre_norm=True, self_attention=rope(), d_model=d, pos_enc_at_cross_attn_keys=True,
            pos_enc_at_cross_attn_queries=False, cross_attention=rope(kv_in_dim=m, rope_k_repeat=True),
        )  # fmt: skip
        encoder = TransformerEncoderCrossAttention(remove_cross_attention_layers=[], batch_first=True, d_model=d,
                                                   frozen=False, pos_enc_at_input=True, layer=layer, num_layers=4,
                                                   use_act_checkpoint=False)  # fmt: skip
        model = Sam3TrackerPredictor(
            image_size=size, num_maskmem=7, backbone=backbone, backbone_stride=w["patch_size"],
            transformer=TransformerWrapper(encoder=encoder, decoder=None, d_model=d), maskmem_backbone=maskmem,
            multimask_output_in_sam=True, forward_backbone_per_frame_for_eval=True,
            trim_past_non_cond_mem_for_eval=False, multimask_output_for_tracking=True, multimask_min_pt_num=0,
            multimask_max_pt_num=1, always_start_from_first_ann_frame=False, non_overlap_masks_for_mem_enc=False,
            non_overlap_masks_for_output=False, max_cond_frames_in_attn=4, offload_output_to_cpu_for_eval=False,
            sam_mask_decoder_extra_args={"dynamic_multimask_via_stability": True,
                                         "dynamic_multimask_stability_delta": 0.05,
                                         "dynamic_multimask_stability_thresh": 0.98},
            clear_non_cond_mem_around_input=True, fill_hole_area=0,
            use_memory_selection=apply_temporal_disambiguation,
        )  # fmt: skip
    return model.eval()


def _case() -> dict:
    return json.loads((VISIBLE / "case.json").read_text())["config"]


def _add_sam2_neck(image_model: nn.Module) -> None:
    """What ``Sam3DualViTDetNeck(add_sam2_neck=True)`` does: a second neck cloned from the first."""
    neck = image_model.backbone.vision_backbone
    neck.sam2_convs = copy.deepcopy(neck.convs)


def load_like_image_builder(model: nn.Module, checkpoint: Path) -> tuple[list[str], list[str]]:
    """The original ``_load_checkpoint`` of ``build_sam3_image_model``, rule for rule (strict=False)."""
    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=True)
    if "model" in ckpt and isinstance(ckpt["model"], dict):
        ckpt = ckpt["model"]
    cleaned = {k.replace("detector.", "", 1) if k.startswith("detector.") else k: v for k, v in ckpt.items()}
    cleaned = {k.replace("student_trunk.", ""): v for k, v in cleaned.items()}
    own = model.state_dict()
    chosen = {k: v for k, v in cleaned.items() if k in own or "backbone" in k}
    if getattr(model, "inst_interactive_predictor", None) is not None:
        chosen.update({k.replace("tracker.", "inst_interactive_predictor.model."): v
                       for k, v in ckpt.items() if "tracker" in k})  # fmt: skip
    missing, unexpected = model.load_state_dict(chosen, strict=False)
    return missing, unexpected


def build_interactive(original: Path | None = None, checkpoint: Path = OUT / "checkpoint.pt") -> nn.Module:
    """The tiny ``build_sam3_image_model(enable_inst_interactivity=True)``: Sam3Image (visible case's widths) with
    the SAM2 neck and ``inst_interactive_predictor`` (tiny tracker), loaded from ``checkpoint`` as the original
    ``_load_checkpoint`` does, text context truncated as the builder does. ``original``: import it first if given."""
    if original is not None and "sam3" not in sys.modules:
        import_original(original, real=("torchvision",))
    from sam3.model.sam1_task_predictor import SAM3InteractiveImagePredictor

    cfg = _case()
    det = cfg["detector"]
    with cuda_on_cpu():
        model = build(det["image_size"], det, cfg["student_cfg"], cfg["context_length"])
    _add_sam2_neck(model)
    predictor = SAM3InteractiveImagePredictor(build_tracker_tiny(TINY))
    predictor._bb_feat_sizes = grids(TINY)
    model.inst_interactive_predictor = predictor
    missing, unexpected = load_like_image_builder(model, checkpoint)
    assert not missing, missing
    assert all(k.startswith("tracker.maskmem_backbone.") for k in unexpected), unexpected  # see build.json
    model.backbone.language_backbone.set_context_length(cfg["context_length"])
    return model.eval()


def build_video_tracker(image_model: nn.Module) -> nn.Module:
    """A tiny video tracker (``Sam3TrackerPredictor``) sharing ``image_model``'s tracker weights and reading frames
    through its vision backbone (trunk + both necks), wired as ``build_tracker(with_backbone=True)`` wires it
    (``SAM3VLBackbone(scalp=1, visual=..., text=None)``). The released video model instead feeds the tracker from
    the detector's backbone inside ``Sam3VideoInference``; the tracker weights are the same ``tracker.*``."""
    from sam3.model.vl_combiner import SAM3VLBackbone

    tracker = image_model.inst_interactive_predictor.model
    tracker.backbone = SAM3VLBackbone(scalp=1, visual=image_model.backbone.vision_backbone, text=None)
    return tracker


@contextmanager
def cuda_calls_on_cpu():
    """While running the video predictor on CPU: ``tensor.cuda()`` is the identity (the original moves memories
    and frames with ``.cuda()``); pass ``offload_state_to_cpu=True`` to ``init_state``."""
    saved = torch.Tensor.cuda
    torch.Tensor.cuda = lambda self, *args, **kwargs: self
    try:
        yield
    finally:
        torch.Tensor.cuda = saved


def redraw(modules: dict[str, nn.Module], generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Re-draw every floating tensor of ``modules`` (prefix -> module) in state-dict order:

    LayerNorm / LayerNorm2d weight 1+N(0,0.1), bias N(0,0.1); Linear / Conv2d weight N(0, 1/sqrt(fan_in));
    ConvTranspose2d weight N(0, 1/sqrt(in_channels)); every bias N(0, 0.1); Embedding weight N(0, 0.5);
    CXBlock ``gamma`` U(0.3, 0.9) (the release's 1e-6 init would hide the fuser); the prompt encoder's random
    Fourier matrix N(0, 1) (its own init); the tracker's free tables (memory temporal encodings, no-memory /
    no-object embeddings) N(0, 0.5)."""
    out: dict[str, torch.Tensor] = {}
    for prefix, root in modules.items():
        owners = dict(root.named_modules())
        for key, value in root.state_dict().items():
            owner_name, _, leaf = key.rpartition(".")
            owner = owners[owner_name]
            kind = type(owner).__name__
            g = generator
            shape = value.shape
            if leaf == "bias":
                t = torch.randn(shape, generator=g) * 0.1
            elif "Norm" in kind:
                t = 1 + torch.randn(shape, generator=g) * 0.1
            elif kind == "ConvTranspose2d":
                t = torch.randn(shape, generator=g) / owner.in_channels**0.5
            elif kind in ("Linear", "Conv2d"):
                t = torch.randn(shape, generator=g) / (value[0].numel()) ** 0.5
            elif kind == "Embedding":
                t = torch.randn(shape, generator=g) * 0.5
            elif leaf == "gamma":
                t = torch.rand(shape, generator=g) * 0.6 + 0.3
            elif leaf == "positional_encoding_gaussian_matrix":
                t = torch.randn(shape, generator=g)
            elif owner_name == "" and leaf in ("maskmem_tpos_enc", "no_mem_embed", "no_mem_pos_enc", "no_obj_ptr",
                                               "no_obj_embed_spatial"):  # fmt: skip
                t = torch.randn(shape, generator=g) * 0.5
            else:
                raise ValueError(f"no re-draw rule for {prefix}{key} ({kind})")
            out[prefix + key] = t.to(value.dtype).contiguous()
    return out


def _check_replica() -> str:
    """With the released numbers, :func:`build_tracker_tiny` has ``build_tracker``'s keys and shapes."""
    from sam3.model_builder import build_tracker

    with cuda_on_cpu():
        reference = build_tracker(apply_temporal_disambiguation=False).state_dict()
    replica = build_tracker_tiny(RELEASED).state_dict()
    assert list(reference) == list(replica), set(reference) ^ set(replica)
    assert all(reference[k].shape == replica[k].shape for k in reference)
    return f"build_tracker_tiny(RELEASED) == build_tracker(): {len(reference)} keys, same order and shapes"


OBJECT_SCORE_HEAD = "tracker.sam_mask_decoder.pred_obj_score_head.layers.2.bias"
OBJECT_SCORE_BIAS = 1.0


def main(original: Path, out_dir: Path = OUT) -> None:
    import_original(original, real=("torchvision",))
    torch.manual_seed(0)  # module constructors draw from the global generator; every such tensor is re-drawn
    replica = _check_replica()
    print(replica)
    cfg = _case()
    det = cfg["detector"]
    assert det["d_model"] == TINY["hidden"] and det["image_size"] == TINY["image_size"]
    with cuda_on_cpu():
        image_model = build(det["image_size"], det, cfg["student_cfg"], cfg["context_length"])
    _add_sam2_neck(image_model)
    tracker = build_tracker_tiny(TINY)
    generator = torch.Generator().manual_seed(SEED)
    new = redraw({"detector.backbone.vision_backbone.sam2_convs.": image_model.backbone.vision_backbone.sam2_convs,
                  "tracker.": tracker}, generator)  # fmt: skip
    # random heads score every propagated object about -0.13 ("gone"): a positive bias keeps tracks alive, so the
    # video case exercises memories and object pointers of objects that persist (OBJECT_SCORE_BIAS)
    new[OBJECT_SCORE_HEAD] = new[OBJECT_SCORE_HEAD] + OBJECT_SCORE_BIAS
    visible = torch.load(VISIBLE / "checkpoint.pt", map_location="cpu", weights_only=True)["model"]
    assert len(visible) == 950 and all(k.startswith("detector.") for k in visible)
    state = {**{k: v.contiguous() for k, v in visible.items()}, **new}
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.save({"model": state}, out_dir / "checkpoint.pt")
    digest = hashlib.md5((out_dir / "checkpoint.pt").read_bytes()).hexdigest()
    model = build_interactive(checkpoint=out_dir / "checkpoint.pt")
    loaded = model.inst_interactive_predictor.model.state_dict()
    assert all(
        torch.equal(loaded[k.removeprefix("tracker.")], v) for k, v in new.items() if k.startswith("tracker.")
    )
    meta = {
        "case": out_dir.name,
        "description": "Released-format checkpoint of a tiny SAM3-LiteText image model with instance "
        "interactivity (build_sam3_image_model(enable_inst_interactivity=True)): the visible case "
        f"{VISIBLE.name}'s 950 detector.* tensors unchanged + re-drawn detector.backbone.vision_backbone."
        "sam2_convs.* + re-drawn tracker.* (Sam3TrackerPredictor as build_tracker wires it, tiny widths).",
        "original_repo": "SimonZeng7108/efficientsam3", "original_branch": "sam3_litetext",
        "original_commit": "bef17f5c24dc5ef19dc1d8e9663345a2ae7f2f5a",
        "generator": "tools/sam3_lite_text_original/make_tracker_checkpoint.py", "seed": SEED,
        "seed_usage": "torch.Generator().manual_seed(seed) re-draws sam2_convs then the tracker, state-dict order",
        "weight_redraw": " ".join(redraw.__doc__.split("\n\n", 1)[1].split())
        + f" Then {OBJECT_SCORE_BIAS:+} on {OBJECT_SCORE_HEAD} (random heads would call every tracked object gone).",
        "tracker": {**TINY, "feature_grids": grids(TINY), "mask_downsampler_interpol_size": 16 * grids(TINY)[-1][0],
                    "memory_attention_layers": 4, "memory_attention_heads": 1, "sam_two_way_heads": 8,
                    "sam_two_way_depth": 2, "num_maskmem": 7, "mask_in_chans": 16,
                    "apply_temporal_disambiguation": False},
        "released_tracker": {**RELEASED, "feature_grids": grids(RELEASED), "mask_downsampler_interpol_size": 1152},
        "detector": det, "student_cfg": cfg["student_cfg"], "context_length": cfg["context_length"],
        "replica_check": replica,
        "load_rule": "build_sam3_image_model's _load_checkpoint: strip detector., keep keys in the model or "
        "containing 'backbone', add every key containing 'tracker' renamed tracker. -> "
        "inst_interactive_predictor.model., strict=False. Result here: no missing key; unexpected = the "
        "tracker.maskmem_backbone.* keys (kept by the 'backbone' substring rule under their unrenamed names; "
        "they also load renamed)",
        "keys": {"detector": 950, "sam2_convs": sum(k.startswith("detector.backbone.vision_backbone.sam2_convs.")
                                                    for k in new),
                 "tracker": sum(k.startswith("tracker.") for k in new), "total": len(state)},
        "md5": digest,
    }  # fmt: skip
    (out_dir / "build.json").write_text(json.dumps(meta, indent=1) + "\n")
    print(out_dir / "checkpoint.pt", digest, meta["keys"])


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]) if len(sys.argv) > 2 else OUT)
