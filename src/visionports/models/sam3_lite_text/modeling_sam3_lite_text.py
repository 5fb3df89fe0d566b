"""``Sam3LiteTextModel``: the student text encoder feeding the SAM3 detector."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import transformers.models.sam3.modeling_sam3 as sam3
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput

from ...core.pretrained import ReloadIdenticalMixin, as_returned, output_flags
from .configuration_sam3_lite_text import Sam3LiteTextConfig, Sam3LiteTextTextConfig
from .deploy_sam3_lite_text import DeployableMixin
from .detector_sam3_lite_text import Sam3LiteTextDetector, sam3_config_for
from .interactive_sam3_lite_text import (
    Sam3LiteTextInteractiveOutput,
    TrackerImageFeatures,
    predict_masks,
    tracker_image_features,
    trunk_map,
)
from .modeling_text_sam3_lite_text import Sam3LiteTextTextModel, Sam3LiteTextTextOutput


@dataclass
class Sam3LiteTextOutput(ModelOutput):
    """Per query (an image/prompt pair, ``image_ids`` / ``text_ids``): ``pred_logits`` [N, Q, 1],
    ``presence_logits`` [N, 1], ``pred_boxes`` [N, Q, 4] (normalised cx, cy, w, h), ``pred_masks`` [N, Q, h, w]
    (logits at stride 4 of the ViT grid), ``semantic_seg``.

    With ``output_hidden_states``: ``text_hidden_states`` (embeddings + every text block, per prompt),
    ``vision_hidden_states`` (ViT trunk, per image), ``encoder_hidden_states`` (DETR encoder, per query). With
    ``output_attentions``: ``text_attentions`` (one per text Transformer block), ``vision_attentions`` (one per
    ViT block; windowed blocks per window), ``encoder_attentions`` and ``decoder_attentions`` (every attention
    of the DETR encoder / decoder layers, in call order).
    """

    pred_logits: torch.Tensor | None = None
    presence_logits: torch.Tensor | None = None
    pred_boxes: torch.Tensor | None = None
    pred_masks: torch.Tensor | None = None
    semantic_seg: torch.Tensor | None = None
    image_ids: torch.Tensor | None = None
    text_ids: torch.Tensor | None = None
    text_hidden_states: tuple[torch.Tensor, ...] | None = None
    vision_hidden_states: tuple[torch.Tensor, ...] | None = None
    encoder_hidden_states: tuple[torch.Tensor, ...] | None = None
    text_attentions: tuple[torch.Tensor, ...] | None = None
    vision_attentions: tuple[torch.Tensor, ...] | None = None
    encoder_attentions: tuple[torch.Tensor, ...] | None = None
    decoder_attentions: tuple[torch.Tensor, ...] | None = None
    text_outputs: Sam3LiteTextTextOutput | None = None
    detector_outputs: Any = None


class Sam3LiteTextModel(DeployableMixin, ReloadIdenticalMixin, PreTrainedModel):
    """Text-prompted segmentation: ``model(pixel_values=..., input_ids=...)``.

    Text features can be computed once (:meth:`get_text_features`) and reused for many images, and image
    features once (:meth:`get_image_features`) for many prompts.
    """

    config_class = Sam3LiteTextConfig
    config: Sam3LiteTextConfig
    main_input_name = "pixel_values"
    base_model_prefix = "sam3_lite_text"
    input_modalities = ("image", "text")
    _no_split_modules = ["Sam3LiteTextTransformerLayer", "Sam3LiteTextRepMixerLayer", "Sam3ViTLayer"]
    supports_gradient_checkpointing = True
    _supports_sdpa = True

    def __init__(self, config: Sam3LiteTextConfig):
        requested = (
            config._attn_implementation_internal
        )  # None unless asked for (from_pretrained, _from_config)
        super().__init__(config)
        text_config, detector_config = config.text_config, sam3_config_for(**config.detector)
        if requested is not None:  # otherwise each part keeps its own default (text: eager, SAM3 parts: sdpa)
            text_config._attn_implementation = requested
            detector_config._attn_implementation = requested
        self.text_model = Sam3LiteTextTextModel(text_config)
        self.detector = Sam3LiteTextDetector(detector_config)
        self.tracker_neck, self.tracker = None, None
        if config.tracker is not None:  # the second neck and the tracker's SAM heads / memory
            from transformers.models.sam3_tracker_video.modeling_sam3_tracker_video import (
                Sam3TrackerVideoModel,
            )

            from .convert_tracker_sam3_lite_text import fit_memory_width, tracker_config_for

            self.tracker_neck = sam3.Sam3VisionNeck(detector_config.vision_config)
            tracker_config = tracker_config_for(**config.tracker, vision_config=detector_config.vision_config)
            if requested is not None:
                tracker_config._attn_implementation = requested
            self.tracker = fit_memory_width(Sam3TrackerVideoModel(tracker_config, remove_vision_encoder=True))
        self.post_init()

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """transformers' defaults with ``initializer_range`` (the SAM3 detector's own scheme); the ViT position
        table normal(0, initializer_range) and its window positions recomputed. Sub-models (text encoder, SAM3
        vision model, DETR encoder/decoder, mask decoder) are initialised by their own ``_init_weights``."""
        super()._init_weights(module)
        if isinstance(module, sam3.Sam3ViTEmbeddings):
            init.normal_(module.position_embeddings, mean=0.0, std=self.config.initializer_range)
        elif isinstance(module, sam3.Sam3ViTLayer):
            init.copy_(module.position_ids, module.precompute_positions(module.config, module.window_size))

    def get_input_embeddings(self) -> nn.Embedding:
        """The text encoder's token embeddings."""
        return self.text_model.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.text_model.set_input_embeddings(value)

    def set_attn_implementation(self, attn_implementation: str | dict, **kwargs: Any) -> None:
        """As transformers', and also for the detector's plain-module parts (geometry encoder, scoring), whose
        configurations are not registered sub-configs: they follow this model's own implementation."""
        super().set_attn_implementation(attn_implementation, **kwargs)
        self.detector.config._attn_implementation = self.config._attn_implementation

    def _flags(self, output_attentions: bool | None, output_hidden_states: bool | None) -> dict[str, bool]:
        attentions, hidden = output_flags(self.config, output_attentions, output_hidden_states)
        return {"output_attentions": attentions, "output_hidden_states": hidden}

    def get_text_features(
        self,
        input_ids: torch.Tensor,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs: Any,
    ) -> Sam3LiteTextTextOutput | tuple:
        """The text encoder's outputs, to pass as ``text_outputs`` (``last_hidden_state``: the per-token features
        projected to the detector's d_model). The flags default to this model's config."""
        out = self.text_model(
            input_ids, return_dict=True, **self._flags(output_attentions, output_hidden_states)
        )
        return as_returned(out, self.config, return_dict)

    def get_image_features(
        self,
        pixel_values: torch.Tensor,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs: Any,
    ) -> Any:
        """ViT + FPN outputs, to pass as ``vision_outputs`` (``hidden_states`` / ``attentions`` of the ViT trunk).
        The flags default to this model's config."""
        self._check_pixel_values(pixel_values)
        out = self.detector.encode_image(pixel_values, **self._flags(output_attentions, output_hidden_states))
        return as_returned(out, self.config, return_dict)

    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        input_ids: torch.Tensor | None = None,
        text_outputs: Sam3LiteTextTextOutput | None = None,
        vision_outputs: Any = None,
        image_ids: torch.Tensor | None = None,
        text_ids: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        input_points: torch.Tensor | None = None,
        input_points_labels: torch.Tensor | None = None,
        input_boxes: torch.Tensor | None = None,
        input_boxes_labels: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> Sam3LiteTextOutput | tuple:
        """One query per (image, prompt) pair: ``image_ids[q]`` / ``text_ids[q]`` index the images and prompts
        (default: image b with prompt b, or one image with every prompt, or one prompt on every image). The flags
        default to the config's.

        Geometric prompts, per query or one set for every query (the processor makes them from pixel
        coordinates): ``input_points`` ``[Q, P, 2]`` normalised ``(x, y)``; ``input_boxes`` ``[Q, N, 4]``
        normalised ``(cx, cy, w, h)``; their labels ``[Q, P]`` / ``[Q, N]``: 1 positive, 0 negative, -10 padding.
        A query with boxes or points and no words of its own reads the prompt ``"visual"``, as the original."""
        config = self.config
        flags = self._flags(output_attentions, output_hidden_states)
        if text_outputs is None:
            if input_ids is None:
                raise ValueError("give input_ids (tokenised prompts) or precomputed text_outputs")
            text_outputs = self.text_model(input_ids, return_dict=True, **flags)
        if pixel_values is None and vision_outputs is None:
            raise ValueError("give pixel_values or precomputed vision_outputs")
        if pixel_values is not None:
            self._check_pixel_values(pixel_values)
        out = self.detector(
            pixel_values, text_outputs.last_hidden_state, text_outputs.attention_mask, vision_outputs,
            image_ids=image_ids, text_ids=text_ids, input_points=input_points, input_points_labels=input_points_labels,
            input_boxes=input_boxes, input_boxes_labels=input_boxes_labels, **flags,
        )  # fmt: skip
        output = Sam3LiteTextOutput(
            pred_logits=out.pred_logits, presence_logits=out.presence_logits, pred_boxes=out.pred_boxes,
            pred_masks=out.pred_masks, semantic_seg=out.semantic_seg, image_ids=out.image_ids, text_ids=out.text_ids,
            text_hidden_states=text_outputs.hidden_states, vision_hidden_states=out.vision_hidden_states,
            encoder_hidden_states=out.encoder_hidden_states, text_attentions=text_outputs.attentions,
            vision_attentions=out.vision_attentions, encoder_attentions=out.encoder_attentions,
            decoder_attentions=out.decoder_attentions, text_outputs=text_outputs, detector_outputs=out,
        )  # fmt: skip
        return as_returned(output, config, return_dict)

    def get_tracker_features(self, vision_outputs: Any) -> TrackerImageFeatures:
        """The tracker's view of images whose :meth:`get_image_features` are ``vision_outputs`` (the second neck
        on the shared ViT trunk): pass it as ``tracker_features`` to reuse it for many prompts."""
        self._require_tracker("get_tracker_features")
        return tracker_image_features(self.tracker_neck, self.tracker, trunk_map(vision_outputs))

    def predict_masks(
        self,
        pixel_values: torch.Tensor | None = None,
        input_points: torch.Tensor | None = None,
        input_labels: torch.Tensor | None = None,
        input_boxes: torch.Tensor | None = None,
        input_masks: torch.Tensor | None = None,
        multimask_output: bool = True,
        vision_outputs: Any = None,
        tracker_features: TrackerImageFeatures | None = None,
    ) -> Sam3LiteTextInteractiveOutput:
        """Masks of single objects from points and boxes (the original ``predict_inst``, SAM 1 task).

        Per image, per object: ``input_points`` ``[B, objects, P, 2]`` normalised ``(x, y)`` with ``input_labels``
        ``[B, objects, P]`` (1 positive, 0 negative), ``input_boxes`` ``[B, objects, 4]`` normalised
        ``(x1, y1, x2, y2)``, ``input_masks`` ``[B, 1, h, w]`` a previous low-resolution mask logit (one object).
        ``multimask_output``: three candidate masks per object (for an ambiguous click), else the best one.
        Post-process with the image processor's ``post_process_masks``.
        """
        self._require_tracker("predict_masks")
        if tracker_features is None:
            if vision_outputs is None:
                if pixel_values is None:
                    raise ValueError("give pixel_values, vision_outputs or tracker_features")
                self._check_pixel_values(pixel_values)
                vision_outputs = self.get_image_features(pixel_values)
            tracker_features = self.get_tracker_features(vision_outputs)
        return predict_masks(self.tracker, tracker_features, self.config.image_size, input_points, input_labels,
                             input_boxes, input_masks, multimask_output)  # fmt: skip

    def _require_tracker(self, method: str) -> None:
        if self.tracker is None:
            raise ValueError(
                f"{method} needs the tracker weights: this model was converted from a file without tracker.* keys "
                "(convert a released file that carries them)"
            )

    def _check_pixel_values(self, pixel_values: torch.Tensor) -> None:
        size = self.config.image_size
        if (
            pixel_values.ndim != 4
            or pixel_values.shape[1] != 3
            or tuple(pixel_values.shape[-2:]) != (size, size)
        ):
            raise ValueError(
                f"pixel_values must have shape [batch, 3, {size}, {size}], got {list(pixel_values.shape)}"
            )


def build_model(config: Sam3LiteTextConfig | Sam3LiteTextTextConfig) -> PreTrainedModel:
    """The full model, or the text encoder alone for a text-only configuration."""
    if isinstance(config, Sam3LiteTextTextConfig):
        return Sam3LiteTextTextModel(config)
    return Sam3LiteTextModel(config)
