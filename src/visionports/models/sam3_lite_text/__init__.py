"""SAM3-LiteText: SAM3 with a distilled MobileCLIP student text encoder (text encoder and tokenizer so far)."""

from .configuration_sam3_lite_text import TEXT_PRESETS, Sam3LiteTextTextConfig
from .modeling_text_sam3_lite_text import Sam3LiteTextTextModel, Sam3LiteTextTextOutput
from .tokenization_sam3_lite_text import Sam3LiteTextTokenizer

__all__ = [
    "TEXT_PRESETS",
    "Sam3LiteTextTextConfig",
    "Sam3LiteTextTextModel",
    "Sam3LiteTextTextOutput",
    "Sam3LiteTextTokenizer",
]
