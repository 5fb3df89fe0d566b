"""The SAM3-LiteText student text encoder: MobileCLIP text transformer ("mct" or "base") + projector.

Padding is attended: the encoder sees the whole zero-padded sequence with no mask (the detector masks
padding afterwards), exactly as the original.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.utils import ModelOutput

from ...pretrained import ReloadIdenticalMixin
from .configuration_sam3_lite_text import Sam3LiteTextTextConfig


def _layer_norm_fp32(norm: nn.LayerNorm, x: torch.Tensor) -> torch.Tensor:
    weight = norm.weight.float() if norm.weight is not None else None
    bias = norm.bias.float() if norm.bias is not None else None
    return F.layer_norm(x.float(), norm.normalized_shape, weight, bias, norm.eps).to(x.dtype)


class Sam3LiteTextAttention(nn.Module):
    """Multi-head self-attention with a fused q|k|v projection; softmax in float32; no mask."""

    def __init__(self, config: Sam3LiteTextTextConfig):
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.qkv_proj = nn.Linear(config.hidden_size, 3 * config.hidden_size)
        self.out_proj = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, dim = x.shape
        qkv = self.qkv_proj(x).reshape(batch, length, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        scores = (q * self.head_dim**-0.5) @ k.transpose(-1, -2)
        weights = F.softmax(scores.float(), dim=-1).to(q.dtype)
        return self.out_proj((weights @ v).transpose(1, 2).reshape(batch, length, dim))


class Sam3LiteTextTransformerLayer(GradientCheckpointingLayer):
    """Pre-norm transformer block (float32 LayerNorms, GELU FFN)."""

    def __init__(self, config: Sam3LiteTextTextConfig):
        super().__init__()
        dim = config.hidden_size
        self.norm1 = nn.LayerNorm(dim, eps=config.layer_norm_eps)
        self.attention = Sam3LiteTextAttention(config)
        self.norm2 = nn.LayerNorm(dim, eps=config.layer_norm_eps)
        self.fc1 = nn.Linear(dim, config.intermediate_size)
        self.fc2 = nn.Linear(config.intermediate_size, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(_layer_norm_fp32(self.norm1, x))
        return x + self.fc2(F.gelu(self.fc1(_layer_norm_fp32(self.norm2, x))))


class Sam3LiteTextSequenceConv(nn.Module):
    """Depthwise convolution along the token axis (kernel k, zero padding k // 2) + BatchNorm, on [B, D, 1, L]."""

    def __init__(self, dim: int, kernel: int, eps: float):
        super().__init__()
        self.conv = nn.Conv2d(dim, dim, (1, kernel), padding=(0, kernel // 2), groups=dim, bias=False)
        self.bn = nn.BatchNorm2d(dim, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


def _bn_affine(bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel (scale, shift) of an eval-mode BatchNorm."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return scale, bn.bias - bn.running_mean * scale


class Sam3LiteTextRepMixerLayer(GradientCheckpointingLayer):
    """MobileCLIP RepMixer block on the sequence seen as a 1 x L image.

    ``x + g1 * (BN_mix(x) + conv(x) - BN_norm(x))`` then ``x + g2 * FFN(conv(x))`` (1x1 convolutions, GELU).
    :meth:`reparameterize` folds the token mixer into one depthwise convolution with bias and the FFN's
    convolution + BatchNorm into another (equal within float32 round-off).
    """

    def __init__(self, config: Sam3LiteTextTextConfig):
        super().__init__()
        dim, kernel, eps = config.hidden_size, config.repmixer_kernel_size, config.batch_norm_eps
        self.kernel = kernel
        if config.reparameterized:
            self.fused_mixer = self._depthwise(dim, kernel, bias=True)
            self.fused_ffn_conv = self._depthwise(dim, kernel, bias=True)
        else:
            self.norm_skip = nn.BatchNorm2d(dim, eps=eps)
            self.mixer_skip = nn.BatchNorm2d(dim, eps=eps)
            self.mixer_conv = Sam3LiteTextSequenceConv(dim, kernel, eps)
            self.mixer_scale = nn.Parameter(torch.ones(dim, 1, 1))
            self.ffn_conv = Sam3LiteTextSequenceConv(dim, kernel, eps)
        self.fc1 = nn.Conv2d(dim, config.intermediate_size, 1)
        self.fc2 = nn.Conv2d(config.intermediate_size, dim, 1)
        self.ffn_scale = nn.Parameter(torch.ones(dim, 1, 1))

    @staticmethod
    def _depthwise(dim: int, kernel: int, bias: bool) -> nn.Conv2d:
        return nn.Conv2d(dim, dim, (1, kernel), padding=(0, kernel // 2), groups=dim, bias=bias)

    @property
    def is_reparameterized(self) -> bool:
        return hasattr(self, "fused_mixer")

    @torch.no_grad()
    def reparameterize(self) -> None:
        """Fuse the training-time branches (requires eval-mode BatchNorm statistics)."""
        if self.is_reparameterized:
            return
        dim, center = self.mixer_scale.shape[0], self.kernel // 2
        gamma = self.mixer_scale.reshape(-1)
        conv_scale, conv_shift = _bn_affine(self.mixer_conv.bn)
        mix_scale, mix_shift = _bn_affine(self.mixer_skip)
        norm_scale, norm_shift = _bn_affine(self.norm_skip)
        weight = self.mixer_conv.conv.weight * (gamma * conv_scale).view(-1, 1, 1, 1)
        weight[:, 0, 0, center] += 1 + gamma * (mix_scale - norm_scale)
        fused = self._depthwise(dim, self.kernel, bias=True).to(weight)
        fused.weight.copy_(weight)
        fused.bias.copy_(gamma * (conv_shift + mix_shift - norm_shift))
        ffn_scale, ffn_shift = _bn_affine(self.ffn_conv.bn)
        ffn = self._depthwise(dim, self.kernel, bias=True).to(weight)
        ffn.weight.copy_(self.ffn_conv.conv.weight * ffn_scale.view(-1, 1, 1, 1))
        ffn.bias.copy_(ffn_shift)
        for name in ("norm_skip", "mixer_skip", "mixer_conv", "mixer_scale", "ffn_conv"):
            delattr(self, name)
        self.fused_mixer, self.fused_ffn_conv = fused, ffn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.transpose(1, 2).unsqueeze(2)  # [B, L, D] -> [B, D, 1, L]
        if self.is_reparameterized:
            x = self.fused_mixer(x)
            x = x + self.ffn_scale * self.fc2(F.gelu(self.fc1(self.fused_ffn_conv(x))))
        else:
            mixed = self.mixer_skip(x) + self.mixer_conv(x)
            x = x + self.mixer_scale * (mixed - self.norm_skip(x))
            x = x + self.ffn_scale * self.fc2(F.gelu(self.fc1(self.ffn_conv(x))))
        return x.squeeze(2).transpose(1, 2)


@dataclass
class Sam3LiteTextTextOutput(ModelOutput):
    """Outputs of :class:`Sam3LiteTextTextModel`.

    Args:
        last_hidden_state: per-token features in SAM3's d_model, ``[B, ctx, projection_dim]``.
        attention_mask: ``1`` for tokens, ``0`` for padding (``input_ids != 0``): for the detector only.
        encoder_last_hidden_state: final-LayerNorm output ``[B, ctx, hidden]``.
        pooled_output: MobileCLIP's CLIP-style text embedding (end-token feature @ ``text_projection``).
        hidden_states: embeddings and every block's output (with ``output_hidden_states``).
    """

    last_hidden_state: torch.Tensor | None = None
    attention_mask: torch.Tensor | None = None
    encoder_last_hidden_state: torch.Tensor | None = None
    pooled_output: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None


class Sam3LiteTextTextModel(ReloadIdenticalMixin, PreTrainedModel):
    """Student text encoder: token + position embeddings, RepMixer/transformer blocks, final LayerNorm, projector."""

    config_class = Sam3LiteTextTextConfig
    config: Sam3LiteTextTextConfig
    main_input_name = "input_ids"
    base_model_prefix = "text_model"
    _no_split_modules = ["Sam3LiteTextTransformerLayer", "Sam3LiteTextRepMixerLayer"]
    supports_gradient_checkpointing = True

    def __init__(self, config: Sam3LiteTextTextConfig):
        super().__init__(config)
        dim = config.hidden_size
        self.token_embedding = nn.Embedding(config.vocab_size, dim)
        self.position_embedding = nn.Parameter(torch.zeros(config.context_length, dim))
        layer = {"transformer": Sam3LiteTextTransformerLayer, "repmixer": Sam3LiteTextRepMixerLayer}
        self.layers = nn.ModuleList(layer[kind](config) for kind in config.block_types)
        self.final_layer_norm = nn.LayerNorm(dim, eps=config.layer_norm_eps)
        self.text_projection = nn.Parameter(torch.zeros(dim, dim))
        self.projector = nn.Linear(dim, config.projection_dim)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.token_embedding

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.token_embedding = value

    def reparameterize(self) -> Sam3LiteTextTextModel:
        """Fold every RepMixer block into its inference layout (in place); the config records it."""
        for layer in self.layers:
            if isinstance(layer, Sam3LiteTextRepMixerLayer):
                layer.reparameterize()
        self.config.reparameterized = True
        return self

    def forward(
        self,
        input_ids: torch.Tensor,
        output_hidden_states: bool = False,
        return_dict: bool | None = None,
        **kwargs,
    ) -> Sam3LiteTextTextOutput | tuple:
        """``input_ids`` [B, context_length] from :class:`Sam3LiteTextTokenizer` (zero-padded)."""
        if (
            not isinstance(input_ids, torch.Tensor)
            or input_ids.ndim != 2
            or input_ids.dtype not in (torch.int64, torch.int32)
        ):
            raise ValueError("input_ids must be an integer tensor [batch, context_length]")
        if input_ids.shape[1] != self.config.context_length:
            raise ValueError(
                f"input_ids has {input_ids.shape[1]} tokens but the encoder was built for context_length "
                f"{self.config.context_length}; tokenize with the same context length"
            )
        x = self.token_embedding(input_ids) + self.position_embedding
        states = [x]
        for layer in self.layers:
            x = layer(x)
            states.append(x)
        features = _layer_norm_fp32(self.final_layer_norm, x)
        end = features[torch.arange(features.shape[0], device=features.device), input_ids.argmax(dim=-1)]
        output = Sam3LiteTextTextOutput(
            last_hidden_state=self.projector(features),
            attention_mask=(input_ids != 0).long(),
            encoder_last_hidden_state=features,
            pooled_output=end @ self.text_projection,
            hidden_states=tuple(states) if output_hidden_states else None,
        )
        return output if return_dict is not False else output.to_tuple()
