"""The model families visionports supports, and what each provides to the shared tools."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from transformers import PreTrainedConfig, PreTrainedModel

from .key_mapping import MappedStateDict


@dataclass(frozen=True)
class ModelFamily:
    """Hooks a family registers for conversion and parity checking."""

    name: str
    model_class: type[PreTrainedModel]
    infer_config: Callable[..., PreTrainedConfig]  # (state_dict, variant=None, **overrides) -> config
    convert_state_dict: Callable[[Mapping[str, torch.Tensor], PreTrainedConfig], MappedStateDict]
    make_processor: Callable[[PreTrainedConfig], Any] | None = None
    auto_model: str = "AutoModel"  # the transformers Auto class a user loads a converted folder with
    parity: Any = None  # a ParityAdapter (see visionports.core.parity)


_FAMILY_MODULES = {
    "deimv2": "visionports.models.deimv2.family",
    "videomt": "visionports.models.videomt.family",
    "sam3_lite_text": "visionports.models.sam3_lite_text.family",
}


def family_names(with_aliases: bool = False) -> list[str]:
    """Family names (``with_aliases`` adds hyphenated spellings such as ``sam3-lite-text``)."""
    names = sorted(_FAMILY_MODULES)
    return names + [n.replace("_", "-") for n in names if "_" in n] if with_aliases else names


def get_family(name: str) -> ModelFamily:
    key = name.lower().replace("-", "_")
    if key not in _FAMILY_MODULES:
        raise ValueError(f"unknown model {name!r}; supported: {', '.join(family_names())}")
    return importlib.import_module(_FAMILY_MODULES[key]).FAMILY
