"""DEIMv2: real-time DETR detector (HGNetV2 or DINOv3-ViT + Spatial Tuning Adapter backbones)."""

from .configuration_deimv2 import PRESETS, Deimv2Config
from .image_processing_deimv2 import Deimv2ImageProcessor
from .modeling_deimv2 import (
    Deimv2ForObjectDetection,
    Deimv2Model,
    Deimv2ModelOutput,
    Deimv2ObjectDetectionOutput,
    Deimv2PreTrainedModel,
)

__all__ = [
    "PRESETS",
    "Deimv2Config",
    "Deimv2ForObjectDetection",
    "Deimv2ImageProcessor",
    "Deimv2Model",
    "Deimv2ModelOutput",
    "Deimv2ObjectDetectionOutput",
    "Deimv2PreTrainedModel",
]
