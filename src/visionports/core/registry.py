"""The model families visionports supports, and what each provides to the shared tools."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # annotations only: the registry's names load without torch (``visionports --help``)
    import torch
    from transformers import PreTrainedConfig, PreTrainedModel

    from .key_mapping import MappedStateDict
    from .state_dict import StateDict


@dataclass(frozen=True)
class ModelFamily:
    """Everything the package knows about a family: the one source of truth for conversion, parity, the
    transformers Auto classes, processors, pipelines and the CLI's choices.

    ``auto_models`` lists ``(Auto class name, config class, model class)``: every config class met there is
    registered with ``AutoConfig``, every model with its Auto class. ``processors`` / ``tokenizers`` map a
    config class to the image processor / tokenizer saved with its models (``make_processor`` /
    ``make_tokenizer`` build them for a converted folder).

    A family that converts original checkpoints gives ``model_class``, ``infer_config`` and
    ``convert_state_dict`` (``prepare_state_dict`` runs once on the raw weights first, e.g. to strip wrapper
    prefixes); one that reuses transformers' own folders (the packed encoders) leaves them ``None`` and names the
    configs it accepts in ``config_classes``. ``tasks`` are the CLI verbs that take the family's model folders.
    ``display_name`` ... ``base_model`` are the facts a folder's model card states (``license``: of the original
    weights).
    """

    name: str
    model_class: Callable[[PreTrainedConfig], PreTrainedModel] | None = None  # the converted model
    infer_config: Callable[..., PreTrainedConfig] | None = None  # (state_dict, variant=None, **overrides)
    convert_state_dict: Callable[[StateDict, PreTrainedConfig], MappedStateDict] | None = None
    prepare_state_dict: Callable[[StateDict], dict[str, torch.Tensor]] | None = None
    make_processor: Callable[[PreTrainedConfig], Any] | None = None
    auto_model: str = "AutoModel"  # the transformers Auto class a user loads a converted folder with
    parity: Any = None  # a ParityAdapter (see visionports.core.parity)
    auto_models: tuple[tuple[str, type[PreTrainedConfig], type[PreTrainedModel]], ...] = ()
    processors: Mapping[type[PreTrainedConfig], type] = field(default_factory=dict)
    register_pipelines: Callable[[], None] | None = None
    make_tokenizer: Callable[[PreTrainedConfig], Any] | None = None  # saved with converted folders
    tokenizers: Mapping[type[PreTrainedConfig], type] = field(default_factory=dict)  # for AutoTokenizer
    config_classes: tuple[type[PreTrainedConfig], ...] = ()  # accepted beyond those of ``auto_models``
    tasks: tuple[str, ...] = ()  # CLI verbs that take this family's folders (``detect``, ``segment`` ...)
    # What a model card says about the family's folders (see visionports.core.model_card)
    display_name: str = ""  # e.g. "DEIMv2" (default: ``name``)
    description: str = ""  # one sentence: what the model is
    pipeline_tag: str | None = None  # a valid Hub pipeline tag, e.g. "object-detection"
    license: str = "other"  # the Hub licence id of the original weights
    license_note: str = ""  # said in the card, e.g. why the licence is "other"
    original_url: str | None = None  # the original code
    paper_url: str | None = None  # what to cite
    base_model: str | None = None  # the Hub repo holding the original weights, when there is one

    @property
    def converts(self) -> bool:
        """Whether the family converts original checkpoints (``visionports convert``)."""
        return self.infer_config is not None and self.convert_state_dict is not None

    def accepts(self, config: PreTrainedConfig) -> bool:
        """Whether ``config`` (a model folder's) belongs to this family."""
        classes = (*(c for _, c, _ in self.auto_models), *self.config_classes)
        return isinstance(config, classes)

    def prepare(self, state_dict: StateDict) -> dict[str, torch.Tensor]:
        """The raw weights as the converter reads them (``prepare_state_dict`` applied once)."""
        if self.prepare_state_dict is None:
            return dict(state_dict)
        return self.prepare_state_dict(state_dict)


_FAMILY_MODULES = {
    "deimv2": "visionports.models.deimv2.family",
    "videomt": "visionports.models.videomt.family",
    "sam3_lite_text": "visionports.models.sam3_lite_text.family",
    "packed": "visionports.models.packed.family",
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


def converting_family_names(with_aliases: bool = False) -> list[str]:
    """Names of the families ``visionports convert`` takes (those with a checkpoint converter)."""
    names = [f.name for f in all_families() if f.converts]
    return names + [n.replace("_", "-") for n in names if "_" in n] if with_aliases else names


def family_for_config(config: PreTrainedConfig) -> ModelFamily:
    """The family a model folder's config belongs to (``ValueError`` when none does)."""
    for family in all_families():
        if family.accepts(config):
            return family
    model_type = getattr(config, "model_type", type(config).__name__)
    raise ValueError(
        f"no visionports family takes a {model_type!r} model; supported: {', '.join(family_names())}"
    )


def families_for_task(task: str) -> list[ModelFamily]:
    """The families whose folders the CLI verb ``task`` takes."""
    return [f for f in all_families() if task in f.tasks]


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
