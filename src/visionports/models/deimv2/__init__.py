"""DEIMv2: real-time DETR detector (HGNetV2 or DINOv3-ViT + Spatial Tuning Adapter backbones).

The public names load on first use, so importing a light submodule (``train_options_deimv2`` for the CLI's
``train --help``) does not import the model code.
"""

from __future__ import annotations

import importlib
from typing import Any

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


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
