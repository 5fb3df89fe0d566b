"""SigLIP2 naflex vision tower over packed images: one token sequence, attention bounded per image.

Weights and parameter names are those of ``transformers.Siglip2VisionModel``; for each image the output equals
that model run on the image alone (see ``shared/specs/packed_encoders.md`` §3.2).
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import PreTrainedModel, Siglip2VisionConfig
from transformers.modeling_outputs import BaseModelOutputWithPooling
from transformers.models.siglip2.modeling_siglip2 import (
    Siglip2Attention,
    Siglip2EncoderLayer,
    Siglip2MultiheadAttentionPoolingHead,
    Siglip2PreTrainedModel,
    Siglip2VisionEmbeddings,
)

from ...packing import (
    cu_seqlens_from_grid_thw,
    packed_attention,
    resolve_backend,
    segment_lengths,
    validate_packed,
)
from .loading import RefuseMissingWeightsMixin

__all__ = ["Siglip2PackedVisionModel"]

# transformers fills ``_attn_implementation`` with "sdpa" when nothing was asked for; both mean "pick for me".
_AUTO_VALUES = (None, "sdpa", "auto")


class _PackedSelfAttention(Siglip2Attention):
    """Same projections as upstream; attention runs over all rows at once, bounded by ``cu_seqlens``."""

    def forward(  # type: ignore[override]
        self,
        hidden_states: torch.Tensor,
        cu_seqlens: torch.Tensor,
        max_seqlen: int,
        lengths: list[int],
        backend: str,
    ) -> torch.Tensor:
        rows = hidden_states.shape[0]
        q = self.q_proj(hidden_states).view(rows, self.num_heads, self.head_dim)
        k = self.k_proj(hidden_states).view(rows, self.num_heads, self.head_dim)
        v = self.v_proj(hidden_states).view(rows, self.num_heads, self.head_dim)
        attended = packed_attention(q, k, v, cu_seqlens, max_seqlen, lengths, self.scale, backend)
        return self.out_proj(attended.reshape(rows, self.embed_dim))


class _PackedEncoderLayer(Siglip2EncoderLayer):
    """Pre-norm block with upstream's parameter layout, working on ``[N, D]`` packed rows."""

    def __init__(self, config: Siglip2VisionConfig):
        super().__init__(config)
        self.self_attn = _PackedSelfAttention(config)

    def forward(  # type: ignore[override]
        self,
        hidden_states: torch.Tensor,
        cu_seqlens: torch.Tensor,
        max_seqlen: int,
        lengths: list[int],
        backend: str,
    ) -> torch.Tensor:
        hidden_states = hidden_states + self.self_attn(
            self.layer_norm1(hidden_states), cu_seqlens, max_seqlen, lengths, backend
        )
        return hidden_states + self.mlp(self.layer_norm2(hidden_states))


class _PackedEncoder(nn.Module):
    """Holds ``layers`` so the keys read ``encoder.layers.N.*`` as upstream."""

    def __init__(self, config: Siglip2VisionConfig):
        super().__init__()
        self.layers = nn.ModuleList([_PackedEncoderLayer(config) for _ in range(config.num_hidden_layers)])


class Siglip2PackedVisionModel(RefuseMissingWeightsMixin, PreTrainedModel):
    """SigLIP2 naflex vision encoder taking ``hidden_states [N, p*p*C]`` rows and ``grid_thw [n, 3]``."""

    config_class = Siglip2VisionConfig
    config: Siglip2VisionConfig
    base_model_prefix = "vision_model"
    main_input_name = "hidden_states"
    input_modalities = ("image",)
    supports_gradient_checkpointing = False
    _no_split_modules = [
        "Siglip2VisionEmbeddings",
        "_PackedEncoderLayer",
        "Siglip2MultiheadAttentionPoolingHead",
    ]
    _supports_sdpa = True
    _supports_flash_attn = True

    num_prefix_tokens = 0

    def __init__(self, config: Siglip2VisionConfig):
        super().__init__(config)
        self.embeddings = Siglip2VisionEmbeddings(config)
        self.encoder = _PackedEncoder(config)
        self.post_layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.use_head = config.vision_use_head
        if self.use_head:
            self.head = Siglip2MultiheadAttentionPoolingHead(config)
        self.post_init()

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        # Same initialisation as upstream (our attention/layer classes subclass upstream's).
        Siglip2PreTrainedModel._init_weights(self, module)

    def get_input_embeddings(self) -> nn.Module:
        return self.embeddings.patch_embedding

    def _position_embeddings(self, grid_thw: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """Learned table resized to each image's (h, w), flattened row-major and concatenated: ``[N, D]``."""
        side = self.embeddings.position_embedding_size
        table = self.embeddings.position_embedding.weight.reshape(side, side, -1)
        parts = []
        for _, h, w in grid_thw.tolist():
            shape = torch.tensor([[h, w]], dtype=torch.long)
            # upstream's own resize: float32 bilinear with antialias on CPU, cast back to the table's dtype
            resized = Siglip2VisionEmbeddings.resize_positional_embeddings(table, shape, max_length=h * w)
            parts.append(resized[0])
        return torch.cat(parts).to(dtype)

    def _requested_backend(self) -> str | None:
        requested = getattr(self.config, "_attn_implementation", None)
        return None if requested in _AUTO_VALUES else requested

    def forward(
        self,
        hidden_states: torch.Tensor,
        grid_thw: torch.Tensor,
        output_hidden_states: bool = False,
        return_dict: bool = True,
    ) -> BaseModelOutputWithPooling | tuple:
        validate_packed(hidden_states, grid_thw, self.config.patch_size, self.config.num_channels)
        grid_thw = grid_thw.to(device="cpu", dtype=torch.long)  # one host copy; lengths are computed once
        lengths = segment_lengths(grid_thw, self.num_prefix_tokens)
        cu_seqlens, max_seqlen = cu_seqlens_from_grid_thw(grid_thw, self.num_prefix_tokens)

        patch_embedding = self.embeddings.patch_embedding
        x = patch_embedding(hidden_states.to(dtype=patch_embedding.weight.dtype))
        x = x + self._position_embeddings(grid_thw, x.dtype)
        cu_seqlens = cu_seqlens.to(x.device)

        backend = resolve_backend(self._requested_backend(), x)
        all_hidden = [x] if output_hidden_states else None
        for layer in self.encoder.layers:
            x = layer(x, cu_seqlens, max_seqlen, lengths, backend)
            if all_hidden is not None:
                all_hidden.append(x)

        last_hidden_state = self.post_layernorm(x)
        pooler_output = None
        if self.use_head:
            # the probe attends over one image's rows at a time: no mask needed, nothing crosses images
            pooler_output = torch.cat([self.head(rows[None]) for rows in last_hidden_state.split(lengths)])

        hidden_tuple = tuple(all_hidden) if all_hidden is not None else None
        if not return_dict:
            return tuple(v for v in (last_hidden_state, pooler_output, hidden_tuple) if v is not None)
        return BaseModelOutputWithPooling(
            last_hidden_state=last_hidden_state, pooler_output=pooler_output, hidden_states=hidden_tuple
        )
