"""SAM3-LiteText: SAM3 with a distilled MobileCLIP student text encoder."""

from .configuration_sam3_lite_text import TEXT_PRESETS, Sam3LiteTextConfig, Sam3LiteTextTextConfig
from .image_processing_sam3_lite_text import Sam3LiteTextImageProcessor
from .modeling_sam3_lite_text import Sam3LiteTextModel, Sam3LiteTextOutput
from .modeling_text_sam3_lite_text import Sam3LiteTextTextModel, Sam3LiteTextTextOutput
from .tokenization_sam3_lite_text import Sam3LiteTextTokenizer

__all__ = [
    "TEXT_PRESETS",
    "Sam3LiteTextConfig",
    "Sam3LiteTextImageProcessor",
    "Sam3LiteTextModel",
    "Sam3LiteTextOutput",
    "Sam3LiteTextTextConfig",
    "Sam3LiteTextTextModel",
    "Sam3LiteTextTextOutput",
    "Sam3LiteTextTokenizer",
]
