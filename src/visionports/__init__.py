"""visionports: vision models ported into the transformers ecosystem with proven parity.

Importing the package registers every family of :mod:`visionports.core.registry` with transformers' Auto
classes and pipelines; each family's public classes are exported here.
"""

from .models import register_all as _register_all

__version__ = "0.1.0"

_register_all()

from .models.deimv2 import (  # noqa: E402
    Deimv2Config,
    Deimv2ForObjectDetection,
    Deimv2ImageProcessor,
    Deimv2Model,
)
from .models.packed.aimv2_packed import Aimv2PackedVisionModel  # noqa: E402
from .models.packed.dinov3_packed import Dinov3PackedVisionModel  # noqa: E402
from .models.packed.image_processing_packed import PackedImageProcessor  # noqa: E402
from .models.packed.packing import cu_seqlens_from_grid_thw, pack_images, unpack  # noqa: E402
from .models.packed.siglip2_packed import Siglip2PackedVisionModel  # noqa: E402
from .models.sam3_lite_text import (  # noqa: E402
    Sam3LiteTextConfig,
    Sam3LiteTextImageProcessor,
    Sam3LiteTextModel,
    Sam3LiteTextTextConfig,
    Sam3LiteTextTextModel,
    Sam3LiteTextTokenizer,
)
from .models.videomt import (  # noqa: E402
    VideomtConfig,
    VideomtForUniversalSegmentation,
    VideomtVideoProcessor,
)

__all__ = [
    "Aimv2PackedVisionModel",
    "Deimv2Config",
    "Deimv2ForObjectDetection",
    "Deimv2ImageProcessor",
    "Deimv2Model",
    "Dinov3PackedVisionModel",
    "PackedImageProcessor",
    "Sam3LiteTextConfig",
    "Sam3LiteTextImageProcessor",
    "Sam3LiteTextModel",
    "Sam3LiteTextTextConfig",
    "Sam3LiteTextTextModel",
    "Sam3LiteTextTokenizer",
    "Siglip2PackedVisionModel",
    "VideomtConfig",
    "VideomtForUniversalSegmentation",
    "VideomtVideoProcessor",
    "__version__",
    "cu_seqlens_from_grid_thw",
    "pack_images",
    "unpack",
]
