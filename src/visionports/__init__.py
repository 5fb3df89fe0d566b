"""visionports: vision models ported into the transformers ecosystem with proven parity."""

from .models import register_all as _register_all

__version__ = "0.1.0"

_register_all()

from .models.deimv2 import (  # noqa: E402
    Deimv2Config,
    Deimv2ForObjectDetection,
    Deimv2ImageProcessor,
    Deimv2Model,
)

__all__ = ["Deimv2Config", "Deimv2ForObjectDetection", "Deimv2ImageProcessor", "Deimv2Model", "__version__"]
