"""DEIMv2: real-time DETR detector (HGNetV2 or DINOv3-ViT + Spatial Tuning Adapter backbones).

The public names load on first use, so importing a light submodule (``train_options_deimv2`` for the CLI's
``train --help``) does not import the model code.
"""

from __future__ import annotations

from ...core.lazy_exports import lazy_exports

_EXPORTS = {
    "PRESETS": "configuration_deimv2",
    "Deimv2Config": "configuration_deimv2",
    "Deimv2ImageProcessor": "image_processing_deimv2",
    "Deimv2ForObjectDetection": "modeling_deimv2",
    "Deimv2Model": "modeling_deimv2",
    "Deimv2ModelOutput": "modeling_deimv2",
    "Deimv2ObjectDetectionOutput": "modeling_deimv2",
    "Deimv2PreTrainedModel": "modeling_deimv2",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
