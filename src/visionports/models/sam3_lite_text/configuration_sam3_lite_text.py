"""Configuration of the SAM3-LiteText student text encoder (MobileCLIP text transformer + projector)."""

from __future__ import annotations

import copy
import math
from typing import Any

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig

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
        errors = []
        if self.layout not in ("mct", "base"):
            errors.append(f"layout must be 'mct' or 'base', got {self.layout!r}")
        if self.hidden_size % self.num_attention_heads:
            errors.append("hidden_size must be divisible by num_attention_heads")
        if self.causal_masking:
            errors.append("causal masking is not used by any released SAM3-LiteText encoder")
        if errors:
            raise ValueError("invalid Sam3LiteTextTextConfig: " + "; ".join(errors))

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


@strict(accept_kwargs=True)
class Sam3LiteTextConfig(PreTrainedConfig):
    r"""SAM3-LiteText: the student text encoder (``text_config``, a :class:`Sam3LiteTextTextConfig` sub-config)
    + the SAM3 detector (``detector`` widths, the original builder's names; see ``DETECTOR_DEFAULTS``).

    ``text_config`` accepts a :class:`Sam3LiteTextTextConfig`, a dict of its fields (how folders saved before it
    was a registered sub-config store it: no ``model_type``) or ``None`` (the S0 defaults).
    ``threshold`` / ``mask_threshold`` are the post-processing defaults of the original ``Sam3Processor``.
    """

    model_type = "visionports_sam3_lite_text"
    sub_configs_defaults = {"text_config": Sam3LiteTextTextConfig}

    variant: str | None = None
    text_config: dict | PreTrainedConfig | None = None
    detector: dict | None = None
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
