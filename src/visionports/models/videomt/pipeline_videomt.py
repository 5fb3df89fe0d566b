"""VidEoMT and transformers' image pipelines: a clear refusal instead of a wrong model.

``pipeline("image-segmentation", model=<a VidEoMT folder>)`` would otherwise fall through transformers' Auto
classes to upstream's class of the same name (``config.architectures``) and build it with every weight missing.
"""

from __future__ import annotations

from typing import Any

from ...core.errors import UnsupportedTaskError
from .configuration_videomt import VideomtConfig

# the Auto classes of transformers' image-segmentation pipeline
IMAGE_PIPELINE_AUTO_CLASSES = ("AutoModelForImageSegmentation", "AutoModelForSemanticSegmentation")


class VideomtImagePipelineGuard:
    """Stands for VidEoMT in the image-segmentation Auto classes: loading through them raises."""

    config_class = VideomtConfig

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: Any, *args: Any, **kwargs: Any) -> None:
        raise UnsupportedTaskError(
            f"{pretrained_model_name_or_path}: a VidEoMT video model, which transformers' image-segmentation "
            "pipeline does not run; use `visionports segment-video` or AutoModelForUniversalSegmentation with "
            "its VideomtVideoProcessor (post_process_{instance,semantic,panoptic}_segmentation)"
        )

    from_config = from_pretrained


def register_pipeline() -> None:
    """Make the image-segmentation pipeline refuse VidEoMT folders with :class:`UnsupportedTaskError`."""
    import transformers

    for auto_name in IMAGE_PIPELINE_AUTO_CLASSES:
        getattr(transformers, auto_name).register(VideomtConfig, VideomtImagePipelineGuard, exist_ok=True)
