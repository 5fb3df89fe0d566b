"""SAM3-LiteText's registration with the shared conversion and parity tools."""

from __future__ import annotations

from ...core.registry import ModelFamily
from .configuration_sam3_lite_text import Sam3LiteTextConfig, Sam3LiteTextTextConfig
from .convert_sam3_lite_text import convert_state_dict, infer_config, strip_prefixes
from .image_processing_sam3_lite_text import Sam3LiteTextImageProcessor
from .modeling_sam3_lite_text import Sam3LiteTextModel, build_model
from .modeling_text_sam3_lite_text import Sam3LiteTextTextModel
from .parity_sam3_lite_text import Sam3LiteTextParity
from .pipeline_sam3_lite_text import register_pipeline
from .tokenization_sam3_lite_text import Sam3LiteTextTokenizer


def make_processor(config: Sam3LiteTextConfig | Sam3LiteTextTextConfig) -> Sam3LiteTextImageProcessor | None:
    """SAM3's image preprocessing at the detector's input size (none for a text-encoder-only file)."""
    if isinstance(config, Sam3LiteTextTextConfig):
        return None
    return Sam3LiteTextImageProcessor(
        size=config.image_size, threshold=config.threshold, mask_threshold=config.mask_threshold
    )


def make_tokenizer(config: Sam3LiteTextConfig | Sam3LiteTextTextConfig) -> Sam3LiteTextTokenizer:
    """The original tokenizer at the text encoder's context length."""
    text = config if isinstance(config, Sam3LiteTextTextConfig) else config.text
    return Sam3LiteTextTokenizer(text.context_length)


FAMILY = ModelFamily(
    name="sam3_lite_text",
    display_name="SAM3-LiteText",
    description="SAM3 with its CLIP text encoder replaced by a distilled MobileCLIP text encoder "
    "(text-prompted segmentation)",
    pipeline_tag="mask-generation",
    license="other",
    license_note="The original weights are released under the SAM License (Meta's licence for SAM 3), "
    "not an open-source licence the Hub lists; read it in the original repository before use.",
    original_url="https://github.com/SimonZeng7108/efficientsam3",
    paper_url="https://arxiv.org/abs/2602.12173",
    base_model="Simon7108528/EfficientSAM3",
    model_class=build_model,  # the full model, or the text encoder alone for a text-only file
    infer_config=infer_config,
    convert_state_dict=convert_state_dict,
    prepare_state_dict=strip_prefixes,
    make_processor=make_processor,
    parity=Sam3LiteTextParity(),
    auto_models=(
        ("AutoModel", Sam3LiteTextTextConfig, Sam3LiteTextTextModel),
        ("AutoModel", Sam3LiteTextConfig, Sam3LiteTextModel),
    ),
    processors={Sam3LiteTextConfig: Sam3LiteTextImageProcessor},
    register_pipelines=register_pipeline,
    make_tokenizer=make_tokenizer,
    tokenizers={Sam3LiteTextTextConfig: Sam3LiteTextTokenizer, Sam3LiteTextConfig: Sam3LiteTextTokenizer},
    tasks=("segment", "segment-video"),  # the CLI verbs that take its folders
)
