"""The model families visionports supports, and what each provides to the shared tools."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import PreTrainedConfig, PreTrainedModel

from .key_mapping import MappedStateDict


@dataclass(frozen=True)
class ModelFamily:
    """Everything the package knows about a family: the one source of truth for conversion, parity, the
    transformers Auto classes, processors, pipelines and the CLI's choices.

    ``auto_models`` lists ``(Auto class name, config class, model class)``: every config class met there is
    registered with ``AutoConfig``, every model with its Auto class. ``processors`` / ``tokenizers`` map a
    config class to the image processor / tokenizer saved with its models (``make_processor`` /
    ``make_tokenizer`` build them for a converted folder).
    """

    name: str
    model_class: Callable[[PreTrainedConfig], PreTrainedModel]  # the converted model for a config
    infer_config: Callable[..., PreTrainedConfig]  # (state_dict, variant=None, **overrides) -> config
    convert_state_dict: Callable[[Mapping[str, torch.Tensor], PreTrainedConfig], MappedStateDict]
    make_processor: Callable[[PreTrainedConfig], Any] | None = None
    auto_model: str = "AutoModel"  # the transformers Auto class a user loads a converted folder with
    parity: Any = None  # a ParityAdapter (see visionports.core.parity)
    auto_models: tuple[tuple[str, type[PreTrainedConfig], type[PreTrainedModel]], ...] = ()
    processors: Mapping[type[PreTrainedConfig], type] = field(default_factory=dict)
    register_pipelines: Callable[[], None] | None = None
    make_tokenizer: Callable[[PreTrainedConfig], Any] | None = None  # saved with converted folders
    tokenizers: Mapping[type[PreTrainedConfig], type] = field(default_factory=dict)  # for AutoTokenizer


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


def all_families() -> list[ModelFamily]:
    return [get_family(name) for name in family_names()]


def register_with_transformers(family: ModelFamily) -> None:
    """Register a family's configs, models, processors and pipelines with transformers (idempotent).

    Registered by class object with ``exist_ok``: upstream transformers has classes of the same names, and each
    of our config classes must still resolve to our models. Processors go on the mapping directly, one class
    for both backends: ``AutoImageProcessor.register`` would first instantiate the backends of an upstream entry
    of the same name.
    """
    import transformers
    from transformers.models.auto.image_processing_auto import IMAGE_PROCESSOR_MAPPING

    for auto_name, config_class, model_class in family.auto_models:
        transformers.AutoConfig.register(config_class.model_type, config_class, exist_ok=True)
        getattr(transformers, auto_name).register(config_class, model_class, exist_ok=True)
    for config_class, processor_class in family.processors.items():
        backends = {"pil": processor_class, "torchvision": processor_class}
        IMAGE_PROCESSOR_MAPPING.register(config_class, backends, exist_ok=True)
    for config_class, tokenizer_class in family.tokenizers.items():
        transformers.AutoTokenizer.register(config_class, tokenizer_class=tokenizer_class, exist_ok=True)
    if family.register_pipelines is not None:
        family.register_pipelines()
