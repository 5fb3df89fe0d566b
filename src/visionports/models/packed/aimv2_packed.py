"""AIMv2 vision encoder over packed images (no padding): ``Aimv2PackedVisionModel``.

Parameter names are those of ``transformers.Aimv2VisionModel`` (its embedding, encoder, final ``rms_norm`` and
attention-pooling head modules are reused); the forward runs every layer once over all images' patches, with
attention bounded per image by ``cu_seqlens``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers import Aimv2VisionConfig, PreTrainedModel
from transformers.modeling_outputs import BaseModelOutputWithPooling
from transformers.models.aimv2.modeling_aimv2 import (
    Aimv2AttentionPoolingHead,
    Aimv2Encoder,
    Aimv2RMSNorm,
    Aimv2VisionEmbeddings,
    build_2d_sinusoidal_position_embedding,
)

from ...packing import (
    cu_seqlens_from_grid_thw,
    packed_attention,
    resolve_backend,
    segment_lengths,
    validate_packed,
)
from .loading import RefuseMissingWeightsMixin


def _requested_backend(config) -> str | None:
    """``None`` (automatic) unless a backend other than transformers' default "sdpa" was asked for."""
    value = getattr(config, "_attn_implementation", None)
    return None if value in (None, "auto", "sdpa") else value


class Aimv2PackedVisionModel(RefuseMissingWeightsMixin, PreTrainedModel):
    """``forward(hidden_states [N, p*p*C], grid_thw [n, 3])`` -> rows ``[N, D]`` (no CLS: ``num_prefix_tokens = 0``)
    and ``pooler_output [n, D]`` when ``config.use_head``. Fixed-size checkpoints accept only ``(1, S, S)`` grids."""

    config_class = Aimv2VisionConfig
    config: Aimv2VisionConfig
    base_model_prefix = (
        "vision_model"  # a two-tower Aimv2Model folder keeps the vision tower under this prefix
    )
    main_input_name = "hidden_states"
    _supports_sdpa = True
    _supports_flash_attn = True
    num_prefix_tokens = 0

    def __init__(self, config: Aimv2VisionConfig):
        super().__init__(config)
        self.embeddings = Aimv2VisionEmbeddings(config)
        self.encoder = Aimv2Encoder(config)
        self.rms_norm = Aimv2RMSNorm(config.hidden_size, config.rms_norm_eps)
        if config.use_head:
            self.head = Aimv2AttentionPoolingHead(config)
        self.post_init()

    def _patch_rows(self, hidden_states: torch.Tensor) -> torch.Tensor:
        conv = self.embeddings.patch_embed
        weight = conv.weight.permute(0, 2, 3, 1).reshape(conv.weight.shape[0], -1)  # (py, px, c) rows
        return F.linear(hidden_states, weight, conv.bias)

    def _positions(self, grid_thw: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        parts = []
        for _, h, w in grid_thw.tolist():
            if self.config.is_native:
                table = build_2d_sinusoidal_position_embedding(h, w, self.config.hidden_size, device=like.device,
                                                               dtype=like.dtype)  # fmt: skip
                half = table.shape[-1] // 2
                parts.append(torch.cat([table[:, half:], table[:, :half]], dim=-1))  # trained w-first
            else:
                parts.append(self.embeddings.position_embedding.weight)
        return torch.cat(parts)

    def forward(
        self,
        hidden_states: torch.Tensor,
        grid_thw: torch.Tensor,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> BaseModelOutputWithPooling | tuple:
        config = self.config
        validate_packed(hidden_states, grid_thw, config.patch_size, config.num_channels)
        if not config.is_native:
            side = config.image_size // config.patch_size
            for i, (_, h, w) in enumerate(grid_thw.tolist()):
                if (h, w) != (side, side):
                    raise ValueError(
                        f"grid_thw[{i}] is {(1, h, w)} but this fixed-size AIMv2 takes only (1, {side}, {side}) "
                        f"({config.image_size}x{config.image_size} images); use a native checkpoint for other sizes"
                    )
        output_hidden_states = (
            output_hidden_states if output_hidden_states is not None else config.output_hidden_states
        )
        lengths = segment_lengths(grid_thw)
        cu_seqlens, max_seqlen = cu_seqlens_from_grid_thw(grid_thw.to(hidden_states.device))
        x = self.embeddings.rms_norm(self._patch_rows(hidden_states))
        x = x + self._positions(grid_thw, x)
        states = [x] if output_hidden_states else None
        heads = config.num_attention_heads
        head_dim = config.hidden_size // heads
        backend = None
        for layer in self.encoder.layers:
            attention = layer.attention
            normed = layer.rms_norm1(x)
            q, k, v = (
                proj(normed).view(-1, heads, head_dim)
                for proj in (attention.q_proj, attention.k_proj, attention.v_proj)
            )
            backend = backend or resolve_backend(_requested_backend(config), q)
            mixed = packed_attention(q, k, v, cu_seqlens, max_seqlen, lengths, attention.scale, backend)
            x = x + attention.out_proj(mixed.reshape(-1, config.hidden_size))
            x = x + layer.ffn(layer.rms_norm2(x))
            if output_hidden_states:
                states.append(x)
        last = self.rms_norm(x)
        pooled = None
        if config.use_head:
            pooled = torch.cat([self.head(segment[None]) for segment in last.split(lengths)])
        output = BaseModelOutputWithPooling(
            last_hidden_state=last, pooler_output=pooled, hidden_states=tuple(states) if states else None
        )
        return output if return_dict is not False else output.to_tuple()
