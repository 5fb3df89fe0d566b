"""DEIMv2's registration with the shared conversion and parity tools."""

from __future__ import annotations

from transformers import RTDetrImageProcessorPil

from ...registry import ModelFamily
from .configuration_deimv2 import Deimv2Config
from .convert_deimv2 import convert_state_dict, infer_config
from .modeling_deimv2 import Deimv2ForObjectDetection
from .parity_deimv2 import Deimv2Parity


def make_processor(config: Deimv2Config) -> RTDetrImageProcessorPil:
    """Processor of the original eval pipeline: resize to the eval size (no aspect), [0, 1], ImageNet norm for ViTs."""
    normalize = config.image_mean is not None
    return RTDetrImageProcessorPil(
        size={"height": config.eval_image_size[0], "width": config.eval_image_size[1]},
        do_resize=True,
        do_rescale=True,
        do_normalize=normalize,
        image_mean=config.image_mean if normalize else None,
        image_std=config.image_std if normalize else None,
    )


FAMILY = ModelFamily(
    name="deimv2",
    model_class=Deimv2ForObjectDetection,
    infer_config=infer_config,
    convert_state_dict=convert_state_dict,
    make_processor=make_processor,
    parity=Deimv2Parity(),
)
