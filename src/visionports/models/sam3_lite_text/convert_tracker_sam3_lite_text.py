"""Conversion of the SAM3 tracker inside released SAM3-LiteText files onto transformers' SAM3 tracker modules.

A released file with instance interactivity holds, besides the detector, the SAM2-style second neck
(``detector.backbone.vision_backbone.sam2_convs.<level>.*``, a clone of the detector's FPN neck with its own
weights) and the tracker (``tracker.<Sam3TrackerPredictor key>``: SAM prompt encoder + mask decoder, memory
encoder, memory attention, object-pointer heads and the free memory tables). The port holds them as

* ``tracker_neck``: transformers' ``Sam3VisionNeck(vision_config)`` (same layers as the detector's neck);
* ``tracker``: transformers' ``Sam3TrackerVideoModel(config, remove_vision_encoder=True)`` (what
  ``Sam3VideoModel`` builds), with a config from :func:`tracker_config_for`.

The rules read prepared weights (``detector.`` already stripped by ``strip_prefixes``; ``tracker.`` kept).
Two things the rules alone cannot express are handled by the helpers below:

* the original keeps one random-Fourier matrix for both the dense image encoding and the point encoding; the
  transformers model keeps two copies (:data:`TIED`, filled by :func:`add_tied_copies`);
* transformers builds the memory cross-attention key/value projections for a 64-channel memory whatever the
  config says; :func:`fit_memory_width` rebuilds them for ``memory_encoder_output_channels``.
"""

from __future__ import annotations

import re
from typing import Any

import torch
from torch import nn
from transformers.models.sam3 import configuration_sam3 as sam3_config
from transformers.models.sam3_tracker_video.configuration_sam3_tracker_video import Sam3TrackerVideoConfig

from ...core.checkpoint import CheckpointError
from ...core.key_mapping import Fold, Rename, Rule
from ...core.state_dict import block_indices, dim_of

# copies the transformers model keeps of one original tensor: our copy -> the key the rules fill
TIED = {
    "tracker.prompt_encoder.shared_embedding.positional_embedding": "tracker.shared_image_embedding.positional_embedding"
}
# the released SAM3 tracker (hard-coded in the original build_tracker / Sam3TrackerBase._build_sam_heads)
TRACKER_DEFAULTS: dict[str, Any] = {
    "hidden": 256, "mem_dim": 64, "ffn_dim": 2048, "image_size": 1008, "patch_size": 14, "sam_mlp_dim": 2048,
    "iou_head_hidden_dim": 256, "memory_attention_layers": 4, "num_maskmem": 7, "mask_in_chans": 16,
}  # fmt: skip
MASK_DOWNSAMPLER_LAYERS = 4  # log2(total stride 16) / log2(stride 2)


def tracker_config_for(
    hidden: int = 256,
    mem_dim: int = 64,
    ffn_dim: int = 2048,
    image_size: int = 1008,
    patch_size: int = 14,
    sam_mlp_dim: int = 2048,
    iou_head_hidden_dim: int = 256,
    memory_attention_layers: int = 4,
    num_maskmem: int = 7,
    mask_in_chans: int = 16,
    vision_config: sam3_config.Sam3VisionConfig | None = None,
    vit_embed_dim: int = 1024,
) -> Sam3TrackerVideoConfig:
    """A ``Sam3TrackerVideoConfig`` for the original tracker's widths (defaults: the released tracker).

    ``hidden`` is the detector's d_model (the tracker reads the SAM2 neck's features), ``mem_dim`` the memory
    width (must divide ``hidden``: object pointers are split into hidden/mem_dim memory tokens), ``ffn_dim`` the
    memory-attention FFN, ``sam_mlp_dim`` / ``iou_head_hidden_dim`` the SAM mask decoder's two-way MLP and IoU
    head. ``vision_config``: the detector's ``Sam3VisionConfig`` (it also configures ``tracker_neck``); without
    it one is made from ``vit_embed_dim`` (only its neck fields and grids matter to the tracker)."""
    if hidden % mem_dim:
        raise ValueError(f"the memory width {mem_dim} must divide the hidden width {hidden}")
    if image_size % patch_size:
        raise ValueError(f"image_size {image_size} must be a multiple of patch_size {patch_size}")
    if vision_config is None:
        vit = sam3_config.Sam3ViTConfig(
            hidden_size=vit_embed_dim, image_size=image_size, patch_size=patch_size
        )
        vision_config = sam3_config.Sam3VisionConfig(backbone_config=vit, fpn_hidden_size=hidden)
    else:
        vision_config = sam3_config.Sam3VisionConfig.from_dict(vision_config.to_dict())
        if vision_config.fpn_hidden_size != hidden or vision_config.backbone_config.patch_size != patch_size:
            raise ValueError("vision_config's fpn_hidden_size / patch_size differ from the tracker's")
    return Sam3TrackerVideoConfig(
        vision_config=vision_config,
        prompt_encoder_config={"hidden_size": hidden, "mask_input_channels": mask_in_chans, "patch_size": patch_size},
        mask_decoder_config={"hidden_size": hidden, "mlp_dim": sam_mlp_dim, "num_hidden_layers": 2,
                             "num_attention_heads": 8, "iou_head_hidden_dim": iou_head_hidden_dim},
        num_maskmem=num_maskmem,
        memory_attention_hidden_size=hidden,
        memory_attention_num_layers=memory_attention_layers,
        memory_attention_num_attention_heads=1,
        memory_attention_feed_forward_hidden_size=ffn_dim,
        memory_encoder_hidden_size=hidden,
        memory_encoder_output_channels=mem_dim,
        mask_downsampler_embed_dim=hidden,
        memory_fuser_embed_dim=hidden,
        memory_fuser_intermediate_dim=4 * hidden,  # ConvNeXt block: 4x expansion
        image_size=image_size,  # also sets the prompt encoder's size, the feature grids and the RoPE grid
    )  # fmt: skip


def infer_tracker(sd: dict[str, torch.Tensor], detector: dict[str, Any]) -> dict[str, Any] | None:
    """Tracker widths of prepared weights (``tracker.*`` + the second neck), or ``None`` when the file has no
    tracker. Image size and patch are the detector's; a file with only part of the tracker is refused."""
    present = [k for k in sd if k.startswith("tracker.")]
    neck = [k for k in sd if k.startswith("backbone.vision_backbone.sam2_convs.")]
    if not present and not neck:
        return None
    if not present or not neck:
        missing = "tracker.*" if not present else "detector.backbone.vision_backbone.sam2_convs.*"
        raise CheckpointError(f"the file holds half a tracker: {missing} is missing (convert with --set tracker=null "
                              "to leave the tracker out)")  # fmt: skip

    def dim(key: str, axis: int) -> int:
        return dim_of(sd, "tracker." + key, axis, "SAM3-LiteText tracker")

    layers = block_indices(sd, r"tracker\.transformer\.encoder\.layers\.(\d+)\.")
    return {
        "hidden": dim("no_mem_embed", 2),
        "mem_dim": dim("maskmem_backbone.out_proj.weight", 0),
        "ffn_dim": dim("transformer.encoder.layers.0.linear1.weight", 0),
        "image_size": int(detector["image_size"]),
        "patch_size": int(detector["patch_size"]),
        "sam_mlp_dim": dim("sam_mask_decoder.transformer.layers.0.mlp.lin1.weight", 0),
        "iou_head_hidden_dim": dim("sam_mask_decoder.iou_prediction_head.layers.0.weight", 0),
        "memory_attention_layers": len(layers),
        "num_maskmem": dim("maskmem_tpos_enc", 0),
        "mask_in_chans": dim("sam_prompt_encoder.mask_downscaling.3.weight", 0),
    }


def fit_memory_width(tracker: nn.Module) -> nn.Module:
    """Rebuild the memory cross-attention key/value projections of a ``Sam3TrackerVideoModel`` for its config's
    memory width (transformers builds them for 64 channels whatever ``memory_encoder_output_channels`` says)."""
    width = tracker.config.memory_encoder_output_channels
    for layer in tracker.memory_attention.layers:
        attention = layer.cross_attn_image
        if attention.kv_in_dim != width:
            attention.kv_in_dim = width
            attention.k_proj = nn.Linear(width, attention.internal_dim)
            attention.v_proj = nn.Linear(width, attention.internal_dim)
    return tracker


def add_tied_copies(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Mapped tensors + the copies of :data:`TIED` (each our copy of a tensor the rules filled once)."""
    return {**tensors, **{copy: tensors[source] for copy, source in TIED.items() if source in tensors}}


def _cat_rows(into: torch.Tensor, this: torch.Tensor) -> torch.Tensor:
    return torch.cat([into, this], dim=0)


def _mlp3(path: str) -> list[Rule]:
    """An original 3-layer ``MLP`` (``layers.0..2``) at ``path`` onto a ``Sam3TrackerVideoFeedForward``."""
    return [
        Rename(rf"^({path})\.layers\.0\.", r"\1.proj_in."),
        Rename(rf"^({path})\.layers\.2\.", r"\1.proj_out."),
        Rename(rf"^({path})\.layers\.1\.", r"\1.layers.0."),
    ]


def fpn_neck_key_mapping(original: str, ours: str) -> list[Rule]:
    """An original ViTDet neck ``backbone.vision_backbone.<original>.<level>.*`` onto a transformers
    ``Sam3VisionNeck`` at ``<ours>.fpn_layers.<level>.*`` (the detector's ``convs`` and the tracker's
    ``sam2_convs`` have the same layers)."""
    level = re.escape(ours) + r"\.fpn_layers\.\d+"
    return [
        Rename(rf"^backbone\.vision_backbone\.{original}\.(\d+)\.", rf"{ours}.fpn_layers.\1."),
        Rename(rf"^({level})\.dconv_2x2_0\.", r"\1.scale_layers.0."),
        Rename(rf"^({level})\.dconv_2x2_1\.", r"\1.scale_layers.2."),
        Rename(rf"^({level})\.dconv_2x2\.", r"\1.scale_layers.0."),
        Rename(rf"^({level})\.conv_1x1\.", r"\1.proj1."),
        Rename(rf"^({level})\.conv_3x3\.", r"\1.proj2."),
    ]


def tracker_key_mapping() -> list[Rule]:
    """Rules from every original ``tracker.*`` and ``backbone.vision_backbone.sam2_convs.*`` key (prepared
    weights) onto ``tracker.*`` (``Sam3TrackerVideoModel``) / ``tracker_neck.*`` (``Sam3VisionNeck``) keys.
    Complete the result with :func:`add_tied_copies`."""
    prompt = r"tracker\.prompt_encoder"
    decoder = r"tracker\.mask_decoder"
    memory = r"tracker\.memory_attention\.layers\.\d+"
    encoder = r"tracker\.memory_encoder"
    points = r"tracker\.sam_prompt_encoder\.point_embeddings"
    rules: list[Rule] = [
        # the four 1-row point embeddings (negative, positive, box corner 1, box corner 2) -> one 4-row table
        *[Fold(rf"{points}\.{i}\.weight", "tracker.sam_prompt_encoder.point_embeddings.0.weight", _cat_rows,
               "point_embeddings.0..3 stacked as rows 0..3 of point_embed") for i in (1, 2, 3)],
        *fpn_neck_key_mapping("sam2_convs", "tracker_neck"),
        # free tables and heads of the tracker itself
        Rename(r"^tracker\.maskmem_tpos_enc$", "tracker.memory_temporal_positional_encoding"),
        Rename(r"^tracker\.no_mem_embed$", "tracker.no_memory_embedding"),
        Rename(r"^tracker\.no_mem_pos_enc$", "tracker.no_memory_positional_encoding"),
        Rename(r"^tracker\.no_obj_ptr$", "tracker.no_object_pointer"),
        Rename(r"^tracker\.no_obj_embed_spatial$", "tracker.occlusion_spatial_embedding_parameter"),
        Rename(r"^tracker\.obj_ptr_proj\.", "tracker.object_pointer_proj."),
        *_mlp3(r"tracker\.object_pointer_proj"),
        Rename(r"^tracker\.obj_ptr_tpos_proj\.", "tracker.temporal_positional_encoding_projection_layer."),
        # memory attention (encoder-only transformer)
        Rename(r"^tracker\.transformer\.encoder\.layers\.", "tracker.memory_attention.layers."),
        Rename(r"^tracker\.transformer\.encoder\.norm\.", "tracker.memory_attention.layer_norm."),
        Rename(rf"^({memory})\.(self_attn|cross_attn_image)\.out_proj\.", r"\1.\2.o_proj."),
        Rename(rf"^({memory})\.norm(\d)\.", r"\1.layer_norm\2."),
        # memory encoder
        Rename(r"^tracker\.maskmem_backbone\.", "tracker.memory_encoder."),
        *[Rename(rf"^({encoder}\.mask_downsampler)\.encoder\.{3 * i + j}\.", rf"\1.layers.{i}.{name}.")
          for i in range(MASK_DOWNSAMPLER_LAYERS) for j, name in ((0, "conv"), (1, "layer_norm"))],
        Rename(rf"^({encoder}\.mask_downsampler)\.encoder\.{3 * MASK_DOWNSAMPLER_LAYERS}\.", r"\1.final_conv."),
        Rename(rf"^({encoder})\.pix_feat_proj\.", r"\1.feature_projection."),
        Rename(rf"^({encoder})\.out_proj\.", r"\1.projection."),
        Rename(rf"^({encoder})\.fuser\.layers\.(\d+)\.dwconv\.", r"\1.memory_fuser.layers.\2.depthwise_conv."),
        Rename(rf"^({encoder})\.fuser\.layers\.(\d+)\.norm\.", r"\1.memory_fuser.layers.\2.layer_norm."),
        Rename(rf"^({encoder})\.fuser\.layers\.(\d+)\.pwconv(\d)\.", r"\1.memory_fuser.layers.\2.pointwise_conv\3."),
        Rename(rf"^({encoder})\.fuser\.layers\.(\d+)\.gamma$", r"\1.memory_fuser.layers.\2.scale"),
        # SAM prompt encoder
        Rename(r"^tracker\.sam_prompt_encoder\.pe_layer\.positional_encoding_gaussian_matrix$",
               "tracker.shared_image_embedding.positional_embedding"),
        Rename(r"^tracker\.sam_prompt_encoder\.", "tracker.prompt_encoder."),
        Rename(rf"^({prompt})\.point_embeddings\.0\.weight$", r"\1.point_embed.weight"),
        *[Rename(rf"^({prompt})\.mask_downscaling\.{i}\.", rf"\1.mask_embed.{name}.")
          for i, name in ((0, "conv1"), (1, "layer_norm1"), (3, "conv2"), (4, "layer_norm2"), (6, "conv3"))],
        # SAM mask decoder
        Rename(r"^tracker\.sam_mask_decoder\.", "tracker.mask_decoder."),
        Rename(rf"^({decoder}\.transformer\.(?:layers\.\d+\.\w+|final_attn_token_to_image))\.out_proj\.",
               r"\1.o_proj."),
        Rename(rf"^({decoder}\.transformer\.layers\.\d+)\.norm(\d)\.", r"\1.layer_norm\2."),
        Rename(rf"^({decoder}\.transformer\.layers\.\d+)\.mlp\.lin1\.", r"\1.mlp.proj_in."),
        Rename(rf"^({decoder}\.transformer\.layers\.\d+)\.mlp\.lin2\.", r"\1.mlp.proj_out."),
        Rename(rf"^({decoder}\.transformer)\.norm_final_attn\.", r"\1.layer_norm_final_attn."),
        *[Rename(rf"^({decoder})\.output_upscaling\.{i}\.", rf"\1.{name}.")
          for i, name in ((0, "upscale_conv1"), (1, "upscale_layer_norm"), (3, "upscale_conv2"))],
        *_mlp3(rf"{decoder}\.(?:output_hypernetworks_mlps\.\d+|iou_prediction_head|pred_obj_score_head)"),
    ]  # fmt: skip
    return rules
