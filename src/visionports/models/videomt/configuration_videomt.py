"""Configuration of VidEoMT online video segmenters, with presets for the released checkpoints."""

from __future__ import annotations

import copy
from typing import Any

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig

from ...core.state_dict import invalid_values

_DINOV2 = {"S": (384, 12, 6, 1536, [9, 10, 11]), "B": (768, 12, 12, 3072, [9, 10, 11]),
           "L": (1024, 24, 16, 4096, [20, 21, 22, 23])}  # fmt: skip

# dataset: (classes, task, position-table grid (IMG_SIZE / 16), test short side DINOv2/DINOv3, VIS top-K)
_DATASETS = {
    "ytvis2019": (40, "instance", 40, (448, 480), 10),
    "ytvis2021": (40, "instance", 40, (448, 480), 10),
    "ytvis2022": (40, "instance", 40, (448, 480), 10),
    "ovis": (25, "instance", 40, (544, 544), 20),
    "vipseg": (124, "panoptic", 80, (720, 720), 20),
    "vspw": (124, "semantic", 80, (720, 720), 20),
}


def _preset(backbone: str, size: str, dataset: str) -> dict[str, Any]:
    dim, depth, heads, mlp, blocks = _DINOV2[size]
    classes, task, grid, short_sides, max_num = _DATASETS[dataset]
    values: dict[str, Any] = {
        "backbone_type": backbone,
        "hidden_size": dim,
        "num_hidden_layers": depth,
        "num_attention_heads": heads,
        "intermediate_size": mlp,
        "segmenter_blocks": blocks,
        "num_labels": classes,
        "task": task,
        "min_size_test": short_sides[0] if backbone == "dinov2" else short_sides[1],
        "max_num_instances": max_num,
        "num_thing_classes": 58 if dataset == "vipseg" else None,
    }
    if backbone == "dinov2":
        values.update(position_grid_size=grid, layer_norm_eps=1e-6, norm_queries=False)
    else:
        values.update(
            position_grid_size=None, layer_norm_eps=1e-5, norm_queries=dataset in ("vipseg", "vspw")
        )
    return values


PRESETS: dict[str, dict[str, Any]] = {
    "dinov2_s_ytvis2019": _preset("dinov2", "S", "ytvis2019"),
    "dinov2_b_ytvis2019": _preset("dinov2", "B", "ytvis2019"),
    "dinov2_l_ytvis2019": _preset("dinov2", "L", "ytvis2019"),
    "dinov2_l_ytvis2021": _preset("dinov2", "L", "ytvis2021"),
    "dinov2_l_ytvis2022": _preset("dinov2", "L", "ytvis2022"),
    "dinov2_l_ovis": _preset("dinov2", "L", "ovis"),
    "dinov2_l_vipseg": _preset("dinov2", "L", "vipseg"),
    "dinov2_l_vspw": _preset("dinov2", "L", "vspw"),
    "dinov3_l_ytvis2019": _preset("dinov3", "L", "ytvis2019"),
    "dinov3_l_ytvis2021": _preset("dinov3", "L", "ytvis2021"),
    "dinov3_l_ytvis2022": _preset("dinov3", "L", "ytvis2022"),
    "dinov3_l_vipseg": _preset("dinov3", "L", "vipseg"),
    "dinov3_l_vspw": _preset("dinov3", "L", "vspw"),
}


_COUNTS = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "patch_size",
           "num_queries", "size_divisibility", "min_size_test", "max_size_test", "max_num_instances")  # fmt: skip


@strict(accept_kwargs=True)
class VideomtConfig(PreTrainedConfig):
    r"""Configuration of a VidEoMT model: a plain ViT whose last ``segmenter_blocks`` also process learned
    queries; queries leaving one frame pass through ``query_updater`` and enter the next.

    ``backbone_type`` is ``"dinov2"`` (timm-style ViT: fused qkv, LayerScale, a learned position table of
    ``position_grid_size``² entries resampled to each input) or ``"dinov3"`` (transformers' DINOv3 layers
    with RoPE). ``num_labels`` excludes the trailing no-object class. ``norm_queries`` propagates the
    final-norm'ed queries (the released DINOv3 VIPSeg/VSPW models). Processing values (``image_mean``,
    ``min_size_test`` ...) follow the original evaluation configs. ``initializer_range`` and
    ``layerscale_value`` only shape the random initialisation of a new model.
    """

    model_type = "visionports_videomt"

    variant: str | None = None
    backbone_type: str = "dinov2"
    hidden_size: int = 384
    num_hidden_layers: int = 12
    num_attention_heads: int = 6
    intermediate_size: int = 1536
    patch_size: int = 16
    num_register_tokens: int = 4
    layer_norm_eps: float = 1e-6
    position_grid_size: int | None = 40
    rope_theta: float = 100.0
    num_queries: int = 200
    segmenter_blocks: list[int] | tuple[int, ...] = (9, 10, 11)
    norm_queries: bool = False
    num_upscale_blocks: int = 2
    # evaluation / processing
    task: str = "instance"
    image_mean: list[float] | tuple[float, ...] = (123.675, 116.28, 103.53)
    image_std: list[float] | tuple[float, ...] = (58.395, 57.12, 57.375)
    size_divisibility: int = 32
    min_size_test: int = 448
    max_size_test: int = 1333
    max_num_instances: int = 10
    object_mask_threshold: float = 0.8
    overlap_threshold: float = 0.8
    num_thing_classes: int | None = None
    initializer_range: float = 0.02
    layerscale_value: float = 1.0
    # training loss (the original's settings)
    class_weight: float = 2.0
    mask_weight: float = 5.0
    dice_weight: float = 5.0
    no_object_weight: float = 0.1
    train_num_points: int = 12544
    oversample_ratio: float = 3.0
    importance_sample_ratio: float = 0.75

    def __post_init__(self, **kwargs: Any) -> None:
        for name in ("segmenter_blocks", "image_mean", "image_std"):
            setattr(self, name, list(getattr(self, name)))
        super().__post_init__(**kwargs)

    def validate_architecture(self) -> None:
        errors = self._value_errors() or self._structure_errors()
        if errors:
            raise ValueError("invalid VideomtConfig: " + "; ".join(errors))

    def _value_errors(self) -> list[str]:
        """Each value of its kind (counts >= 1, finite numbers ...), checked before any is combined."""
        errors = invalid_values(
            self, counts=_COUNTS, optional=("num_register_tokens", "num_upscale_blocks"),
            positive=("layer_norm_eps", "rope_theta"),
            finite=("object_mask_threshold", "overlap_threshold", "initializer_range", "layerscale_value",
                    "class_weight", "mask_weight", "dice_weight", "no_object_weight"),
        )  # fmt: skip
        errors += invalid_values(self, counts=("train_num_points",), positive=("oversample_ratio",))
        if not (isinstance(self.oversample_ratio, int | float) and self.oversample_ratio >= 1):
            errors.append(f"oversample_ratio must be >= 1, got {self.oversample_ratio!r}")
        if not (
            isinstance(self.importance_sample_ratio, int | float) and 0 <= self.importance_sample_ratio <= 1
        ):
            errors.append(f"importance_sample_ratio must be in [0, 1], got {self.importance_sample_ratio!r}")
        if self.position_grid_size is not None:
            errors += invalid_values(self, counts=("position_grid_size",))
        if not all(isinstance(b, int) and not isinstance(b, bool) and b >= 0 for b in self.segmenter_blocks):
            errors.append(f"segmenter_blocks must be block indices >= 0, got {self.segmenter_blocks}")
        return errors

    def _structure_errors(self) -> list[str]:
        errors = []
        if self.backbone_type not in ("dinov2", "dinov3"):
            errors.append(f"backbone_type must be 'dinov2' or 'dinov3', got {self.backbone_type!r}")
        blocks = self.segmenter_blocks
        if not blocks or blocks != list(range(blocks[0], blocks[0] + len(blocks))):
            errors.append(f"segmenter_blocks must be consecutive block indices, got {blocks}")
        elif blocks[-1] >= self.num_hidden_layers:
            errors.append("segmenter_blocks must lie within num_hidden_layers")
        if self.hidden_size % self.num_attention_heads:
            errors.append("hidden_size must be divisible by num_attention_heads")
        if self.backbone_type == "dinov2" and not self.position_grid_size:
            errors.append("the dinov2 backbone needs position_grid_size")
        if self.task not in ("instance", "semantic", "panoptic"):
            errors.append(f"task must be instance, semantic or panoptic, got {self.task!r}")
        return errors

    @property
    def first_query_block(self) -> int:
        return self.segmenter_blocks[0]

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> VideomtConfig:
        """Configuration of a released checkpoint (see ``PRESETS``)."""
        if name not in PRESETS:
            raise ValueError(f"unknown VidEoMT preset {name!r}; choose from {', '.join(PRESETS)}")
        values = copy.deepcopy(PRESETS[name])
        values["variant"] = name
        values.update(overrides)
        num_labels = values.pop("num_labels")
        values.setdefault("id2label", {i: f"LABEL_{i}" for i in range(num_labels)})
        return cls(**values)


__all__ = ["PRESETS", "VideomtConfig"]
