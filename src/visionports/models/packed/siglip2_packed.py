"""SigLIP2 naflex vision tower over packed images: one token sequence, attention bounded per image.

Weights and parameter names are those of ``transformers.Siglip2VisionModel``; for each image the output equals
that model run on the image alone (``spatial_shapes = [[h, w]]``, an all-ones attention mask).
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import Siglip2VisionConfig
from transformers.models.siglip2.modeling_siglip2 import (
    Siglip2EncoderLayer,
    Siglip2MultiheadAttentionPoolingHead,
    Siglip2PreTrainedModel,
    Siglip2VisionEmbeddings,
)

from .common import PackedEncoderMixin, PrenormPackedLayer, layer_container, per_size, pool_per_image
from .packing import Segments, segments_from_grid_thw

__all__ = ["Siglip2PackedVisionModel"]


class _PackedEncoderLayer(PrenormPackedLayer, Siglip2EncoderLayer):
    """Upstream's pre-norm block (same parameters) over packed rows ``[N, D]``; attention bounded per image."""

    part_names = ("layer_norm1", "self_attn", "layer_norm2", "mlp")


class Siglip2PackedVisionModel(PackedEncoderMixin, Siglip2PreTrainedModel):
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
        """Learned table resized to each image's (h, w) (once per distinct size), row-major, concatenated."""
        side = self.embeddings.position_embedding_size
        table = self.embeddings.position_embedding.weight.reshape(side, side, -1)

        def resize(h: int, w: int) -> torch.Tensor:
            # upstream's own resize: float32 bilinear with antialias on CPU, cast back to the table's dtype
            shape = torch.tensor([[h, w]], dtype=torch.long)
            return Siglip2VisionEmbeddings.resize_positional_embeddings(table, shape, max_length=h * w)[0]

        sizes = [(h, w) for _, h, w in grid_thw.tolist()]
        return torch.cat(per_size(sizes, resize)).to(dtype)

    def embed_packed(
        self, hidden_states: torch.Tensor, grid_thw: torch.Tensor
    ) -> tuple[torch.Tensor, Segments, tuple[torch.Tensor, ...]]:
        grid_thw = grid_thw.to(device="cpu", dtype=torch.long)  # one host copy; lengths are computed once
        patch_embedding = self.embeddings.patch_embedding
        x = patch_embedding(hidden_states.to(dtype=patch_embedding.weight.dtype))
        x = x + self._position_embeddings(grid_thw, x.dtype)
        return x, segments_from_grid_thw(grid_thw, device=x.device), ()

    def finish_packed(self, x: torch.Tensor, segments: Segments) -> tuple[torch.Tensor, torch.Tensor | None]:
        last_hidden_state = self.post_layernorm(x)
        # the probe attends over one image's rows at a time: no mask needed, nothing crosses images
        pooled = pool_per_image(self.head, last_hidden_state, segments) if self.use_head else None
        return last_hidden_state, pooled
