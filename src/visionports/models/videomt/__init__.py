"""VidEoMT: online video segmentation inside a plain ViT, queries propagated frame to frame.

The public names load on first use, so importing a light submodule (``train_options_videomt`` for the CLI's
``train --help``) does not import the model code.
"""

from __future__ import annotations

from ...core.lazy_exports import lazy_exports

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


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
