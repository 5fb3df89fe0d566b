"""VidEoMT's registration with the shared conversion and parity tools."""

from __future__ import annotations

from ...registry import ModelFamily
from .convert_videomt import convert_state_dict, infer_config
from .modeling_videomt import VideomtForUniversalSegmentation
from .parity_videomt import VideomtParity

FAMILY = ModelFamily(
    name="videomt",
    model_class=VideomtForUniversalSegmentation,
    infer_config=infer_config,
    convert_state_dict=convert_state_dict,
    make_processor=None,
    parity=VideomtParity(),
)
