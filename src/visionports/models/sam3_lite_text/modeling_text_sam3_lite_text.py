"""The SAM3-LiteText student text encoder: MobileCLIP text transformer ("mct" or "base") + projector.

Padding is attended: the encoder sees the whole zero-padded sequence with no mask (the detector masks
padding afterwards), exactly as the original.

Attention backends (``attn_implementation``): ``"eager"`` (the default) is the original's computation, scores
softmaxed in float32; ``"sdpa"`` runs ``F.scaled_dot_product_attention`` when asked for. Attention weights
(``output_attentions``) are computed by the eager path whatever the backend, one ``[B, heads, L, L]`` tensor per
Transformer block (RepMixer blocks have none).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.utils import ModelOutput

from ...core.pretrained import EagerByDefaultMixin, ReloadIdenticalMixin, as_returned, output_flags
from .configuration_sam3_lite_text import Sam3LiteTextTextConfig
from .deploy_sam3_lite_text import DeployableMixin


def _layer_norm_fp32(norm: nn.LayerNorm, x: torch.Tensor) -> torch.Tensor:
    weight = norm.weight.float() if norm.weight is not None else None
    bias = norm.bias.float() if norm.bias is not None else None
    return F.layer_norm(x.float(), norm.normalized_shape, weight, bias, norm.eps).to(x.dtype)


def eager_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float,
    dropout: float = 0.0,
    **kwargs,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The original's attention on ``[B, heads, L, head_dim]``: scaled queries, float32 softmax, no mask.

    Returns the output ``[B, L, heads, head_dim]`` and the weights, as transformers' attention interface."""
    scores = (query * scaling) @ key.transpose(-1, -2)
    weights = F.softmax(scores.float(), dim=-1).to(query.dtype)
    return (weights @ value).transpose(1, 2), weights


class Sam3LiteTextAttention(nn.Module):
    """Multi-head self-attention with a fused q|k|v projection; no mask; backend from ``config._attn_implementation``
    (transformers' attention interface; attention weights always come from the eager path)."""

    def __init__(self, config: Sam3LiteTextTextConfig):
        super().__init__()
        self.config = config
        self.is_causal = False
        self.num_heads = config.num_attention_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.scaling = self.head_dim**-0.5
        self.qkv_proj = nn.Linear(config.hidden_size, 3 * config.hidden_size)
        self.out_proj = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(
        self, x: torch.Tensor, output_attentions: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        batch, length, dim = x.shape
        qkv = self.qkv_proj(x).reshape(batch, length, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        implementation = "eager" if output_attentions else self.config._attn_implementation
        attention = ALL_ATTENTION_FUNCTIONS.get_interface(implementation, eager_attention_forward)
        out, weights = attention(self, *qkv.unbind(0), None, scaling=self.scaling, dropout=0.0)
        return self.out_proj(out.reshape(batch, length, dim)), weights


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

    def forward(
        self, x: torch.Tensor, output_attentions: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        attended, weights = self.attention(_layer_norm_fp32(self.norm1, x), output_attentions)
        x = x + attended
        return x + self.fc2(F.gelu(self.fc1(_layer_norm_fp32(self.norm2, x)))), weights


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
            self.mixer_scale = nn.Parameter(torch.full((dim, 1, 1), config.layer_scale_init_value))
            self.ffn_conv = Sam3LiteTextSequenceConv(dim, kernel, eps)
        self.fc1 = nn.Conv2d(dim, config.intermediate_size, 1)
        self.fc2 = nn.Conv2d(config.intermediate_size, dim, 1)
        self.ffn_scale = nn.Parameter(torch.full((dim, 1, 1), config.layer_scale_init_value))

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
            x = x + self._scaled(self.fc2(F.gelu(self.fc1(self.fused_ffn_conv(x)))))
        else:
            mixed = self.mixer_skip(x) + self.mixer_conv(x)
            x = x + self.mixer_scale * (mixed - self.norm_skip(x))
            x = x + self._scaled(self.fc2(F.gelu(self.fc1(self.ffn_conv(x)))))
        return x.squeeze(2).transpose(1, 2)

    def _scaled(self, ffn: torch.Tensor) -> torch.Tensor:
        """The layer-scaled FFN branch (deploy mode folds ``ffn_scale`` into ``fc2`` and drops it)."""
        return ffn if self.ffn_scale is None else self.ffn_scale * ffn


@dataclass
class Sam3LiteTextTextOutput(ModelOutput):
    """Outputs of :class:`Sam3LiteTextTextModel`.

    Args:
        last_hidden_state: per-token features in SAM3's d_model, ``[B, ctx, projection_dim]``.
        attention_mask: ``1`` for tokens, ``0`` for padding (``input_ids != 0``): for the detector only.
        encoder_last_hidden_state: final-LayerNorm output ``[B, ctx, hidden]``.
        pooled_output: MobileCLIP's CLIP-style text embedding (end-token feature @ ``text_projection``).
        hidden_states: embeddings and every block's output (with ``output_hidden_states``): blocks + 1.
        attentions: softmaxed attention weights ``[B, heads, L, L]`` of every Transformer block, in order (with
            ``output_attentions``; RepMixer blocks have none, so S0's two RepMixer blocks add no entry).
    """

    last_hidden_state: torch.Tensor | None = None
    attention_mask: torch.Tensor | None = None
    encoder_last_hidden_state: torch.Tensor | None = None
    pooled_output: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None


class Sam3LiteTextTextModel(DeployableMixin, ReloadIdenticalMixin, EagerByDefaultMixin, PreTrainedModel):
    """Student text encoder: token + position embeddings, RepMixer/transformer blocks, final LayerNorm, projector."""

    config_class = Sam3LiteTextTextConfig
    config: Sam3LiteTextTextConfig
    main_input_name = "input_ids"
    base_model_prefix = "text_model"
    input_modalities = ("text",)
    _no_split_modules = ["Sam3LiteTextTransformerLayer", "Sam3LiteTextRepMixerLayer"]
    supports_gradient_checkpointing = True
    _supports_sdpa = True

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """transformers' defaults (normal(0, initializer_range) projections and token embeddings, unit norms,
        BatchNorm statistics reset); positions and the CLIP text projection normal(0, hidden ** -0.5) and
        layer scales at ``layer_scale_init_value``, as upstream SAM3-LiteText / MobileCLIP."""
        super()._init_weights(module)
        if isinstance(module, Sam3LiteTextTextModel):
            init.normal_(module.position_embedding, std=module.config.hidden_size**-0.5)
            init.normal_(module.text_projection, std=module.config.hidden_size**-0.5)
        elif isinstance(module, Sam3LiteTextRepMixerLayer):
            value = self.config.layer_scale_init_value
            init.constant_(module.ffn_scale, value)
            if not module.is_reparameterized:
                init.constant_(module.mixer_scale, value)

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
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> Sam3LiteTextTextOutput | tuple:
        """``input_ids`` [B, context_length] from :class:`Sam3LiteTextTokenizer` (zero-padded); the flags default
        to the config's."""
        self._check_input_ids(input_ids)
        config = self.config
        output_attentions, output_hidden_states = output_flags(
            config, output_attentions, output_hidden_states
        )
        x = self.token_embedding(input_ids) + self.position_embedding
        states, attentions = [x], []
        for layer in self.layers:
            if isinstance(layer, Sam3LiteTextTransformerLayer):
                x, weights = layer(x, output_attentions=output_attentions)
                attentions.append(weights)
            else:
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
            attentions=tuple(attentions) if output_attentions else None,
        )
        return as_returned(output, config, return_dict)

    def _check_input_ids(self, input_ids: torch.Tensor) -> None:
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
