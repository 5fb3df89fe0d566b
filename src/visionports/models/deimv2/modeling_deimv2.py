"""DEIMv2 models: ``Deimv2Model`` (backbone -> encoder -> decoder) and ``Deimv2ForObjectDetection``."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.models.hgnet_v2.modeling_hgnet_v2 import HGNetV2LearnableAffineBlock
from transformers.utils import ModelOutput

from ...core.deploy import InferenceOnlyMixin
from ...core.inputs import check_pixel_dtype
from ...core.pretrained import EagerByDefaultMixin, ReloadIdenticalMixin, as_returned, output_flags
from .backbone_deimv2 import Deimv2LayerScale, Deimv2RopeEmbedding, Deimv2ViT, build_backbone, rope_periods
from .configuration_deimv2 import Deimv2Config
from .decoder_deimv2 import Deimv2Decoder, Deimv2DeformableAttention, Deimv2TrainingOutputs
from .deploy_deimv2 import deploy_body
from .encoder_deimv2 import build_encoder
from .layers_deimv2 import Deimv2Gate
from .loss_deimv2 import Deimv2Criterion, prepare_targets


@dataclass
class Deimv2ModelOutput(ModelOutput):
    """Outputs of :class:`Deimv2Model`.

    Args:
        logits: class logits (pre-sigmoid) of the evaluation decoder layer, ``[B, Q, num_labels]``.
        pred_boxes: normalised boxes ``(cx, cy, w, h)``, ``[B, Q, 4]``.
        last_hidden_state: decoder queries after the evaluation layer, ``[B, Q, d_model]``.
        enc_outputs_logits: class logits of every encoder token (anchor), ``[B, sum(HW), num_labels]``.
        enc_topk_indices: the anchors selected as initial queries (descending score), ``[B, Q]``.
        init_reference_points: initial reference boxes as logits (inverse sigmoid), ``[B, Q, 4]``.
        pre_reference_points: boxes after the first layer that anchor the distribution refinement, ``[B, Q, 4]``.
        initial_queries: selected encoder tokens fed to the decoder (with ``output_hidden_states``).
        decoder_hidden_states: the initial queries, then each decoder layer's output (``decoder_layers + 1``
            tensors ``[B, Q, d_model]``, with ``output_hidden_states``).
        backbone_hidden_states: backbone feature maps (with ``output_hidden_states``).
        encoder_hidden_states: encoder feature maps, fine to coarse (with ``output_hidden_states``).
        backbone_attentions: each ViT layer's self-attention weights ``[B, heads, N, N]`` (ViT backbones,
            with ``output_attentions``; N counts the class/register tokens).
        encoder_attentions: each AIFI layer's self-attention weights ``[B, heads, HW, HW]`` (hybrid encoder,
            with ``output_attentions``).
        decoder_attentions: each decoder layer's query self-attention weights ``[B, heads, Q, Q]`` (with
            ``output_attentions``). The deformable cross-attention samples points and has no attention matrix.
        training_outputs: every decoder layer's predictions for the criterion (when targets are given).
    """

    logits: torch.Tensor | None = None
    pred_boxes: torch.Tensor | None = None
    last_hidden_state: torch.Tensor | None = None
    enc_outputs_logits: torch.Tensor | None = None
    enc_topk_indices: torch.Tensor | None = None
    init_reference_points: torch.Tensor | None = None
    pre_reference_points: torch.Tensor | None = None
    initial_queries: torch.Tensor | None = None
    decoder_hidden_states: tuple[torch.Tensor, ...] | None = None
    backbone_hidden_states: tuple[torch.Tensor, ...] | None = None
    encoder_hidden_states: tuple[torch.Tensor, ...] | None = None
    backbone_attentions: tuple[torch.Tensor, ...] | None = None
    encoder_attentions: tuple[torch.Tensor, ...] | None = None
    decoder_attentions: tuple[torch.Tensor, ...] | None = None
    training_outputs: Deimv2TrainingOutputs | None = None


@dataclass
class Deimv2ObjectDetectionOutput(Deimv2ModelOutput):
    """Outputs of :class:`Deimv2ForObjectDetection`.

    With ``labels``: ``loss`` (sum of the weighted terms) and ``loss_dict`` (each weighted term by name,
    e.g. ``loss_mal``, ``loss_bbox_aux_0``, ``loss_giou_pre``, ``loss_mal_enc_0``, ``loss_fgl_dn_1``).
    """

    loss: torch.Tensor | None = None
    loss_dict: dict[str, torch.Tensor] | None = None


class Deimv2PreTrainedModel(InferenceOnlyMixin, ReloadIdenticalMixin, EagerByDefaultMixin, PreTrainedModel):
    config_class = Deimv2Config
    config: Deimv2Config
    base_model_prefix = "model"
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    _no_split_modules = ["Deimv2DecoderLayer", "Deimv2ViTLayer"]
    supports_gradient_checkpointing = True
    _supports_sdpa = True

    def deploy(self, channels_last: bool = False) -> Deimv2PreTrainedModel:
        """Re-parameterise the model for inference, in place; returns ``self`` (idempotent).

        Every BatchNorm of the backbone and encoder is folded into the convolution before it and each RepVGG
        block's 3x3 + 1x1 branches become one 3x3 convolution; outputs equal the eval-mode model's up to float32
        rounding. ``channels_last`` also stores those convolutions' weights channels-last. Needs eval mode;
        a deployed model refuses ``train()`` and ``save_pretrained`` (save the undeployed model instead).
        """
        self._require_eval()
        body = self if isinstance(self, Deimv2Model) else self.model
        deploy_body(body, channels_last=channels_last)
        self._mark_deployed()
        return self

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """Initialisation of the original for heads and attention; defaults elsewhere.

        Uses ``transformers.initialization`` so that weights loaded by ``from_pretrained`` are left alone.
        """
        super()._init_weights(module)
        prior_bias = -math.log((1 - 0.01) / 0.01)
        if isinstance(module, Deimv2Decoder):
            init.constant_(module.enc_score_head.bias, prior_bias)
            for head in module.dec_score_head:
                init.constant_(head.bias, prior_bias)
            for mlp in [module.enc_bbox_head, module.pre_bbox_head, *module.dec_bbox_head]:
                init.zeros_(mlp.layers[-1].weight)
                init.zeros_(mlp.layers[-1].bias)
            for lqe in module.lqe_layers:
                init.zeros_(lqe.reg_conf.layers[-1].weight)
                init.zeros_(lqe.reg_conf.layers[-1].bias)
            for layer in module.query_pos_head.layers:
                init.xavier_uniform_(layer.weight)
            init.constant_(module.up, self.config.up)
            init.constant_(module.reg_scale, self.config.reg_scale)
            init.normal_(module.denoising_class_embed.weight, mean=0.0, std=1.0)
            init.zeros_(module.denoising_class_embed.weight[module.denoising_class_embed.padding_idx])
        elif isinstance(module, Deimv2DeformableAttention):
            init.zeros_(module.sampling_offsets.weight)
            thetas = torch.arange(module.num_heads, dtype=torch.float32) * (2.0 * math.pi / module.num_heads)
            grid = torch.stack([thetas.cos(), thetas.sin()], -1)
            grid = grid / grid.abs().max(-1, keepdim=True).values
            grid = grid.reshape(module.num_heads, 1, 2).tile([1, sum(module.points), 1])
            grid *= torch.cat([torch.arange(1, n + 1) for n in module.points]).reshape(1, -1, 1)
            init.copy_(module.sampling_offsets.bias, grid.flatten())
            init.zeros_(module.attention_weights.weight)
            init.zeros_(module.attention_weights.bias)
            scale = torch.tensor([1 / n for n in module.points for _ in range(n)], dtype=torch.float32)
            init.copy_(module.num_points_scale, scale)
        elif isinstance(module, Deimv2Gate):
            init.zeros_(module.gate.weight)
            init.zeros_(module.gate.bias)
        elif isinstance(module, HGNetV2LearnableAffineBlock):
            init.ones_(module.scale)
            init.zeros_(module.bias)
        elif isinstance(module, Deimv2RopeEmbedding):
            init.copy_(module.periods, rope_periods(module.periods.shape[0] * 4, self.config.vit_rope_base))
        elif isinstance(module, Deimv2LayerScale):
            init.constant_(module.gamma, 1e-5)
        elif isinstance(module, Deimv2ViT):
            init.trunc_normal_(module.cls_token, std=0.02)
            if module.num_register_tokens:
                init.trunc_normal_(module.register_tokens, std=0.02)
        if getattr(module, "num_batches_tracked", None) is not None:
            init.zeros_(module.num_batches_tracked)


def validate_pixel_values(pixel_values: torch.Tensor, model: nn.Module, multiple: int) -> None:
    """Raise a clear error for inputs the detector cannot take."""
    if not isinstance(pixel_values, torch.Tensor):
        raise TypeError(f"pixel_values must be a torch.Tensor, got {type(pixel_values).__name__}")
    if pixel_values.ndim != 4:
        raise ValueError(
            f"pixel_values must have shape [batch, 3, height, width], got {list(pixel_values.shape)}"
        )
    if pixel_values.shape[1] != 3:
        raise ValueError(f"pixel_values must have 3 (RGB) channels, got {pixel_values.shape[1]} channels")
    check_pixel_dtype(pixel_values, model)
    height, width = pixel_values.shape[-2:]
    if height % multiple or width % multiple or height == 0 or width == 0:
        raise ValueError(
            f"pixel_values height and width must be positive multiples of {multiple}, got {height}x{width}"
        )


def checked_inputs(
    pixel_values: torch.Tensor, labels: list[dict] | None, model: Deimv2PreTrainedModel
) -> list[dict[str, torch.Tensor]] | None:
    """Validate ``pixel_values``; the checked targets of ``labels`` (``None`` without labels)."""
    config = model.config
    validate_pixel_values(pixel_values, model, config.largest_stride)
    if labels is None:
        return None
    return prepare_targets(
        labels, pixel_values.shape[0], config.num_labels, pixel_values.device, pixel_values.dtype
    )


class Deimv2Model(Deimv2PreTrainedModel):
    """DEIMv2 detector body: backbone, encoder and decoder with its detection heads."""

    def __init__(self, config: Deimv2Config):
        super().__init__(config)
        if config.encoder_hidden_dim != config.d_model:
            raise ValueError("encoder_hidden_dim must equal d_model (the decoder has no input projection)")
        self.backbone = build_backbone(config)
        self.encoder = build_encoder(config)
        self.decoder = Deimv2Decoder(config)
        self.post_init()

    def forward(
        self,
        pixel_values: torch.Tensor,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        labels: list[dict] | None = None,
        output_attentions: bool | None = None,
        **kwargs,
    ) -> Deimv2ModelOutput | tuple:
        """``labels`` (``[{"class_labels", "boxes"}]``, checked by :func:`prepare_targets`) adds the denoising
        queries in training mode and keeps the per-layer predictions for the training criterion in
        ``training_outputs`` (the checked targets themselves are not returned)."""
        targets = checked_inputs(pixel_values, labels, self)
        output_attentions, output_hidden_states = output_flags(
            self.config, output_attentions, output_hidden_states
        )
        backbone_maps, backbone_attentions = self.backbone(pixel_values, output_attentions)
        encoder_maps, encoder_attentions = self.encoder(backbone_maps, output_attentions)
        result = self.decoder(encoder_maps, targets, output_attentions)
        output = Deimv2ModelOutput(
            logits=result.logits,
            pred_boxes=result.pred_boxes,
            last_hidden_state=result.last_hidden_state,
            enc_outputs_logits=result.enc_outputs_logits,
            enc_topk_indices=result.enc_topk_indices,
            init_reference_points=result.initial_reference_logits,
            pre_reference_points=result.pre_boxes,
            initial_queries=result.initial_queries if output_hidden_states else None,
            decoder_hidden_states=result.hidden_states if output_hidden_states else None,
            backbone_hidden_states=tuple(backbone_maps) if output_hidden_states else None,
            encoder_hidden_states=tuple(encoder_maps) if output_hidden_states else None,
            backbone_attentions=tuple(backbone_attentions) if output_attentions else None,
            encoder_attentions=tuple(encoder_attentions) if output_attentions else None,
            decoder_attentions=result.attentions if output_attentions else None,
            training_outputs=result.training,
        )
        return as_returned(output, self.config, return_dict)


class Deimv2ForObjectDetection(Deimv2PreTrainedModel):
    """DEIMv2 object detector: ``logits`` ``[B, Q, num_labels]`` and ``pred_boxes`` ``[B, Q, 4]`` (cx, cy, w, h).

    Training: pass ``labels=[{"class_labels": LongTensor[n], "boxes": FloatTensor[n, 4]}, ...]`` (boxes
    normalised cx, cy, w, h) to get the original recipe's ``loss`` and ``loss_dict``. The matcher switches
    its cost at ``config.matcher_change_epoch``: the criterion takes the epoch as an argument, ``epoch=`` of
    :meth:`forward` (0 when not given; ``train_deimv2.DetectionTrainer`` passes the current one).
    """

    accepts_loss_kwargs = False  # the loss is normalised by the number of boxes, not by the trainer

    def __init__(self, config: Deimv2Config):
        super().__init__(config)
        self.model = Deimv2Model(config)
        self.post_init()

    def forward(
        self,
        pixel_values: torch.Tensor,
        labels: list[dict] | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        epoch: int | None = None,
        output_attentions: bool | None = None,
        **kwargs,
    ) -> Deimv2ObjectDetectionOutput | tuple:
        targets = checked_inputs(pixel_values, labels, self)  # the body checks them again (idempotent)
        out = self.model(
            pixel_values,
            output_hidden_states=output_hidden_states,
            return_dict=True,
            labels=targets,
            output_attentions=output_attentions,
        )
        output = Deimv2ObjectDetectionOutput(**{k: v for k, v in out.items()})
        if targets is not None:
            criterion = Deimv2Criterion(self.config)
            output.loss_dict = criterion(out.training_outputs, targets, epoch=int(epoch or 0))
            output.loss = sum(output.loss_dict.values())
        return as_returned(output, self.config, return_dict)
