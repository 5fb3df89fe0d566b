"""Upstream ``transformers.Deimv2ForObjectDetection`` as a black-box anchor for the DEIMv2 port tests.

Provides upstream configs equal to the eight released DEIMv2 ymls, a deterministic random re-draw of an
upstream model, and a converter from an upstream state dict to the original checkpoint layout
(``{'model': state_dict}`` of the research code, commit 0fff8d4).

Upstream (transformers 5.23) is NOT numerically identical to the original; see ``KNOWN_DEVIATIONS``.
The converter maps everything the original can hold and drops what it cannot (``DROPPED_UPSTREAM_KEYS``).
Encoder outputs (``outputs.encoder_last_hidden_state``) agree with the original for all presets but S/M;
final logits/boxes do not agree for any preset. Both implementations run RMSNorm in float32 even for float64
models, so float64 comparisons of decoder outputs bottom out near 1e-6 once upstream inputs differ at 1e-13.
"""

from __future__ import annotations

import re
from typing import Any

import torch
from torch import Tensor, nn
from transformers import Deimv2Config

PRESETS: tuple[str, ...] = ("atto", "femto", "pico", "n", "s", "m", "l", "x")

EVAL_SIZES: dict[str, int] = {
    "atto": 320,
    "femto": 416,
    "pico": 640,
    "n": 640,
    "s": 640,
    "m": 640,
    "l": 640,
    "x": 640,
}

ORIGINAL_YMLS: dict[str, str] = {
    "atto": "configs/deimv2/deimv2_hgnetv2_atto_coco.yml",
    "femto": "configs/deimv2/deimv2_hgnetv2_femto_coco.yml",
    "pico": "configs/deimv2/deimv2_hgnetv2_pico_coco.yml",
    "n": "configs/deimv2/deimv2_hgnetv2_n_coco.yml",
    "s": "configs/deimv2/deimv2_dinov3_s_coco.yml",
    "m": "configs/deimv2/deimv2_dinov3_m_coco.yml",
    "l": "configs/deimv2/deimv2_dinov3_l_coco.yml",
    "x": "configs/deimv2/deimv2_dinov3_x_coco.yml",
}

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

KNOWN_DEVIATIONS: dict[str, str] = {
    "enc_output": "upstream applies Linear+LayerNorm (model.enc_output) to the flattened memory before the "
    "encoder score/box heads and the query content; the original has no such module (cannot be made identity).",
    "query_pos": "upstream recomputes query_pos_head(ref) in every decoder layer; the original computes it once "
    "from the initial reference boxes and reuses it in all layers.",
    "mlp_act": "upstream uses ReLU in enc_bbox_head, pre_bbox_head, bbox_embed (dec_bbox_head) and the LQE MLPs; "
    "the original uses mlp_act/activation = SiLU there (query_pos_head follows decoder_activation_function).",
    "vit_tiny_last_norm": "S/M: DINOv3ViTBackbone always LayerNorms the last stage, so the stride-32 ViT-Tiny(+) "
    "feature is normalised upstream; the original uses the raw block-11 output.",
    "aifi_pos_embed": "with config.eval_size set, upstream AIFI drops the sin-cos position embedding in eval; "
    "the presets therefore use eval_size=None (the original builds it for eval_spatial_size).",
    "rope_precision": "DINOv3 RoPE sin/cos are computed in float32 upstream even for a float64 model; the "
    "original divides float32 coords by the (float64 after .double()) periods buffer.",
    "sincos_precision": "upstream AIFI position embeddings are computed in float64, the original's in float32.",
    "anchor_fill": "invalid anchors hold finfo(dtype).max upstream and +inf in the original (same sigmoid).",
    "ffn_clamp": "the original clamps the FFN residual to +-65504 before norm3; upstream does not (inactive "
    "unless activations exceed that).",
}


def _hgnet(
    out_channels: list[int],
    num_blocks: list[int],
    kernel_sizes: list[int],
    out_indices: list[int],
) -> dict[str, Any]:
    n = len(out_channels)
    in_channels = [16] + out_channels[:-1]
    mid_channels = [16, 32, 64, 128][:n]
    return {
        "model_type": "hgnet_v2",
        "stem_channels": [3, 16, 16],
        "embedding_size": 16,
        "stage_in_channels": in_channels,
        "stage_mid_channels": mid_channels,
        "stage_out_channels": out_channels,
        "stage_num_blocks": num_blocks,
        "stage_downsample": [False] + [True] * (n - 1),
        "stage_light_block": [False, False] + [True] * (n - 2),
        "stage_kernel_size": kernel_sizes,
        "stage_numb_of_layers": [3] * n,
        "depths": num_blocks,
        "hidden_sizes": out_channels,
        "hidden_act": "relu",
        "use_learnable_affine_block": True,
        "out_indices": out_indices,
    }


def _vit(name: str) -> dict[str, Any]:
    if name in ("vit_tiny", "vit_tinyplus"):
        dim, heads = (192, 3) if name == "vit_tiny" else (256, 4)
        return {
            "model_type": "dinov3_vit",
            "hidden_size": dim,
            "num_attention_heads": heads,
            "num_hidden_layers": 12,
            "intermediate_size": 4 * dim,
            "hidden_act": "gelu",
            "use_gated_mlp": False,
            "layerscale_value": 1.0,
            "num_register_tokens": 0,
            "query_bias": True,
            "key_bias": True,
            "value_bias": True,
            "layer_norm_eps": 1e-6,
            "rope_theta": 100.0,
            "pos_embed_rescale": None,
            "apply_layernorm": False,
            "reshape_hidden_states": True,
            "out_indices": [4, 8, 12],
        }
    gated = name == "dinov3_vits16plus"
    return {
        "model_type": "dinov3_vit",
        "hidden_size": 384,
        "num_attention_heads": 6,
        "num_hidden_layers": 12,
        "intermediate_size": 1536,
        "hidden_act": "silu" if gated else "gelu",
        "use_gated_mlp": gated,
        "layerscale_value": 1e-5,
        "num_register_tokens": 4,
        "query_bias": True,
        "key_bias": False,
        "value_bias": True,
        "layer_norm_eps": 1e-5,
        "rope_theta": 100.0,
        "pos_embed_rescale": 2.0,
        "apply_layernorm": True,
        "reshape_hidden_states": True,
        "out_indices": [6, 9, 12],
    }


_COMMON: dict[str, Any] = {
    "num_labels": 80,
    "activation_function": "silu",
    "encoder_activation_function": "gelu",
    "decoder_activation_function": "silu",
    "encoder_attention_heads": 8,
    "decoder_attention_heads": 8,
    "encoder_fuse_op": "sum",
    "positional_encoding_temperature": 10000,
    "normalize_before": False,
    "dropout": 0.0,
    "attention_dropout": 0.0,
    "layer_norm_eps": 1e-5,
    "batch_norm_eps": 1e-5,
    "freeze_backbone_batch_norms": False,
    "eval_size": None,
    "eval_idx": -1,
    "layer_scale": 1,
    "max_num_bins": 32,
    "reg_scale": 4.0,
    "up": 0.5,
    "decoder_offset_scale": 0.5,
    "decoder_method": "default",
    "learn_initial_query": False,
    "num_denoising": 100,
    "label_noise_ratio": 0.5,
    "box_noise_scale": 1.0,
    "top_prob_values": 4,
    "lqe_hidden_dim": 64,
    "lqe_layers": 2,
    "use_focal_loss": True,
    "focal_loss_alpha": 0.75,
    "focal_loss_gamma": 1.5,
    "mal_alpha": None,
    "matcher_alpha": 0.25,
    "matcher_gamma": 2.0,
    "matcher_class_cost": 2.0,
    "matcher_bbox_cost": 5.0,
    "matcher_giou_cost": 2.0,
    "weight_loss_mal": 1.0,
    "weight_loss_bbox": 5.0,
    "weight_loss_giou": 2.0,
    "weight_loss_fgl": 0.15,
    "weight_loss_ddf": 1.5,
}


def _lite(
    backbone: dict[str, Any], in_ch: int, hidden: int, ffn: int, queries: int, size: int
) -> dict[str, Any]:
    return {
        **_COMMON,
        "backbone_config": backbone,
        "encoder_type": "lite",
        "encoder_in_channels": [in_ch],
        "encoder_hidden_dim": hidden,
        "encoder_layers": 0,
        "encoder_ffn_dim": 1024,
        "encode_proj_layers": [],
        "feat_strides": [16, 32],
        "hidden_expansion": 0.34,
        "depth_mult": 0.5,
        "encoder_has_trailing_conv": True,
        "d_model": hidden,
        "decoder_in_channels": [hidden, hidden],
        "num_feature_levels": 2,
        "decoder_n_points": [4, 2],
        "decoder_layers": 3,
        "decoder_ffn_dim": ffn,
        "num_queries": queries,
        "use_gateway": False,
        "share_bbox_head": True,
        "weight_loss_fgl": 0.0,
        "weight_loss_ddf": 0.0,
        "use_dense_one_to_one": False,
        "anchor_image_size": [size, size],
    }


def _dino(
    vit: str, sta: int, hidden: int, enc_ffn: int, expansion: float, depth: float, dec_ffn: int, layers: int
) -> dict[str, Any]:
    return {
        **_COMMON,
        "backbone_config": _vit(vit),
        "spatial_tuning_adapter_inplanes": sta,
        "encoder_type": "hybrid",
        "encoder_in_channels": [hidden] * 3,
        "encoder_hidden_dim": hidden,
        "encoder_layers": 1,
        "encoder_ffn_dim": enc_ffn,
        "encode_proj_layers": [2],
        "feat_strides": [8, 16, 32],
        "hidden_expansion": expansion,
        "depth_mult": depth,
        "encoder_has_trailing_conv": False,
        "d_model": hidden,
        "decoder_in_channels": [hidden] * 3,
        "num_feature_levels": 3,
        "decoder_n_points": [3, 6, 3],
        "decoder_layers": layers,
        "decoder_ffn_dim": dec_ffn,
        "num_queries": 300,
        "use_gateway": True,
        "share_bbox_head": False,
        "anchor_image_size": [640, 640],
    }


UPSTREAM_PRESETS: dict[str, dict[str, Any]] = {
    "atto": _lite(_hgnet([64, 256, 256], [1, 1, 1], [3, 3, 3], [3]), 256, 64, 160, 100, 320),
    "femto": _lite(_hgnet([64, 256, 512], [1, 1, 1], [3, 3, 5], [3]), 512, 96, 256, 150, 416),
    "pico": _lite(_hgnet([64, 256, 512], [1, 1, 2], [3, 3, 5], [3]), 512, 112, 320, 200, 640),
    "n": {
        **_COMMON,
        "backbone_config": _hgnet([64, 256, 512, 1024], [1, 1, 2, 1], [3, 3, 5, 5], [3, 4]),
        "encoder_type": "hybrid",
        "encoder_in_channels": [512, 1024],
        "encoder_hidden_dim": 128,
        "encoder_layers": 1,
        "encoder_ffn_dim": 512,
        "encode_proj_layers": [1],
        "feat_strides": [16, 32],
        "hidden_expansion": 0.34,
        "depth_mult": 0.5,
        "encoder_has_trailing_conv": True,
        "d_model": 128,
        "decoder_in_channels": [128, 128],
        "num_feature_levels": 2,
        "decoder_n_points": [6, 6],
        "decoder_layers": 3,
        "decoder_ffn_dim": 512,
        "num_queries": 300,
        "use_gateway": True,
        "share_bbox_head": False,
        "anchor_image_size": [640, 640],
    },
    "s": _dino("vit_tiny", 16, 192, 512, 0.34, 0.67, 512, 4),
    "m": _dino("vit_tinyplus", 16, 256, 512, 0.67, 1.0, 512, 4),
    "l": _dino("dinov3_vits16", 32, 224, 896, 1.0, 1.0, 1792, 4),
    "x": _dino("dinov3_vits16plus", 64, 256, 1024, 1.25, 1.37, 2048, 6),
}


def upstream_config(preset: str) -> Deimv2Config:
    """Return the upstream ``Deimv2Config`` for a released DEIMv2 variant."""
    if preset not in UPSTREAM_PRESETS:
        raise KeyError(f"unknown preset {preset!r}; expected one of {PRESETS}")
    kwargs = {k: (dict(v) if isinstance(v, dict) else v) for k, v in UPSTREAM_PRESETS[preset].items()}
    return Deimv2Config(**kwargs)


# --------------------------------------------------------------------------------------------------
# random re-draw
# --------------------------------------------------------------------------------------------------

_BOX_LAST_LAYER = re.compile(r"(?:^|\.)(?:enc_bbox_head|pre_bbox_head|bbox_embed\.\d+)\.layers\.2$")
_KEEP_MODULE_TENSORS = {
    "Deimv2Decoder": ("up", "reg_scale"),
    "Deimv2MultiscaleDeformableAttention": ("num_points_scale",),
    "DINOv3ViTRopePositionEmbedding": ("inv_freq",),
}


def _normal(gen: torch.Generator, like: Tensor, mean: float = 0.0, std: float = 1.0) -> Tensor:
    return (torch.randn(like.shape, generator=gen, dtype=torch.float64) * std + mean).to(like.dtype)


def _uniform(gen: torch.Generator, like: Tensor, low: float, high: float) -> Tensor:
    return (torch.rand(like.shape, generator=gen, dtype=torch.float64) * (high - low) + low).to(like.dtype)


def _fan_in(weight: Tensor) -> int:
    return max(1, weight[0].numel()) if weight.dim() > 1 else max(1, weight.numel())


def _is_batch_norm(module: nn.Module) -> bool:
    return isinstance(module, nn.modules.batchnorm._BatchNorm) or type(module).__name__.endswith(
        "FrozenBatchNorm2d"
    )


def _draw(
    name: str, module: nn.Module, attr: str, t: Tensor, gen: torch.Generator, ls_active: bool
) -> Tensor:
    kind = type(module).__name__
    if isinstance(module, (nn.Conv2d, nn.Linear)):
        if attr == "weight":
            scale = 3.0 if isinstance(module, nn.Linear) and _BOX_LAST_LAYER.search(name) else 1.0
            return _normal(gen, t, std=scale / _fan_in(t) ** 0.5)
        return _normal(gen, t, std=0.05)
    if _is_batch_norm(module):
        if attr == "weight":
            return _normal(gen, t, 1.0, 0.1)
        if attr == "running_var":
            return _uniform(gen, t, 0.5, 1.5)
        return _normal(gen, t, std=0.1 if attr == "running_mean" else 0.05)
    if isinstance(module, nn.LayerNorm) or kind.endswith("RMSNorm"):
        return _normal(gen, t, 1.0, 0.1) if attr == "weight" else _normal(gen, t, std=0.05)
    if kind == "HGNetV2LearnableAffineBlock":
        return _normal(gen, t, 1.0, 0.1) if attr == "scale" else _normal(gen, t, std=0.05)
    if kind == "DINOv3ViTLayerScale":
        return _normal(gen, t, 0.4, 0.1) if ls_active else torch.ones_like(t)
    if kind == "DINOv3ViTEmbeddings":
        return _normal(gen, t)
    if isinstance(module, nn.Embedding):
        out = _normal(gen, t)
        if module.padding_idx is not None:
            out[module.padding_idx] = 0
        return out
    raise TypeError(f"randomize_: no rule for {name}.{attr} ({kind})")


def _synthetic_images(gen: torch.Generator, batch: int, size: int, normalize: bool) -> Tensor:
    coarse = torch.rand(batch, 3, max(2, size // 32), max(2, size // 32), generator=gen)
    mid = torch.rand(batch, 3, max(2, size // 8), max(2, size // 8), generator=gen)
    fine = torch.rand(batch, 3, size, size, generator=gen)
    up = nn.functional.interpolate
    img = 0.55 * up(coarse, size=(size, size), mode="bilinear", align_corners=False)
    img = img + 0.3 * up(mid, size=(size, size), mode="bilinear", align_corners=False) + 0.15 * fine
    img = (img.clamp(0, 1) * 255).round() / 255
    if normalize:
        mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        img = (img - mean) / std
    return img


def synthetic_pixel_values(preset: str, batch: int, seed: int, size: int | None = None) -> Tensor:
    """Deterministic smooth random images at the preset's eval size, preprocessed like its val pipeline."""
    gen = torch.Generator().manual_seed(int(seed))
    size = EVAL_SIZES[preset] if size is None else size
    return _synthetic_images(gen, batch, size, normalize=preset in ("s", "m", "l", "x"))


@torch.no_grad()
def _calibrate_batch_norms(model: nn.Module, gen: torch.Generator, size: int) -> None:
    config = model.config
    normalize = getattr(config.backbone_config, "model_type", None) == "dinov3_vit"
    param = next(model.parameters())
    images = _synthetic_images(gen, 2, size, normalize).to(param.device, param.dtype)

    def hook(module: nn.Module, args: tuple[Tensor, ...]) -> None:
        x = args[0].double()
        mean = x.mean(dim=(0, 2, 3))
        var = x.var(dim=(0, 2, 3), unbiased=False)
        noise = torch.randn(mean.shape, generator=gen, dtype=torch.float64)
        factor = torch.rand(var.shape, generator=gen, dtype=torch.float64) + 0.5
        module.running_mean.copy_(mean + 0.1 * noise * var.sqrt())
        module.running_var.copy_(var * factor + 1e-3)

    handles = [m.register_forward_pre_hook(hook) for m in model.modules() if _is_batch_norm(m)]
    was_training = model.training
    try:
        model.eval()
        model(pixel_values=images)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)


@torch.no_grad()
def randomize_(
    model: nn.Module, seed: int, calibrate: bool = True, image_size: int | None = None
) -> nn.Module:
    """Re-draw every floating parameter/buffer of an upstream DEIMv2 model in place, deterministically.

    Weights ~ N(0, 1/fan_in) (the last layer of the box-regression MLPs uses 3x that std), biases ~ N(0, 0.05^2),
    norm weights ~ 1 + N(0, 0.1^2), HGNetV2 affine blocks near identity, DINOv3 layer scales ~ N(0.4, 0.1^2)
    (kept at 1 for ViT-Tiny(+) which has none in the original), tokens/embeddings ~ N(0, 1). Constants are kept:
    ``decoder.up``/``reg_scale``, ``num_points_scale``, RoPE ``inv_freq``, non-floating buffers; anchors and
    valid masks are plain attributes and untouched. With ``calibrate`` one eval forward on two synthetic images
    (``image_size``, default ``config.anchor_image_size``) sets each BatchNorm's running stats from its input
    statistics (with noise), so features are not dominated by a constant component.
    """
    gen = torch.Generator().manual_seed(int(seed))
    backbone_cfg = getattr(model.config, "backbone_config", None)
    ls_active = getattr(backbone_cfg, "layerscale_value", 1.0) != 1.0
    seen: set[int] = set()
    for name, module in model.named_modules():
        keep = _KEEP_MODULE_TENSORS.get(type(module).__name__, ())
        tensors = list(module.named_parameters(recurse=False)) + list(module.named_buffers(recurse=False))
        for attr, t in tensors:
            if t is None or id(t) in seen:
                continue
            seen.add(id(t))
            if attr in keep or not t.is_floating_point() or t.numel() == 0:
                continue
            t.copy_(_draw(name, module, attr, t, gen, ls_active))
    if calibrate:
        size = image_size
        if size is None:
            anchor = model.config.anchor_image_size
            size = int(anchor[0]) if anchor else 320
        _calibrate_batch_norms(model, gen, size)
    return model


# --------------------------------------------------------------------------------------------------
# upstream -> original state dict
# --------------------------------------------------------------------------------------------------

DROPPED_UPSTREAM_KEYS: tuple[str, ...] = (
    "model.enc_output.* (no original counterpart; see KNOWN_DEVIATIONS['enc_output'])",
    "class_embed.* / bbox_embed.* (top-level tied copies of model.decoder.class_embed / bbox_embed)",
    "S/M: backbone embeddings.mask_token and embeddings.register_tokens (empty; unused in eval), backbone.norm "
    "(used upstream on the last stage, see KNOWN_DEVIATIONS['vit_tiny_last_norm'])",
    "S/M: layer_scale{1,2}.lambda1 are folded into attn.proj / mlp.fc2 (exact when 1, as randomize_ keeps them)",
    "L/X: the k third of qkv.bias is written as 0 and masked by bias_mask (upstream has no key bias)",
)


class _Mapper:
    def __init__(self, src: dict[str, Tensor]) -> None:
        self.src = src
        self.out: dict[str, Tensor] = {}
        self.used: set[str] = set()
        ref = src.get("model.decoder.up")
        self.float_dtype = ref.dtype if ref is not None else torch.float32

    def take(self, key: str) -> Tensor:
        self.used.add(key)
        return self.src[key].detach()

    def put(self, key: str, value: Tensor) -> None:
        self.out[key] = value

    def copy(self, dst: str, src: str) -> None:
        self.put(dst, self.take(src))

    def linear(self, dst: str, src: str, bias: bool = True) -> None:
        self.copy(f"{dst}.weight", f"{src}.weight")
        if bias:
            self.copy(f"{dst}.bias", f"{src}.bias")

    def bn(self, dst: str, src: str) -> None:
        for attr in ("weight", "bias", "running_mean", "running_var"):
            self.copy(f"{dst}.{attr}", f"{src}.{attr}")
        nbt = f"{src}.num_batches_tracked"
        if nbt in self.src:
            self.copy(f"{dst}.num_batches_tracked", nbt)
        else:
            self.put(f"{dst}.num_batches_tracked", torch.tensor(0, dtype=torch.long))

    def conv_norm(self, dst: str, src: str, conv: str = "conv", norm: str = "norm") -> None:
        self.copy(f"{dst}.{conv}.weight", f"{src}.conv.weight")
        self.bn(f"{dst}.{norm}", f"{src}.norm")

    def fused_qkv(self, dst: str, src: str, prefix: str = "", bias: str = "qkv") -> None:
        q, k, v = (self.take(f"{src}.{p}_proj.weight") for p in "qkv")
        self.put(f"{dst}.{prefix}weight", torch.cat([q, k, v], 0))
        qb, vb = self.take(f"{src}.q_proj.bias"), self.take(f"{src}.v_proj.bias")
        kkey = f"{src}.k_proj.bias"
        kb = self.take(kkey) if kkey in self.src else torch.zeros_like(qb)
        self.put(f"{dst}.{prefix}bias", torch.cat([qb, kb, vb], 0))


def _map_hgnet(mp: _Mapper, cfg: Deimv2Config) -> None:
    bb = cfg.backbone_config
    src = "model.conv_encoder.model"

    def conv_bn_act(dst: str, s: str, lab: bool) -> None:
        mp.copy(f"{dst}.conv.weight", f"{s}.convolution.weight")
        mp.bn(f"{dst}.bn", f"{s}.normalization")
        if lab:
            mp.copy(f"{dst}.lab.scale", f"{s}.lab.scale")
            mp.copy(f"{dst}.lab.bias", f"{s}.lab.bias")

    for stem in ("stem1", "stem2a", "stem2b", "stem3", "stem4"):
        conv_bn_act(f"backbone.stem.{stem}", f"{src}.embedder.{stem}", True)
    for i in range(len(bb.stage_in_channels)):
        st, ss = f"backbone.stages.{i}", f"{src}.encoder.stages.{i}"
        if bb.stage_downsample[i]:
            conv_bn_act(f"{st}.downsample", f"{ss}.downsample", False)
        for j in range(bb.stage_num_blocks[i]):
            bt, bs = f"{st}.blocks.{j}", f"{ss}.blocks.{j}"
            for k in range(bb.stage_numb_of_layers[i]):
                if bb.stage_light_block[i]:
                    conv_bn_act(f"{bt}.layers.{k}.conv1", f"{bs}.layers.{k}.conv1", False)
                    conv_bn_act(f"{bt}.layers.{k}.conv2", f"{bs}.layers.{k}.conv2", True)
                else:
                    conv_bn_act(f"{bt}.layers.{k}", f"{bs}.layers.{k}", True)
            for a in range(2):
                conv_bn_act(f"{bt}.aggregation.{a}", f"{bs}.aggregation.{a}", True)


def _rope_periods(head_dim: int, base: float, dtype: torch.dtype) -> Tensor:
    periods = base ** (2 * torch.arange(head_dim // 4, dtype=torch.float32) / (head_dim // 2))
    return periods.to(dtype)


def _map_dinov3(mp: _Mapper, cfg: Deimv2Config) -> None:
    vit = cfg.backbone_config
    src = "model.conv_encoder.backbone"
    dim, heads = vit.hidden_size, vit.num_attention_heads
    periods = _rope_periods(dim // heads, vit.rope_theta, mp.float_dtype)
    tiny = vit.num_register_tokens == 0
    emb = f"{src}.embeddings"
    if tiny:
        dst = "backbone.dinov3._model"
        mp.copy(f"{dst}.cls_token", f"{emb}.cls_token")
        mp.copy(f"{dst}.patch_embed.proj.weight", f"{emb}.patch_embeddings.weight")
        mp.copy(f"{dst}.patch_embed.proj.bias", f"{emb}.patch_embeddings.bias")
        for key in (f"{emb}.mask_token", f"{emb}.register_tokens", f"{src}.norm.weight", f"{src}.norm.bias"):
            mp.take(key)
    else:
        dst = "backbone.dinov3"
        mp.copy(f"{dst}.cls_token", f"{emb}.cls_token")
        mp.copy(f"{dst}.storage_tokens", f"{emb}.register_tokens")
        mp.put(f"{dst}.mask_token", mp.take(f"{emb}.mask_token").reshape(1, dim))
        mp.copy(f"{dst}.patch_embed.proj.weight", f"{emb}.patch_embeddings.weight")
        mp.copy(f"{dst}.patch_embed.proj.bias", f"{emb}.patch_embeddings.bias")
        mp.put(f"{dst}.rope_embed.periods", periods)
    for i in range(vit.num_hidden_layers):
        b, s = f"{dst}.blocks.{i}", f"{src}.model.layer.{i}"
        mp.linear(f"{b}.norm1", f"{s}.norm1")
        mp.fused_qkv(f"{b}.attn.qkv", f"{s}.attention", prefix="")
        ls1, ls2 = mp.take(f"{s}.layer_scale1.lambda1"), mp.take(f"{s}.layer_scale2.lambda1")
        if tiny:
            mp.put(f"{b}.attn.proj.weight", mp.take(f"{s}.attention.o_proj.weight") * ls1[:, None])
            mp.put(f"{b}.attn.proj.bias", mp.take(f"{s}.attention.o_proj.bias") * ls1)
        else:
            mp.put(f"{b}.attn.qkv.bias_mask", _k_bias_mask(dim, mp.float_dtype))
            mp.linear(f"{b}.attn.proj", f"{s}.attention.o_proj")
            mp.put(f"{b}.ls1.gamma", ls1)
        mp.linear(f"{b}.norm2", f"{s}.norm2")
        if vit.use_gated_mlp:
            mp.linear(f"{b}.mlp.w1", f"{s}.mlp.gate_proj")
            mp.linear(f"{b}.mlp.w2", f"{s}.mlp.up_proj")
            mp.linear(f"{b}.mlp.w3", f"{s}.mlp.down_proj")
        else:
            mp.linear(f"{b}.mlp.fc1", f"{s}.mlp.up_proj")
            if tiny:
                mp.put(f"{b}.mlp.fc2.weight", mp.take(f"{s}.mlp.down_proj.weight") * ls2[:, None])
                mp.put(f"{b}.mlp.fc2.bias", mp.take(f"{s}.mlp.down_proj.bias") * ls2)
            else:
                mp.linear(f"{b}.mlp.fc2", f"{s}.mlp.down_proj")
        if not tiny:
            mp.put(f"{b}.ls2.gamma", ls2)
    if tiny:
        mp.put(f"{dst}.rope_embed.periods", periods)
    else:
        mp.linear(f"{dst}.norm", f"{src}.norm")

    sta, ssta = "backbone.sta", "model.conv_encoder.spatial_tuning_adapter"
    for name, src_name, conv_idx in (("stem", "stem_conv", 0), ("conv2", "conv2", 0), ("conv3", "conv3", 1)):
        mp.conv_norm(f"{sta}.{name}", f"{ssta}.{src_name}", conv=str(conv_idx), norm=str(conv_idx + 1))
    mp.conv_norm(f"{sta}.conv4", f"{ssta}.conv4", conv="1", norm="2")
    for i in range(3):
        mp.copy(f"backbone.convs.{i}.weight", f"model.conv_encoder.fusion_proj.{i}.conv.weight")
    for i in range(3):
        mp.bn(f"backbone.norms.{i}", f"model.conv_encoder.fusion_proj.{i}.norm")


def _k_bias_mask(dim: int, dtype: torch.dtype) -> Tensor:
    mask = torch.ones(3 * dim, dtype=dtype)
    mask[dim : 2 * dim] = 0
    return mask


def _original_anchors(size: int, strides: list[int], eps: float = 1e-2) -> tuple[Tensor, Tensor]:
    anchors = []
    for level, stride in enumerate(strides):
        h = w = int(size / stride)
        gy, gx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
        xy = (torch.stack([gx, gy], -1).unsqueeze(0) + 0.5) / torch.tensor([w, h], dtype=torch.float32)
        wh = torch.ones_like(xy) * 0.05 * (2.0**level)
        anchors.append(torch.cat([xy, wh], -1).reshape(-1, h * w, 4))
    cat = torch.cat(anchors, 1)
    valid = ((cat > eps) * (cat < 1 - eps)).all(-1, keepdim=True)
    logits = torch.where(valid, torch.log(cat / (1 - cat)), torch.inf)
    return logits, valid


def _map_decoder(mp: _Mapper, cfg: Deimv2Config, preset: str) -> None:
    src = "model.decoder"
    up, reg_scale = mp.take(f"{src}.up"), mp.take(f"{src}.reg_scale")
    if torch.equal(reg_scale, reg_scale.round()):
        reg_scale = reg_scale.round().to(torch.long)
    anchors, valid = _original_anchors(EVAL_SIZES[preset], list(cfg.feat_strides))
    mp.put("decoder.up", up)
    mp.put("decoder.reg_scale", reg_scale)
    mp.put("decoder.anchors", anchors.to(mp.float_dtype))
    mp.put("decoder.valid_mask", valid)
    mp.put("decoder.decoder.up", up)
    mp.put("decoder.decoder.reg_scale", reg_scale)
    for i in range(cfg.decoder_layers):
        d, s = f"decoder.decoder.layers.{i}", f"{src}.layers.{i}"
        mp.fused_qkv(f"{d}.self_attn", f"{s}.self_attn", prefix="in_proj_")
        mp.linear(f"{d}.self_attn.out_proj", f"{s}.self_attn.o_proj")
        mp.copy(f"{d}.norm1.scale", f"{s}.self_attn_layer_norm.weight")
        mp.copy(f"{d}.cross_attn.num_points_scale", f"{s}.encoder_attn.num_points_scale")
        mp.linear(f"{d}.cross_attn.sampling_offsets", f"{s}.encoder_attn.sampling_offsets")
        mp.linear(f"{d}.cross_attn.attention_weights", f"{s}.encoder_attn.attention_weights")
        if cfg.use_gateway:
            mp.linear(f"{d}.gateway.gate", f"{s}.gateway.gate")
            mp.copy(f"{d}.gateway.norm.scale", f"{s}.gateway.norm.weight")
        else:
            mp.copy(f"{d}.norm2.scale", f"{s}.encoder_attn_layer_norm.weight")
        for attr in ("weight", "bias"):
            gate, upp = mp.take(f"{s}.mlp.gate_proj.{attr}"), mp.take(f"{s}.mlp.up_proj.{attr}")
            mp.put(f"{d}.swish_ffn.w12.{attr}", torch.cat([gate, upp], 0))
        mp.linear(f"{d}.swish_ffn.w3", f"{s}.mlp.down_proj")
        mp.copy(f"{d}.norm3.scale", f"{s}.final_layer_norm.weight")
    for i in range(cfg.decoder_layers):
        for j in range(cfg.lqe_layers):
            mp.linear(
                f"decoder.decoder.lqe_layers.{i}.reg_conf.layers.{j}",
                f"{src}.lqe_layers.{i}.reg_conf.layers.{j}",
            )
    mp.copy("decoder.denoising_class_embed.weight", "model.denoising_class_embed.weight")
    mp.linear("decoder.enc_score_head", "model.enc_score_head")
    for head, shead in (
        ("enc_bbox_head", "model.enc_bbox_head"),
        ("query_pos_head", f"{src}.query_pos_head"),
        ("pre_bbox_head", f"{src}.pre_bbox_head"),
    ):
        for j in range(3):
            mp.linear(f"decoder.{head}.layers.{j}", f"{shead}.layers.{j}")
    for i in range(cfg.decoder_layers):
        mp.linear(f"decoder.dec_score_head.{i}", f"{src}.class_embed.{i}")
    for i in range(cfg.decoder_layers):
        for j in range(3):
            mp.linear(f"decoder.dec_bbox_head.{i}.layers.{j}", f"{src}.bbox_embed.{i}.layers.{j}")


def _map_elan(mp: _Mapper, dst: str, src: str, trailing: bool) -> None:
    mp.conv_norm(f"{dst}.cv1", f"{src}.conv1")
    for cv, rep in (("cv2", "csp_rep1"), ("cv3", "csp_rep2")):
        s = f"{src}.{rep}"
        mp.conv_norm(f"{dst}.{cv}.0.conv1", f"{s}.conv1")
        j = 0
        while f"{s}.bottlenecks.{j}.conv1.conv.weight" in mp.src:
            for c in ("conv1", "conv2"):
                mp.conv_norm(f"{dst}.{cv}.0.bottlenecks.{j}.{c}", f"{s}.bottlenecks.{j}.{c}")
            j += 1
        if trailing:
            mp.conv_norm(f"{dst}.{cv}.1", f"{s}.conv2")
    mp.conv_norm(f"{dst}.cv4", f"{src}.conv2")


def _map_encoder(mp: _Mapper, cfg: Deimv2Config) -> None:
    src = "model.encoder"
    trailing = cfg.encoder_has_trailing_conv
    if cfg.encoder_type == "lite":
        for i in range(len(cfg.encoder_in_channels)):
            mp.conv_norm(f"encoder.input_proj.{i}", f"{src}.input_proj.{i}")
        for k in (1, 2):
            mp.conv_norm(f"encoder.down_sample{k}", f"{src}.down_conv{k}", conv="1", norm="2")
        mp.conv_norm("encoder.bi_fusion.cv", f"{src}.bi_fusion_conv")
        _map_elan(mp, "encoder.fpn_block", f"{src}.fpn_block", trailing)
        _map_elan(mp, "encoder.pan_block", f"{src}.pan_block", trailing)
        return
    for i in range(len(cfg.encoder_in_channels)):
        proj = f"model.conv_encoder.encoder_input_proj.{i}"
        if f"{proj}.conv.weight" in mp.src:
            mp.conv_norm(f"encoder.input_proj.{i}", proj)
    for i in range(len(cfg.encode_proj_layers)):
        for j in range(cfg.encoder_layers):
            d, s = f"encoder.encoder.{i}.layers.{j}", f"{src}.aifi.{i}.layers.{j}"
            mp.fused_qkv(f"{d}.self_attn", f"{s}.self_attn", prefix="in_proj_")
            mp.linear(f"{d}.self_attn.out_proj", f"{s}.self_attn.o_proj")
            mp.linear(f"{d}.linear1", f"{s}.mlp.layers.0")
            mp.linear(f"{d}.linear2", f"{s}.mlp.layers.1")
            mp.linear(f"{d}.norm1", f"{s}.self_attn_layer_norm")
            mp.linear(f"{d}.norm2", f"{s}.final_layer_norm")
    n = len(cfg.encoder_in_channels) - 1
    for i in range(n):
        mp.conv_norm(f"encoder.lateral_convs.{i}", f"{src}.lateral_convs.{i}")
    for i in range(n):
        _map_elan(mp, f"encoder.fpn_blocks.{i}", f"{src}.fpn_blocks.{i}", trailing)
    for i in range(n):
        for c in (1, 2):
            mp.conv_norm(f"encoder.downsample_convs.{i}.0.cv{c}", f"{src}.downsample_convs.{i}.conv{c}")
    for i in range(n):
        _map_elan(mp, f"encoder.pan_blocks.{i}", f"{src}.pan_blocks.{i}", trailing)


_IGNORED_UPSTREAM = re.compile(r"^(?:model\.enc_output\.|class_embed\.|bbox_embed\.)")


def upstream_to_original_state_dict(upstream_sd: dict[str, Tensor], preset: str) -> dict[str, Tensor]:
    """Map a ``Deimv2ForObjectDetection`` state dict to the original checkpoint's keys, shapes and order.

    Output is what ``torch.load(ckpt)['model']`` of a released original checkpoint holds for ``preset``:
    fused qkv / ``in_proj_*`` / SwiGLU ``w12``, tied ``decoder.up``/``reg_scale`` listed twice, every
    ``dec_bbox_head.i`` (also when shared), DINOv3 ``bias_mask`` (k third 0) and ``rope_embed.periods``,
    ``decoder.anchors``/``valid_mask`` for the preset's eval size, and ``num_batches_tracked``. Raises if an
    upstream tensor is neither mapped nor listed in ``DROPPED_UPSTREAM_KEYS``.
    """
    cfg = upstream_config(preset)
    mp = _Mapper(dict(upstream_sd))
    if getattr(cfg.backbone_config, "model_type", None) == "dinov3_vit":
        _map_dinov3(mp, cfg)
    else:
        _map_hgnet(mp, cfg)
    _map_decoder(mp, cfg, preset)
    _map_encoder(mp, cfg)
    leftover = [k for k in mp.src if k not in mp.used and not _IGNORED_UPSTREAM.match(k)]
    if leftover:
        raise KeyError(f"unmapped upstream keys for {preset!r}: {leftover[:8]} ({len(leftover)} total)")
    return mp.out
