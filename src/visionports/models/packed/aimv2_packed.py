"""AIMv2 vision encoder over packed images (no padding): ``Aimv2PackedVisionModel``.

Parameter names are those of ``transformers.Aimv2VisionModel`` (its embedding, encoder, final ``rms_norm`` and
attention-pooling head modules are reused); the forward runs every layer once over all images' patches, with
attention bounded per image by ``cu_seqlens``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers import Aimv2VisionConfig
from transformers.models.aimv2.modeling_aimv2 import (
    Aimv2AttentionPoolingHead,
    Aimv2EncoderLayer,
    Aimv2PreTrainedModel,
    Aimv2RMSNorm,
    Aimv2VisionEmbeddings,
    build_2d_sinusoidal_position_embedding,
)

from .common import PackedEncoderMixin, PrenormPackedLayer, layer_container, per_size, pool_per_image
from .packing import Segments, segments_from_grid_thw

__all__ = ["Aimv2PackedVisionModel"]


def _native_positions(h: int, w: int, dim: int, like: torch.Tensor) -> torch.Tensor:
    """Upstream's 2D sin-cos table of an ``h x w`` grid, ``[h*w, dim]``, halves swapped (trained w-first)."""
    table = build_2d_sinusoidal_position_embedding(h, w, dim, device=like.device, dtype=like.dtype)
    half = table.shape[-1] // 2
    return torch.cat([table[:, half:], table[:, :half]], dim=-1)


class _PackedLayer(PrenormPackedLayer, Aimv2EncoderLayer):
    """Upstream's pre-norm block (same parameters) over packed rows ``[N, D]``; attention bounded per image."""

    part_names = ("rms_norm1", "attention", "rms_norm2", "ffn")


class Aimv2PackedVisionModel(PackedEncoderMixin, Aimv2PreTrainedModel):
    """``forward(hidden_states [N, p*p*C], grid_thw [n, 3])`` -> rows ``[N, D]`` (no CLS: ``num_prefix_tokens = 0``)
    and ``pooler_output [n, D]`` when ``config.use_head``. Fixed-size checkpoints accept only ``(1, S, S)`` grids.
    Attention backends and output conventions: ``visionports.models.packed.common``."""

    config_class = Aimv2VisionConfig
    config: Aimv2VisionConfig
    base_model_prefix = (
        "vision_model"  # a two-tower Aimv2Model folder keeps the vision tower under this prefix
    )
    _no_split_modules = ["_PackedLayer", "Aimv2AttentionPoolingHead", "Aimv2VisionEmbeddings"]

    def __init__(self, config: Aimv2VisionConfig):
        super().__init__(config)
        self.embeddings = Aimv2VisionEmbeddings(config)
        self.encoder = layer_container(
            "layers", [_PackedLayer(config) for _ in range(config.num_hidden_layers)]
        )
        self.rms_norm = Aimv2RMSNorm(config.hidden_size, config.rms_norm_eps)
        if config.use_head:
            self.head = Aimv2AttentionPoolingHead(config)
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.embeddings.patch_embed

    def _patch_rows(self, hidden_states: torch.Tensor) -> torch.Tensor:
        conv = self.embeddings.patch_embed
        weight = conv.weight.permute(0, 2, 3, 1).reshape(conv.weight.shape[0], -1)  # (py, px, c) rows
        return F.linear(hidden_states.to(weight.dtype), weight, conv.bias)

    def _positions(self, grid_thw: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """Each image's position rows, concatenated ``[N, D]`` (one table per distinct grid)."""
        sizes = [(h, w) for _, h, w in grid_thw.tolist()]
        if not self.config.is_native:
            return self.embeddings.position_embedding.weight.repeat(len(sizes), 1)
        dim = self.config.hidden_size
        return torch.cat(per_size(sizes, lambda h, w: _native_positions(h, w, dim, like)))

    def _check_fixed_size(self, grid_thw: torch.Tensor) -> None:
        config = self.config
        if config.is_native:
            return
        side = config.image_size // config.patch_size
        for i, (_, h, w) in enumerate(grid_thw.tolist()):
            if (h, w) != (side, side):
                raise ValueError(
                    f"grid_thw[{i}] is {(1, h, w)} but this fixed-size AIMv2 takes only (1, {side}, {side}) "
                    f"({config.image_size}x{config.image_size} images); use a native checkpoint for other sizes"
                )

    def embed_packed(
        self, hidden_states: torch.Tensor, grid_thw: torch.Tensor
    ) -> tuple[torch.Tensor, Segments, tuple[torch.Tensor, ...]]:
        self._check_fixed_size(grid_thw)
        x = self.embeddings.rms_norm(self._patch_rows(hidden_states))
        x = x + self._positions(grid_thw, x)
        return x, segments_from_grid_thw(grid_thw, device=x.device), ()

    def finish_packed(self, x: torch.Tensor, segments: Segments) -> tuple[torch.Tensor, torch.Tensor | None]:
        last = self.rms_norm(x)
        return last, (pool_per_image(self.head, last, segments) if self.config.use_head else None)
