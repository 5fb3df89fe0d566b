"""visionports: vision models ported into the transformers ecosystem with proven parity.

Importing the package is cheap: the families of :mod:`visionports.core.registry` are registered with
transformers' Auto classes and pipelines as soon as those are loaded (see :func:`models.register_lazily`), and
each family's public classes below are imported on first use (PEP 562).
"""

from __future__ import annotations

import importlib
from typing import Any

from .models import register_lazily as _register_lazily

__version__ = "0.1.0"

_register_lazily()

_EXPORTS = {
    "Aimv2PackedVisionModel": ".models.packed.aimv2_packed",
    "Deimv2Config": ".models.deimv2",
    "Deimv2ForObjectDetection": ".models.deimv2",
    "Deimv2ImageProcessor": ".models.deimv2",
    "Deimv2Model": ".models.deimv2",
    "Dinov3PackedVisionModel": ".models.packed.dinov3_packed",
    "PackedImageProcessor": ".models.packed.image_processing_packed",
    "Sam3LiteTextConfig": ".models.sam3_lite_text",
    "Sam3LiteTextImageProcessor": ".models.sam3_lite_text",
    "Sam3LiteTextModel": ".models.sam3_lite_text",
    "Sam3LiteTextTextConfig": ".models.sam3_lite_text",
    "Sam3LiteTextTextModel": ".models.sam3_lite_text",
    "Sam3LiteTextTokenizer": ".models.sam3_lite_text",
    "Siglip2PackedVisionModel": ".models.packed.siglip2_packed",
    "VideomtConfig": ".models.videomt",
    "VideomtForUniversalSegmentation": ".models.videomt",
    "VideomtVideoProcessor": ".models.videomt",
    "cu_seqlens_from_grid_thw": ".models.packed.packing",
    "pack_images": ".models.packed.packing",
    "unpack": ".models.packed.packing",
}


def __getattr__(name: str) -> Any:
    """A public class or function, imported from its family on first use."""
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})


__all__ = [*sorted(_EXPORTS), "__version__"]
