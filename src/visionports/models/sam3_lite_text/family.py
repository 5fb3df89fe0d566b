"""SAM3-LiteText's registration with the shared conversion and parity tools (text encoder for now)."""

from __future__ import annotations

from ...registry import ModelFamily
from .convert_sam3_lite_text import convert_state_dict, infer_config
from .modeling_text_sam3_lite_text import Sam3LiteTextTextModel
from .parity_sam3_lite_text import Sam3LiteTextParity

FAMILY = ModelFamily(
    name="sam3_lite_text",
    model_class=Sam3LiteTextTextModel,
    infer_config=infer_config,
    convert_state_dict=convert_state_dict,
    make_processor=None,
    parity=Sam3LiteTextParity(),
)
