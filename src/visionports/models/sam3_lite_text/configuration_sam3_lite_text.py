"""Configuration of the SAM3-LiteText student text encoder (MobileCLIP text transformer + projector)."""

from __future__ import annotations

import copy
import math
from types import SimpleNamespace
from typing import Any

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig

from ...core.state_dict import invalid_values

_TEXT_COUNTS = ("vocab_size", "hidden_size", "num_transformer_layers", "num_attention_heads", "context_length",
                "repmixer_kernel_size", "projection_dim")  # fmt: skip

# release name -> (layout, width, transformer blocks, heads)
TEXT_PRESETS: dict[str, dict[str, Any]] = {
    "s0": {"layout": "mct", "hidden_size": 512, "num_transformer_layers": 4, "num_attention_heads": 8},
    "s1": {"layout": "base", "hidden_size": 512, "num_transformer_layers": 12, "num_attention_heads": 8},
    "l": {"layout": "base", "hidden_size": 768, "num_transformer_layers": 12, "num_attention_heads": 12},
}


@strict(accept_kwargs=True)
class Sam3LiteTextTextConfig(PreTrainedConfig):
    r"""The distilled MobileCLIP text encoder of SAM3-LiteText.

    ``layout`` is ``"mct"`` (RepMixer, ``num_transformer_layers`` Transformer blocks, RepMixer: S0) or
    ``"base"`` (Transformer blocks only: S1, MobileCLIP2-L). ``context_length`` is the number of tokens
    (16 in every release; the 77-row MobileCLIP position table is sliced to it). The FFN width is
    ``ceil(hidden * ffn_multiplier / 16) * 16``; ``projection_dim`` is SAM3's d_model (256).
    """

    model_type = "visionports_sam3_lite_text_text"

    variant: str | None = None
    layout: str = "mct"
    vocab_size: int = 49408
    hidden_size: int = 512
    num_transformer_layers: int = 4
    num_attention_heads: int = 8
    ffn_multiplier: float = 4.0
    context_length: int = 16
    repmixer_kernel_size: int = 11
    layer_norm_eps: float = 1e-5
    batch_norm_eps: float = 1e-5
    causal_masking: bool = False
    projection_dim: int = 256
    reparameterized: bool = False  # RepMixer branches fused into single convolutions (inference layout)
    layer_scale_init_value: float = 1e-5  # initial RepMixer layer scales (MobileCLIP's)
    initializer_range: float = 0.02

    def validate_architecture(self) -> None:
        errors = invalid_values(
            self, counts=_TEXT_COUNTS, positive=("ffn_multiplier", "layer_norm_eps", "batch_norm_eps"),
            finite=("layer_scale_init_value", "initializer_range"),
        ) or self._structure_errors()  # fmt: skip
        if errors:
            raise ValueError("invalid Sam3LiteTextTextConfig: " + "; ".join(errors))

    def _structure_errors(self) -> list[str]:
        errors = []
        if self.layout not in ("mct", "base"):
            errors.append(f"layout must be 'mct' or 'base', got {self.layout!r}")
        if self.hidden_size % self.num_attention_heads:
            errors.append("hidden_size must be divisible by num_attention_heads")
        if self.causal_masking:
            errors.append("causal masking is not used by any released SAM3-LiteText encoder")
        return errors

    @property
    def intermediate_size(self) -> int:
        return math.ceil(self.hidden_size * self.ffn_multiplier / 16) * 16

    @property
    def num_hidden_layers(self) -> int:
        """Every block (RepMixer and Transformer), as ``hidden_states`` counts them (plus the embeddings)."""
        return len(self.block_types)

    @property
    def block_types(self) -> list[str]:
        core = ["transformer"] * self.num_transformer_layers
        return ["repmixer", *core, "repmixer"] if self.layout == "mct" else core

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> Sam3LiteTextTextConfig:
        """The text encoder of a released SAM3-LiteText model: ``s0``, ``s1`` or ``l``."""
        if name not in TEXT_PRESETS:
            raise ValueError(
                f"unknown SAM3-LiteText text preset {name!r}; choose from {', '.join(TEXT_PRESETS)}"
            )
        values = copy.deepcopy(TEXT_PRESETS[name])
        values["variant"] = name
        values.update(overrides)
        return cls(**values)


# Widths of the SAM3 detector (the original builder's names); defaults are the released detector.
DETECTOR_DEFAULTS: dict[str, Any] = {
    "d_model": 256, "ffn_dim": 2048, "n_heads": 8, "num_queries": 200, "image_size": 1008, "patch_size": 14,
    "pretrain_img_size": 336, "vit_embed_dim": 1024, "vit_depth": 32, "vit_heads": 16, "vit_window_size": 24,
    "vit_global_att_blocks": [7, 15, 23, 31], "vit_mlp_ratio": 4.625,
}  # fmt: skip


_DETECTOR_COUNTS = ("d_model", "ffn_dim", "n_heads", "num_queries", "image_size", "patch_size", "pretrain_img_size",
                    "vit_embed_dim", "vit_depth", "vit_heads", "vit_window_size")  # fmt: skip


def _detector_structure_errors(widths: SimpleNamespace) -> list[str]:
    errors = [
        f"{width} {getattr(widths, width)} must be divisible by {heads} {getattr(widths, heads)}"
        for width, heads in (("d_model", "n_heads"), ("vit_embed_dim", "vit_heads"))
        if getattr(widths, width) % getattr(widths, heads)
    ]
    if widths.image_size % widths.patch_size:
        errors.append(f"image_size {widths.image_size} must be a multiple of patch_size {widths.patch_size}")
    blocks = widths.vit_global_att_blocks
    if not all(isinstance(b, int) and 0 <= b < widths.vit_depth for b in blocks):
        errors.append(
            f"vit_global_att_blocks must be block indices below vit_depth {widths.vit_depth}, got {blocks}"
        )
    return errors


@strict(accept_kwargs=True)
class Sam3LiteTextConfig(PreTrainedConfig):
    r"""SAM3-LiteText: the student text encoder (``text_config``, a :class:`Sam3LiteTextTextConfig` sub-config)
    + the SAM3 detector (``detector`` widths, the original builder's names; see ``DETECTOR_DEFAULTS``).

    ``text_config`` accepts a :class:`Sam3LiteTextTextConfig`, a dict of its fields (how folders saved before it
    was a registered sub-config store it: no ``model_type``) or ``None`` (the S0 defaults).
    ``threshold`` / ``mask_threshold`` are the post-processing defaults of the original ``Sam3Processor``.
    ``tracker``: widths of the SAM3 tracker (the SAM heads for point/box masks and the video memory), or ``None``
    for a folder converted from a file without tracker weights (text and exemplar prompts only).
    """

    model_type = "visionports_sam3_lite_text"
    sub_configs_defaults = {"text_config": Sam3LiteTextTextConfig}

    variant: str | None = None
    text_config: dict | PreTrainedConfig | None = None
    detector: dict | None = None
    tracker: dict | None = None
    threshold: float = 0.5
    mask_threshold: float = 0.5
    initializer_range: float = 0.02

    def __post_init__(self, **kwargs: Any) -> None:
        if isinstance(self.text_config, dict):
            # keys written by an older save next to the fields (model_type is the class's own)
            self.text_config = {
                key: value
                for key, value in self.text_config.items()
                if key not in ("transformers_version", "model_type", "_name_or_path")
            }
        self.detector = {**DETECTOR_DEFAULTS, **(self.detector or {})}
        self.detector["vit_global_att_blocks"] = list(self.detector["vit_global_att_blocks"])
        super().__post_init__(**kwargs)

    def validate_detector(self) -> None:
        """Detector widths of their kind, heads dividing widths, the input a multiple of the patch."""
        widths = SimpleNamespace(**self.detector)
        errors = invalid_values(widths, counts=_DETECTOR_COUNTS, positive=("vit_mlp_ratio",))
        errors += invalid_values(self, finite=("threshold", "mask_threshold"))
        if not errors:
            errors = _detector_structure_errors(widths)
        if errors:
            raise ValueError("invalid Sam3LiteTextConfig detector: " + "; ".join(errors))

    @property
    def text(self) -> Sam3LiteTextTextConfig:
        """The text encoder's configuration (``text_config``)."""
        return self.text_config

    @property
    def image_size(self) -> int:
        return int(self.detector["image_size"])

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> Sam3LiteTextConfig:
        """A released model: ``s0``, ``s1`` or ``l`` (text encoder) with the released SAM3 detector."""
        text = Sam3LiteTextTextConfig.from_preset(name, **overrides.pop("text_overrides", {}))
        return cls(variant=name, text_config=text, **overrides)
