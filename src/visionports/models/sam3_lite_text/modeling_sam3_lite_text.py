"""``Sam3LiteTextModel``: the student text encoder feeding the SAM3 detector."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from transformers import PreTrainedModel
from transformers.utils import ModelOutput

from ...pretrained import ReloadIdenticalMixin
from .configuration_sam3_lite_text import Sam3LiteTextConfig, Sam3LiteTextTextConfig
from .detector_sam3_lite_text import Sam3LiteTextDetector, sam3_config_for
from .modeling_text_sam3_lite_text import Sam3LiteTextTextModel, Sam3LiteTextTextOutput


@dataclass
class Sam3LiteTextOutput(ModelOutput):
    """Per query (an image/prompt pair, ``image_ids`` / ``text_ids``): ``pred_logits`` [N, Q, 1],
    ``presence_logits`` [N, 1], ``pred_boxes`` [N, Q, 4] (normalised cx, cy, w, h), ``pred_masks`` [N, Q, h, w]
    (logits at stride 4 of the ViT grid), ``semantic_seg``."""

    pred_logits: torch.Tensor | None = None
    presence_logits: torch.Tensor | None = None
    pred_boxes: torch.Tensor | None = None
    pred_masks: torch.Tensor | None = None
    semantic_seg: torch.Tensor | None = None
    image_ids: torch.Tensor | None = None
    text_ids: torch.Tensor | None = None
    text_outputs: Sam3LiteTextTextOutput | None = None
    detector_outputs: Any = None


class Sam3LiteTextModel(ReloadIdenticalMixin, PreTrainedModel):
    """Text-prompted segmentation: ``model(pixel_values=..., input_ids=...)``.

    Text features can be computed once (:meth:`get_text_features`) and reused for many images, and image
    features once (:meth:`get_image_features`) for many prompts.
    """

    config_class = Sam3LiteTextConfig
    config: Sam3LiteTextConfig
    main_input_name = "pixel_values"
    base_model_prefix = "sam3_lite_text"

    def __init__(self, config: Sam3LiteTextConfig):
        super().__init__(config)
        self.text_model = Sam3LiteTextTextModel(config.text)
        self.detector = Sam3LiteTextDetector(sam3_config_for(**config.detector))
        self.post_init()

    def get_text_features(self, input_ids: torch.Tensor) -> Sam3LiteTextTextOutput:
        return self.text_model(input_ids)

    def get_image_features(self, pixel_values: torch.Tensor) -> Any:
        return self.detector.encode_image(pixel_values)

    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        input_ids: torch.Tensor | None = None,
        text_outputs: Sam3LiteTextTextOutput | None = None,
        vision_outputs: Any = None,
        image_ids: torch.Tensor | None = None,
        text_ids: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> Sam3LiteTextOutput:
        """One query per (image, prompt) pair: ``image_ids[q]`` / ``text_ids[q]`` index the images and prompts
        (default: image b with prompt b, or one image with every prompt, or one prompt on every image)."""
        if text_outputs is None:
            if input_ids is None:
                raise ValueError("give input_ids (tokenised prompts) or precomputed text_outputs")
            text_outputs = self.text_model(input_ids)
        if pixel_values is None and vision_outputs is None:
            raise ValueError("give pixel_values or precomputed vision_outputs")
        if pixel_values is not None:
            size = self.config.image_size
            if (
                pixel_values.ndim != 4
                or pixel_values.shape[1] != 3
                or tuple(pixel_values.shape[-2:]) != (size, size)
            ):
                raise ValueError(
                    f"pixel_values must have shape [batch, 3, {size}, {size}], got {list(pixel_values.shape)}"
                )
        out = self.detector(
            pixel_values, text_outputs.last_hidden_state, text_outputs.attention_mask, vision_outputs,
            image_ids=image_ids, text_ids=text_ids,
        )  # fmt: skip
        return Sam3LiteTextOutput(
            pred_logits=out.pred_logits, presence_logits=out.presence_logits, pred_boxes=out.pred_boxes,
            pred_masks=out.pred_masks, semantic_seg=out.semantic_seg, image_ids=out.image_ids, text_ids=out.text_ids,
            text_outputs=text_outputs, detector_outputs=out,
        )  # fmt: skip


def build_model(config: Sam3LiteTextConfig | Sam3LiteTextTextConfig) -> PreTrainedModel:
    """The full model, or the text encoder alone for a text-only configuration."""
    if isinstance(config, Sam3LiteTextTextConfig):
        return Sam3LiteTextTextModel(config)
    return Sam3LiteTextModel(config)
