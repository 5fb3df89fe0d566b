"""Configuration of DEIMv2 detectors, with presets for the eight released variants."""

from __future__ import annotations

import copy
from typing import Any

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig

from ...core.state_dict import invalid_values
from ...data.coco import COCO_CLASSES

# HGNetV2 stage rows of the original: [in, mid, out, num_blocks, downsample, light_block, kernel, layers].
# Every released arch has the same stem and first two stages; they differ from the third stage on.
_HGNET_FIRST_STAGES = [[16, 16, 64, 1, False, False, 3, 3], [64, 32, 256, 1, True, False, 3, 3]]
_HGNET_LATER_STAGES = {
    "Atto": [[256, 64, 256, 1, True, True, 3, 3]],
    "Femto": [[256, 64, 512, 1, True, True, 5, 3]],
    "Pico": [[256, 64, 512, 2, True, True, 5, 3]],
    "B0": [[256, 64, 512, 2, True, True, 5, 3], [512, 128, 1024, 1, True, True, 5, 3]],
}
_HGNET_ARCHS: dict[str, dict[str, Any]] = {
    arch: {"stem": [3, 16, 16], "stages": copy.deepcopy(_HGNET_FIRST_STAGES) + later}
    for arch, later in _HGNET_LATER_STAGES.items()
}


def _hgnet_preset(arch: str, out_indices: list[int], **kw: Any) -> dict[str, Any]:
    table = _HGNET_ARCHS[arch]
    return {
        "backbone_type": "hgnetv2",
        "hgnet_stem_channels": table["stem"],
        "hgnet_stages": copy.deepcopy(table["stages"]),
        "hgnet_out_indices": out_indices,
        "image_mean": None,
        "image_std": None,
        **kw,
    }


def _vit_preset(flavor: str, width: int, **kw: Any) -> dict[str, Any]:
    """A ViT + STA variant; ``width`` is the backbone projection, every encoder input level, the encoder and
    the decoder width alike."""
    base: dict[str, Any] = {
        "backbone_type": "vit_sta",
        "vit_flavor": flavor,
        "encoder_type": "hybrid",
        "encoder_block": "elan5",
        "feat_strides": [8, 16, 32],
        "decoder_feat_strides": [8, 16, 32],
        "num_feature_levels": 3,
        "decoder_n_points": [3, 6, 3],
        "num_queries": 300,
        "use_gateway": True,
        "share_bbox_head": False,
    }
    if flavor == "vit_tiny":
        base.update(
            vit_out_indices=[3, 7, 11],
            vit_layer_norm_eps=1e-6,
            vit_num_register_tokens=0,
            vit_layer_scale=False,
            vit_final_norm=False,
            vit_ffn_type="mlp",
            vit_mask_k_bias=False,
        )
    else:
        base.update(
            vit_out_indices=[5, 8, 11],
            vit_layer_norm_eps=1e-5,
            vit_num_register_tokens=4,
            vit_layer_scale=True,
            vit_final_norm=True,
            vit_mask_k_bias=True,
        )
    base.update(
        backbone_hidden_dim=width,
        encoder_in_channels=[width] * 3,
        encoder_hidden_dim=width,
        d_model=width,
        eval_image_size=[640, 640],
    )
    base.update(kw)
    return base


_LITE = {
    "loss_types": ["mal", "boxes"],
    "use_union_set_matching": False,
    "matcher_change_epoch": 450,
    "encoder_type": "lite",
    "encoder_block": "elan4",
    "feat_strides": [16],
    "decoder_feat_strides": [16, 32],
    "num_feature_levels": 2,
    "decoder_layers": 3,
    "decoder_n_points": [4, 2],
    "use_gateway": False,
    "share_bbox_head": True,
    "encoder_expansion": 0.34,
    "encoder_depth_mult": 0.5,
}


def _lite_preset(
    arch: str, channels: int, width: int, decoder_ffn: int, queries: int, size: int
) -> dict[str, Any]:
    """An HGNetV2 variant with the lite encoder: one backbone level of ``channels``, ``width`` wide after."""
    return _hgnet_preset(arch, [2], **_LITE, encoder_in_channels=[channels], encoder_hidden_dim=width,
                         d_model=width, decoder_ffn_dim=decoder_ffn, num_queries=queries,
                         eval_image_size=[size, size])  # fmt: skip


# name: HGNetV2 arch, backbone channels, width, decoder FFN width, queries, eval size (see ``_lite_preset``)
_LITE_VARIANTS = {
    "atto": ("Atto", 256, 64, 160, 100, 320),
    "femto": ("Femto", 512, 96, 256, 150, 416),
    "pico": ("Pico", 512, 112, 320, 200, 640),
}

# What sets the ViT variants apart, by configuration name (``width``: see ``_vit_preset``).
_VIT_COLUMNS = (
    "vit_hidden_size",
    "vit_num_heads",
    "vit_ffn_type",
    "vit_ffn_hidden_size",
    "sta_inplanes",
    "width",
    "encoder_ffn_dim",
    "encoder_expansion",
    "encoder_depth_mult",
    "decoder_ffn_dim",
    "decoder_layers",
    "matcher_change_epoch",
)
_VIT_VARIANTS = {
    "s": ("vit_tiny", (192, 3, "mlp", 768, 16, 192, 512, 0.34, 0.67, 512, 4, 100)),
    "m": ("vit_tiny", (256, 4, "mlp", 1024, 16, 256, 512, 0.67, 1.0, 512, 4, 80)),
    "l": ("dinov3", (384, 6, "mlp", 1536, 32, 224, 896, 1.0, 1.0, 1792, 4, 50)),
    "x": ("dinov3", (384, 6, "swiglu", 1536, 64, 256, 1024, 1.25, 1.37, 2048, 6, 45)),
}

PRESETS: dict[str, dict[str, Any]] = {
    **{name: _lite_preset(*row) for name, row in _LITE_VARIANTS.items()},
    "n": _hgnet_preset(
        "B0",
        [2, 3],
        encoder_type="hybrid",
        encoder_block="elan4",
        encoder_in_channels=[512, 1024],
        feat_strides=[16, 32],
        decoder_feat_strides=[16, 32],
        num_feature_levels=2,
        encoder_hidden_dim=128,
        encoder_ffn_dim=512,
        encoder_aifi_indices=[1],
        encoder_expansion=0.34,
        encoder_depth_mult=0.5,
        d_model=128,
        decoder_ffn_dim=512,
        decoder_layers=3,
        decoder_n_points=[6, 6],
        num_queries=300,
        matcher_change_epoch=136,
        use_gateway=True,
        share_bbox_head=False,
        eval_image_size=[640, 640],
    ),
    **{
        name: _vit_preset(flavor, **dict(zip(_VIT_COLUMNS, row, strict=True)))
        for name, (flavor, row) in _VIT_VARIANTS.items()
    },
}

LOSS_TYPES = ("mal", "vfl", "focal", "boxes", "local")

# what ``validate_architecture`` checks of each value's kind (see ``invalid_values``)
_COUNTS = (
    "vit_hidden_size", "vit_num_heads", "vit_depth", "vit_patch_size", "vit_ffn_hidden_size", "sta_inplanes",
    "backbone_hidden_dim", "encoder_hidden_dim", "encoder_layers", "encoder_attention_heads", "encoder_ffn_dim",
    "d_model", "num_queries", "num_feature_levels", "decoder_layers", "decoder_attention_heads", "decoder_ffn_dim",
    "max_num_bins", "lqe_hidden_dim", "lqe_top_k", "num_top_queries",
)  # fmt: skip
_INT_LISTS = ("hgnet_stem_channels", "encoder_in_channels", "feat_strides", "decoder_feat_strides",
              "decoder_n_points", "eval_image_size")  # fmt: skip
_POSITIVE = ("vit_layer_norm_eps", "vit_rope_base", "encoder_expansion", "encoder_depth_mult",
             "positional_encoding_temperature", "decoder_offset_scale", "reg_scale", "anchor_grid_size",
             "anchor_eps")  # fmt: skip


def _is_index(value: Any, size: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < size


def _is_stage_row(row: Any) -> bool:
    sizes = (0, 1, 2, 3, 6, 7)
    return isinstance(row, list | tuple) and len(row) == 8 and all(
        isinstance(row[i], int) and not isinstance(row[i], bool) and row[i] >= 1 for i in sizes)  # fmt: skip


IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


@strict(accept_kwargs=True)
class Deimv2Config(PreTrainedConfig):
    r"""Configuration of a DEIMv2 detector (backbone -> lite/hybrid encoder -> DEIM decoder).

    Field names follow transformers' DETR family; every architecture value of the original yml files
    is represented. Build a released variant with :meth:`from_preset` (``atto`` ... ``x``).

    Backbone: ``backbone_type`` is ``"hgnetv2"`` (stage table in ``hgnet_*``) or ``"vit_sta"`` (a ViT,
    ``vit_flavor`` ``"vit_tiny"`` or ``"dinov3"``, plus the Spatial Tuning Adapter ``sta_inplanes`` and a
    per-level 1x1 projection to ``backbone_hidden_dim``).
    Encoder: ``encoder_type`` ``"lite"`` (GAP fusion, two levels from one) or ``"hybrid"`` (AIFI + FPN/PAN);
    ``encoder_block`` ``"elan4"`` (RepNCSPELAN4) or ``"elan5"`` (RepNCSPELAN5).
    Decoder: ``d_model``, ``decoder_layers``, ``decoder_n_points`` per level, ``max_num_bins`` (reg_max),
    ``reg_scale``, ``use_gateway``, ``share_bbox_head``.
    Training: ``loss_types`` (``mal``/``vfl``/``focal``, ``boxes`` = L1 + GIoU, ``local`` = FGL + DDF) with
    ``weight_loss_*``; ``loss_gamma`` (MAL/VFL/focal), ``loss_alpha`` (VFL/focal only: MAL reads ``mal_alpha``,
    ``None`` in every released recipe), ``use_union_set_matching`` for the box/local losses, the Hungarian
    matcher's costs and the epoch (``matcher_change_epoch``) from which it ranks by ``score * IoU**alpha``;
    ``num_denoising`` / ``label_noise_ratio`` / ``box_noise_scale`` for the contrastive denoising groups.
    ``eval_image_size`` is the original ``eval_spatial_size`` ([h, w]): the default input size of the
    processor. The model itself accepts any size that is a multiple of the largest stride.
    """

    model_type = "visionports_deimv2"
    attribute_map = {
        "hidden_size": "d_model",
        "num_attention_heads": "decoder_attention_heads",
        "num_hidden_layers": "decoder_layers",
    }

    variant: str | None = None  # the released variant (preset) this configuration derives from

    # backbone
    backbone_type: str = "hgnetv2"
    hgnet_stem_channels: list[int] | tuple[int, ...] = (3, 16, 16)
    hgnet_stages: list | tuple = tuple(map(tuple, PRESETS["atto"]["hgnet_stages"]))  # the defaults are Atto's
    hgnet_out_indices: list[int] | tuple[int, ...] = (2,)
    hgnet_use_lab: bool = True
    hgnet_activation: str = "relu"
    vit_flavor: str = "vit_tiny"
    vit_hidden_size: int = 192
    vit_num_heads: int = 3
    vit_depth: int = 12
    vit_patch_size: int = 16
    vit_ffn_type: str = "mlp"
    vit_ffn_hidden_size: int = 768
    vit_num_register_tokens: int = 0
    vit_layer_norm_eps: float = 1e-6
    vit_layer_scale: bool = False
    vit_final_norm: bool = False
    vit_mask_k_bias: bool = False
    vit_rope_base: float = 100.0
    vit_out_indices: list[int] | tuple[int, ...] = (3, 7, 11)
    sta_inplanes: int = 16
    backbone_hidden_dim: int = 192
    # encoder
    encoder_type: str = "lite"
    encoder_block: str = "elan4"
    encoder_in_channels: list[int] | tuple[int, ...] = (256,)
    feat_strides: list[int] | tuple[int, ...] = (16,)
    encoder_hidden_dim: int = 64
    encoder_expansion: float = 0.34
    encoder_depth_mult: float = 0.5
    encoder_activation: str = "silu"
    encoder_fuse_op: str = "sum"
    encoder_aifi_indices: list[int] | tuple[int, ...] = (2,)
    encoder_layers: int = 1
    encoder_attention_heads: int = 8
    encoder_ffn_dim: int = 1024
    encoder_ffn_activation: str = "gelu"
    positional_encoding_temperature: float = 10000.0
    # decoder
    d_model: int = 64
    num_queries: int = 100
    decoder_feat_strides: list[int] | tuple[int, ...] = (16, 32)
    num_feature_levels: int = 2
    decoder_n_points: list[int] | tuple[int, ...] = (4, 2)
    decoder_layers: int = 3
    decoder_attention_heads: int = 8
    decoder_ffn_dim: int = 160
    decoder_activation: str = "silu"
    decoder_offset_scale: float = 0.5
    eval_idx: int = -1
    layer_scale: float = 1.0
    max_num_bins: int = 32
    reg_scale: float = 4.0
    up: float = 0.5
    use_gateway: bool = False
    share_bbox_head: bool = True
    lqe_hidden_dim: int = 64
    lqe_top_k: int = 4
    anchor_grid_size: float = 0.05
    anchor_eps: float = 0.01
    # training: denoising queries, criterion and matcher (values of the original recipe)
    num_denoising: int = 100
    label_noise_ratio: float = 0.5
    box_noise_scale: float = 1.0
    loss_types: list[str] | tuple[str, ...] = ("mal", "boxes", "local")
    weight_loss_mal: float = 1.0
    weight_loss_vfl: float = 1.0
    weight_loss_focal: float = 1.0
    weight_loss_bbox: float = 5.0
    weight_loss_giou: float = 2.0
    weight_loss_fgl: float = 0.15
    weight_loss_ddf: float = 1.5
    loss_gamma: float = 1.5
    loss_alpha: float = 0.75
    mal_alpha: float | None = None
    ddf_temperature: float = 5.0
    use_union_set_matching: bool = True
    matcher_class_cost: float = 2.0
    matcher_bbox_cost: float = 5.0
    matcher_giou_cost: float = 2.0
    matcher_alpha: float = 0.25
    matcher_gamma: float = 2.0
    matcher_change: bool = True
    matcher_iou_order_alpha: float = 4.0
    matcher_change_epoch: int = 45
    # inference / processing defaults
    eval_image_size: list[int] | tuple[int, ...] = (320, 320)
    num_top_queries: int = 300
    image_mean: list[float] | tuple[float, ...] | None = None
    image_std: list[float] | tuple[float, ...] | None = None
    initializer_range: float = 0.01
    is_encoder_decoder: bool = True

    def __post_init__(self, **kwargs: Any) -> None:
        if self.id2label is None and kwargs.get("num_labels") is None:
            self.id2label = dict(enumerate(COCO_CLASSES))
            self.label2id = {name: index for index, name in self.id2label.items()}
        for name in (
            "hgnet_stem_channels",
            "hgnet_out_indices",
            "vit_out_indices",
            "encoder_in_channels",
            "feat_strides",
            "encoder_aifi_indices",
            "decoder_feat_strides",
            "decoder_n_points",
            "eval_image_size",
            "loss_types",
        ):
            setattr(self, name, list(getattr(self, name)))
        self.hgnet_stages = [list(s) for s in self.hgnet_stages]
        for name in ("image_mean", "image_std"):
            if getattr(self, name) is not None:
                setattr(self, name, list(getattr(self, name)))
        super().__post_init__(**kwargs)

    def validate_architecture(self) -> None:
        errors = self._value_errors() or self._structure_errors()
        if errors:
            raise ValueError("invalid Deimv2Config: " + "; ".join(errors))

    def _value_errors(self) -> list[str]:
        """Each value of its kind (counts >= 1, finite numbers ...), checked before any is combined."""
        errors = invalid_values(
            self, counts=_COUNTS, optional=("vit_num_register_tokens", "num_denoising"), int_lists=_INT_LISTS,
            positive=_POSITIVE, finite=("up", "layer_scale"),
        )  # fmt: skip
        if self.backbone_type == "hgnetv2" and not all(_is_stage_row(row) for row in self.hgnet_stages):
            errors.append(f"hgnet_stages rows must be [in, mid, out, blocks, downsample, light, kernel, layers] "
                          f"with positive sizes, got {self.hgnet_stages!r}")  # fmt: skip
        return errors

    def _structure_errors(self) -> list[str]:
        errors = []
        if self.backbone_type not in ("hgnetv2", "vit_sta"):
            errors.append(f"backbone_type must be 'hgnetv2' or 'vit_sta', got {self.backbone_type!r}")
        if self.encoder_type not in ("lite", "hybrid"):
            errors.append(f"encoder_type must be 'lite' or 'hybrid', got {self.encoder_type!r}")
        if self.encoder_block not in ("elan4", "elan5"):
            errors.append(f"encoder_block must be 'elan4' or 'elan5', got {self.encoder_block!r}")
        if len(self.decoder_n_points) != self.num_feature_levels:
            errors.append("decoder_n_points needs one entry per feature level")
        if len(self.decoder_feat_strides) != self.num_feature_levels:
            errors.append("decoder_feat_strides needs one entry per feature level")
        if self.d_model % self.decoder_attention_heads:
            errors.append("d_model must be divisible by decoder_attention_heads")
        if self.encoder_type == "hybrid" and self.encoder_hidden_dim % self.encoder_attention_heads:
            errors.append("encoder_hidden_dim must be divisible by encoder_attention_heads")
        unknown_losses = sorted(set(self.loss_types) - set(LOSS_TYPES))
        if unknown_losses:
            errors.append(f"loss_types has unknown entries {unknown_losses}; choose from {list(LOSS_TYPES)}")
        if self.layer_scale != 1:
            errors.append("only layer_scale == 1 is supported (every released DEIMv2 model uses it)")
        if self.backbone_type == "vit_sta" and self.vit_hidden_size % (4 * self.vit_num_heads):
            errors.append("vit_hidden_size / vit_num_heads must be divisible by 4 (2D RoPE)")
        return errors + self._index_errors()

    def _index_errors(self) -> list[str]:
        """Sizes and indices that must fit the architecture (input size, tapped stages / layers, eval layer)."""
        errors = []
        stride = max(self.decoder_feat_strides)
        if len(self.eval_image_size) != 2 or any(side % stride for side in self.eval_image_size):
            errors.append(f"eval_image_size must be [height, width], multiples of the largest stride {stride}, "
                          f"got {self.eval_image_size}")  # fmt: skip
        tapped = ("hgnet_out_indices", len(self.hgnet_stages)) if self.backbone_type == "hgnetv2" else (
            "vit_out_indices", self.vit_depth)  # fmt: skip
        if not all(_is_index(i, tapped[1]) for i in getattr(self, tapped[0])):
            errors.append(f"{tapped[0]} must be indices below {tapped[1]}, got {getattr(self, tapped[0])}")
        levels = len(self.encoder_in_channels)
        if self.encoder_type == "hybrid" and not all(_is_index(i, levels) for i in self.encoder_aifi_indices):
            errors.append(
                f"encoder_aifi_indices must be indices below {levels}, got {self.encoder_aifi_indices}"
            )
        if not -self.decoder_layers <= self.eval_idx < self.decoder_layers:
            errors.append(
                f"eval_idx must index one of the {self.decoder_layers} decoder layers, got {self.eval_idx}"
            )
        return errors

    @property
    def resolved_eval_idx(self) -> int:
        return self.eval_idx if self.eval_idx >= 0 else self.decoder_layers + self.eval_idx

    @property
    def encoder_csp_channels(self) -> int:
        """Hidden width of the CSP branches (original: ``round(expansion * hidden_dim // 2)``)."""
        return round(self.encoder_expansion * self.encoder_hidden_dim // 2)

    @property
    def encoder_csp_blocks(self) -> int:
        """RepVGG blocks per CSP layer (original: ``round(3 * depth_mult)``)."""
        return round(3 * self.encoder_depth_mult)

    @property
    def largest_stride(self) -> int:
        return max(self.decoder_feat_strides)

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> Deimv2Config:
        """Configuration of a released variant: ``atto``, ``femto``, ``pico``, ``n``, ``s``, ``m``, ``l``, ``x``."""
        key = name.lower()
        if key not in PRESETS:
            raise ValueError(f"unknown DEIMv2 preset {name!r}; choose from {', '.join(PRESETS)}")
        values = copy.deepcopy(PRESETS[key])
        if values["backbone_type"] == "vit_sta":
            values.setdefault("image_mean", IMAGENET_MEAN)
            values.setdefault("image_std", IMAGENET_STD)
        values["variant"] = key
        values.update(overrides)
        return cls(**values)


__all__ = ["PRESETS", "Deimv2Config"]
