"""Model families and their registration with transformers' Auto classes."""

from __future__ import annotations


def register_all() -> None:
    """Register every family's config and models with the Auto classes (idempotent)."""
    from transformers import (
        AutoConfig,
        AutoModel,
        AutoModelForObjectDetection,
        AutoModelForUniversalSegmentation,
    )
    from transformers.models.auto.image_processing_auto import IMAGE_PROCESSOR_MAPPING

    from .deimv2 import Deimv2Config, Deimv2ForObjectDetection, Deimv2ImageProcessor, Deimv2Model
    from .sam3_lite_text import (
        Sam3LiteTextConfig,
        Sam3LiteTextImageProcessor,
        Sam3LiteTextModel,
        Sam3LiteTextTextConfig,
        Sam3LiteTextTextModel,
    )
    from .videomt import VideomtConfig, VideomtForUniversalSegmentation, VideomtVideoProcessor

    try:
        AutoConfig.register(Deimv2Config.model_type, Deimv2Config)
    except ValueError:  # already registered
        return
    # exist_ok: upstream transformers has classes of the same names; ours are registered by class object,
    # so each config class still resolves to its own models.
    AutoModel.register(Deimv2Config, Deimv2Model, exist_ok=True)
    AutoModelForObjectDetection.register(Deimv2Config, Deimv2ForObjectDetection, exist_ok=True)
    # One PIL-based class serves both backends. Registered on the mapping directly: AutoImageProcessor.register
    # would first look up (and instantiate the backends of) upstream's same-named Deimv2Config entry.
    backends = {"pil": Deimv2ImageProcessor, "torchvision": Deimv2ImageProcessor}
    IMAGE_PROCESSOR_MAPPING.register(Deimv2Config, backends, exist_ok=True)

    AutoConfig.register(VideomtConfig.model_type, VideomtConfig)
    AutoModel.register(VideomtConfig, VideomtForUniversalSegmentation, exist_ok=True)
    AutoModelForUniversalSegmentation.register(VideomtConfig, VideomtForUniversalSegmentation, exist_ok=True)
    video_backends = {"pil": VideomtVideoProcessor, "torchvision": VideomtVideoProcessor}
    IMAGE_PROCESSOR_MAPPING.register(VideomtConfig, video_backends, exist_ok=True)

    AutoConfig.register(Sam3LiteTextTextConfig.model_type, Sam3LiteTextTextConfig)
    AutoModel.register(Sam3LiteTextTextConfig, Sam3LiteTextTextModel, exist_ok=True)
    AutoConfig.register(Sam3LiteTextConfig.model_type, Sam3LiteTextConfig)
    AutoModel.register(Sam3LiteTextConfig, Sam3LiteTextModel, exist_ok=True)
    sam3_backends = {"pil": Sam3LiteTextImageProcessor, "torchvision": Sam3LiteTextImageProcessor}
    IMAGE_PROCESSOR_MAPPING.register(Sam3LiteTextConfig, sam3_backends, exist_ok=True)

    from .sam3_lite_text.pipeline_sam3_lite_text import register_pipeline

    register_pipeline()
