"""VidEoMT's registration with the shared conversion and parity tools."""

from __future__ import annotations

from ...core.registry import ModelFamily
from .configuration_videomt import VideomtConfig
from .convert_videomt import convert_state_dict, infer_config, strip_wrapper_prefix
from .modeling_videomt import VideomtForUniversalSegmentation
from .parity_videomt import VideomtParity
from .pipeline_videomt import register_pipeline
from .video_processing_videomt import VideomtVideoProcessor


def make_processor(config: VideomtConfig) -> VideomtVideoProcessor:
    """The original evaluation preprocessing and post-processing settings of this checkpoint."""
    return VideomtVideoProcessor(
        min_size=config.min_size_test,
        max_size=config.max_size_test,
        size_divisibility=config.size_divisibility,
        image_mean=config.image_mean,
        image_std=config.image_std,
        task=config.task,
        max_instances=config.max_num_instances,
        object_threshold=config.object_mask_threshold,
        overlap_threshold=config.overlap_threshold,
        num_thing_classes=config.num_thing_classes,
    )


FAMILY = ModelFamily(
    name="videomt",
    display_name="VidEoMT",
    description="an online video segmentation model built from a plain ViT (EoMT with query propagation)",
    pipeline_tag="image-segmentation",  # the Hub has no video-segmentation tag
    license="mit",
    original_url="https://github.com/tue-mps/videomt",
    paper_url="https://arxiv.org/abs/2602.17807",
    base_model="tue-mps/VidEoMT",
    model_class=VideomtForUniversalSegmentation,
    infer_config=infer_config,
    convert_state_dict=convert_state_dict,
    prepare_state_dict=strip_wrapper_prefix,
    make_processor=make_processor,
    auto_model="AutoModelForUniversalSegmentation",
    parity=VideomtParity(),
    auto_models=(
        ("AutoModel", VideomtConfig, VideomtForUniversalSegmentation),
        ("AutoModelForUniversalSegmentation", VideomtConfig, VideomtForUniversalSegmentation),
    ),
    processors={VideomtConfig: VideomtVideoProcessor},
    register_pipelines=register_pipeline,
    tasks=("evaluate", "segment-video", "train"),  # the CLI verbs that take its folders
)
