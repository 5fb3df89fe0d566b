"""VidEoMT: online video segmentation inside a plain ViT, queries propagated frame to frame.

The public names load on first use, so importing a light submodule (``train_options_videomt`` for the CLI's
``train --help``) does not import the model code.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "PRESETS": "configuration_videomt",
    "VideomtConfig": "configuration_videomt",
    "VideomtForUniversalSegmentation": "modeling_videomt",
    "VideomtPreTrainedModel": "modeling_videomt",
    "VideomtSegmentationOutput": "modeling_videomt",
    "VideomtState": "modeling_videomt",
    "VideomtVideoProcessor": "video_processing_videomt",
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
