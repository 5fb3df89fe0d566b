"""The packed encoders' registration: they reuse transformers' own AIMv2 / SigLIP2 / DINOv3 folders.

Nothing is converted: a folder saved by transformers (or by these models) loads into the packed encoder of its
config, and ``visionports parity-packed`` checks it against the standard model image by image.
"""

from __future__ import annotations

from transformers import (
    Aimv2Config,
    Aimv2VisionConfig,
    Aimv2VisionModel,
    DINOv3ViTConfig,
    DINOv3ViTModel,
    PreTrainedConfig,
    PreTrainedModel,
    Siglip2Config,
    Siglip2VisionConfig,
    Siglip2VisionModel,
)

from ...core.registry import ModelFamily
from .aimv2_packed import Aimv2PackedVisionModel
from .dinov3_packed import Dinov3PackedVisionModel
from .image_processing_packed import PackedImageProcessor
from .siglip2_packed import Siglip2PackedVisionModel

# vision config -> (packed encoder, the standard transformers encoder it must match)
ENCODERS: dict[type[PreTrainedConfig], tuple[type[PreTrainedModel], type[PreTrainedModel]]] = {
    Aimv2VisionConfig: (Aimv2PackedVisionModel, Aimv2VisionModel),
    Siglip2VisionConfig: (Siglip2PackedVisionModel, Siglip2VisionModel),
    DINOv3ViTConfig: (Dinov3PackedVisionModel, DINOv3ViTModel),
}


def vision_config(config: PreTrainedConfig) -> PreTrainedConfig:
    """The vision part of a folder's config (a full AIMv2 / SigLIP2 config holds it as ``vision_config``)."""
    return getattr(config, "vision_config", None) or config


def encoders_for(config: PreTrainedConfig) -> tuple[type[PreTrainedModel], type[PreTrainedModel]]:
    """(packed encoder, standard encoder) of a folder's config; ``ValueError`` for another model."""
    vision = vision_config(config)
    for config_class, classes in ENCODERS.items():
        if isinstance(vision, config_class):
            return classes
    supported = ", ".join(c.__name__ for c in ENCODERS)
    raise ValueError(f"no packed encoder for {type(vision).__name__}; supported: {supported}")


FAMILY = ModelFamily(
    name="packed",
    display_name="Packed ViT encoder",
    description="a variable-resolution ViT encoder (AIMv2, SigLIP2 or DINOv3) that runs many images of "
    "different sizes in one packed pass, with the unchanged weights of the transformers model",
    pipeline_tag="image-feature-extraction",
    license="other",
    license_note="The weights are those of the transformers folder this one was saved from (AIMv2, SigLIP2 or "
    "DINOv3); their licence is that repository's, which this card cannot tell.",
    original_url="https://github.com/EvolvingLMMs-Lab/OneVision-Encoder",
    make_processor=lambda config: PackedImageProcessor.for_config(vision_config(config)),
    config_classes=(Aimv2Config, Siglip2Config, *ENCODERS),
    tasks=("parity-packed",),
)
