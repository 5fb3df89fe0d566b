"""VidEoMT: online video segmentation inside a plain ViT, queries propagated frame to frame."""

from .configuration_videomt import PRESETS, VideomtConfig
from .modeling_videomt import (
    VideomtForUniversalSegmentation,
    VideomtPreTrainedModel,
    VideomtSegmentationOutput,
    VideomtState,
)
from .video_processing_videomt import VideomtVideoProcessor

__all__ = [
    "PRESETS",
    "VideomtConfig",
    "VideomtForUniversalSegmentation",
    "VideomtPreTrainedModel",
    "VideomtSegmentationOutput",
    "VideomtState",
    "VideomtVideoProcessor",
]
