"""SigLIP2 naflex vision tower over packed images: one token sequence, attention bounded per image.

Weights and parameter names are those of ``transformers.Siglip2VisionModel``; for each image the output equals
that model run on the image alone (see ``shared/specs/packed_encoders.md`` §3.2).
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import Siglip2VisionConfig
from transformers.modeling_outputs import BaseModelOutputWithPooling
from transformers.models.siglip2.modeling_siglip2 import (
    Siglip2EncoderLayer,
    Siglip2MultiheadAttentionPoolingHead,
    Siglip2PreTrainedModel,
    Siglip2VisionEmbeddings,
)

from .common import PackedEncoderMixin, layer_container, prenorm_block
from .loading import RefuseMissingWeightsMixin
from .packing import Segments, segments_from_grid_thw, validate_packed

__all__ = ["Siglip2PackedVisionModel"]


class _PackedEncoderLayer(Siglip2EncoderLayer):
    """Upstream's pre-norm block (same parameters) over packed rows ``[N, D]``; attention bounded per image."""

    def forward(  # type: ignore[override]
        self, hidden_states: torch.Tensor, segments: Segments, backend: str, need_weights: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        return prenorm_block(
            hidden_states,
            segments,
            backend,
            need_weights,
            (self.layer_norm1, self.self_attn, self.layer_norm2, self.mlp),
        )


class Siglip2PackedVisionModel(RefuseMissingWeightsMixin, PackedEncoderMixin, Siglip2PreTrainedModel):
    """SigLIP2 naflex vision encoder taking ``hidden_states [N, p*p*C]`` rows and ``grid_thw [n, 3]``.

    Attention backends and output conventions: ``visionports.models.packed.common``. Unlike upstream SigLIP2
    (no flash path at all), flash varlen is available here: it needs no padding mask.
    """

    config_class = Siglip2VisionConfig
    config: Siglip2VisionConfig
    base_model_prefix = "vision_model"
    _no_split_modules = [
        "Siglip2VisionEmbeddings",
        "_PackedEncoderLayer",
        "Siglip2MultiheadAttentionPoolingHead",
    ]

    def __init__(self, config: Siglip2VisionConfig):
        super().__init__(config)
        self.embeddings = Siglip2VisionEmbeddings(config)
        self.encoder = layer_container(
            "layers", [_PackedEncoderLayer(config) for _ in range(config.num_hidden_layers)]
        )
        self.post_layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.use_head = config.vision_use_head
        if self.use_head:
            self.head = Siglip2MultiheadAttentionPoolingHead(config)
        self.post_init()

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

    def forward(
        self,
        hidden_states: torch.Tensor,
        grid_thw: torch.Tensor,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ) -> BaseModelOutputWithPooling | tuple:
        validate_packed(hidden_states, grid_thw, self.config.patch_size, self.config.num_channels)
        want_attentions, want_hidden, as_dict = self.output_flags(
            output_attentions, output_hidden_states, return_dict
        )
        grid_thw = grid_thw.to(device="cpu", dtype=torch.long)  # one host copy; lengths are computed once

        patch_embedding = self.embeddings.patch_embedding
        x = patch_embedding(hidden_states.to(dtype=patch_embedding.weight.dtype))
        x = x + self._position_embeddings(grid_thw, x.dtype)
        segments = segments_from_grid_thw(grid_thw, device=x.device)
        backend = self.attention_backend(x)
        x, hidden, attentions = self.run_layers(self.encoder.layers, x, segments, backend, want_attentions,
                                                want_hidden)  # fmt: skip

        last_hidden_state = self.post_layernorm(x)
        pooler_output = None
        if self.use_head:
            # the probe attends over one image's rows at a time: no mask needed, nothing crosses images
            pooler_output = torch.cat(
                [self.head(rows[None]) for rows in last_hidden_state.split(segments.lengths)]
            )
        output = BaseModelOutputWithPooling(
            last_hidden_state=last_hidden_state,
            pooler_output=pooler_output,
            hidden_states=hidden,
            attentions=attentions,
        )
        return output if as_dict else output.to_tuple()
