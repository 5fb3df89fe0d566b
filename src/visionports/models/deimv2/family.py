"""DEIMv2's registration with the shared conversion and parity tools."""

from __future__ import annotations

from ...core.registry import ModelFamily
from .configuration_deimv2 import Deimv2Config
from .convert_deimv2 import convert_state_dict, infer_config, strip_wrapper_prefix
from .image_processing_deimv2 import Deimv2ImageProcessor
from .modeling_deimv2 import Deimv2ForObjectDetection, Deimv2Model
from .parity_deimv2 import Deimv2Parity


def make_processor(config: Deimv2Config) -> Deimv2ImageProcessor:
    """The original eval preprocessing of this variant: its eval size, ImageNet normalisation for ViTs only."""
    return Deimv2ImageProcessor(
        size={"height": config.eval_image_size[0], "width": config.eval_image_size[1]},
        do_normalize=config.image_mean is not None,
        image_mean=config.image_mean,
        image_std=config.image_std,
        num_top_queries=config.num_top_queries,
    )


FAMILY = ModelFamily(
    name="deimv2",
    display_name="DEIMv2",
    description="a real-time DETR-style object detector (HGNetv2 or DINOv3 backbone) trained on COCO",
    pipeline_tag="object-detection",
    license="apache-2.0",
    original_url="https://github.com/Intellindust-AI-Lab/DEIMv2",
    paper_url="https://arxiv.org/abs/2509.20787",
    model_class=Deimv2ForObjectDetection,
    infer_config=infer_config,
    convert_state_dict=convert_state_dict,
    prepare_state_dict=strip_wrapper_prefix,
    make_processor=make_processor,
    auto_model="AutoModelForObjectDetection",
    parity=Deimv2Parity(),
    auto_models=(
        ("AutoModel", Deimv2Config, Deimv2Model),
        ("AutoModelForObjectDetection", Deimv2Config, Deimv2ForObjectDetection),
    ),
    processors={Deimv2Config: Deimv2ImageProcessor},
    tasks=("detect", "evaluate", "train", "export"),  # the CLI verbs that take its folders
)
