"""DINOv3 ViT over packed images of different sizes: one pass, no padding, attention bounded per image.

Weights and parameter names are those of ``transformers.DINOv3ViTModel``; a folder saved by that class loads
here unchanged. Input rows are patches only (see ``visionports.models.packed.packing``); the model inserts each image's CLS
and register tokens, so every image owns ``1 + num_register_tokens + h * w`` output rows
``[CLS, registers, patches row-major]``.

Position encoding: the RoPE table of every image is built from that image's own ``(h, w)``. In ``eval()`` it is
the deterministic table of the standard model. In ``train()`` the ``pos_embed_shift/jitter/rescale``
augmentation is drawn independently for each image (the standard model draws once per batch, and a batch there
is made of same-size images, so one draw per image is the packed counterpart). Likewise drop-path
(``drop_path_rate``) drops a whole image's residual branch, one draw per image and layer, as the standard model
drops one sample of a batch. Attention backends and output conventions: ``visionports.models.packed.common``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from transformers import DINOv3ViTConfig
from transformers.models.dinov3_vit.modeling_dinov3_vit import (
    DINOv3ViTEmbeddings,
    DINOv3ViTLayer,
    DINOv3ViTPreTrainedModel,
    augment_patches_center_coordinates,
    get_patches_center_coordinates,
)

from .common import PackedEncoderMixin, attention_dropout, layer_container, per_size, project_qkv
from .packing import Segments, packed_attention, segments_from_grid_thw

__all__ = ["Dinov3PackedVisionModel"]


def _half_turn(x: torch.Tensor) -> torch.Tensor:
    """``[a, b] -> [-b, a]`` over the last dim (halves, not interleaved pairs), as DINOv3's RoPE expects."""
    first, second = x.chunk(2, dim=-1)
    return torch.cat((-second, first), dim=-1)


def _drop_images(branch: torch.Tensor, lengths: list[int], rate: float, training: bool) -> torch.Tensor:
    """Stochastic depth per image of the pack: each image's branch is kept (scaled by 1/keep) or zeroed."""
    if rate == 0.0 or not training:
        return branch
    keep = 1.0 - rate
    draws = torch.floor(torch.rand(len(lengths), dtype=branch.dtype, device=branch.device) + keep)
    mask = draws.repeat_interleave(torch.tensor(lengths, device=branch.device))[:, None]
    return branch.div(keep) * mask


class _PackedLayer(DINOv3ViTLayer):
    """Upstream's block (same parameters, layer scales, drop-path rate) over packed rows; RoPE on patch rows."""

    def forward(  # type: ignore[override]
        self,
        hidden_states: torch.Tensor,
        segments: Segments,
        backend: str,
        need_weights: bool,
        cos: torch.Tensor,
        sin: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        attention = self.attention
        q, k, v = project_qkv(attention, self.norm1(hidden_states))
        q = q * cos + _half_turn(q) * sin
        k = k * cos + _half_turn(k) * sin
        mixed, weights = packed_attention(q, k, v, segments, attention.scaling, backend,
                                          attention_dropout(attention), need_weights)  # fmt: skip
        rate = self.drop_path.drop_prob if hasattr(self.drop_path, "drop_prob") else 0.0
        branch = self.layer_scale1(attention.o_proj(mixed.flatten(1)))
        hidden_states = hidden_states + _drop_images(branch, segments.lengths, rate, self.training)
        branch = self.layer_scale2(self.mlp(self.norm2(hidden_states)))
        hidden_states = hidden_states + _drop_images(branch, segments.lengths, rate, self.training)
        return hidden_states, weights


class Dinov3PackedVisionModel(PackedEncoderMixin, DINOv3ViTPreTrainedModel):
    """``DINOv3ViTModel`` taking ``hidden_states [sum h*w, p*p*C]`` + ``grid_thw [n, 3]``."""

    config_class = DINOv3ViTConfig
    config: DINOv3ViTConfig
    # upstream's prefix: transformers' "dinov3_vit" key renaming (saved ``layer.N`` <-> ``model.layer.N``) needs it
    base_model_prefix = "model"
    layers_path = "model.layer"
    _no_split_modules = ["DINOv3ViTEmbeddings", "_PackedLayer"]

    def __init__(self, config: DINOv3ViTConfig):
        super().__init__(config)
        self.embeddings = DINOv3ViTEmbeddings(config)
        self.model = layer_container("layer", [_PackedLayer(config) for _ in range(config.num_hidden_layers)])
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.num_prefix_tokens = 1 + config.num_register_tokens
        self.num_heads = config.num_attention_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.embeddings.patch_embeddings

    # ----------------------------------------------------------------- embeddings and positions

    def _embed(self, rows: torch.Tensor, grids: list[tuple[int, int, int]]) -> torch.Tensor:
        """Patch rows ``(py, px, c)`` -> tokens, with CLS and registers put in front of each image's patches."""
        conv = self.embeddings.patch_embeddings
        dim = conv.weight.shape[0]
        # Conv2d weight [D, C, p, p] acting on a (py, px, c) row == Linear with weight [D, p, p, C] flattened.
        weight = conv.weight.permute(0, 2, 3, 1).reshape(dim, -1)
        patches = F.linear(rows.to(weight.dtype), weight, conv.bias)
        prefix = torch.cat((self.embeddings.cls_token[0], self.embeddings.register_tokens[0]), dim=0)
        prefix = prefix.to(patches.dtype)
        pieces = []
        for chunk in patches.split([t * h * w for t, h, w in grids]):
            pieces.extend((prefix, chunk))
        return torch.cat(pieces)

    def _rope_tables(
        self, grids: list[tuple[int, int, int]], device: torch.device, dtype: torch.dtype
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Packed ``cos, sin [T, head_dim]``: per-image tables (in eval one per distinct size), prefix rows
        cos=1 / sin=0."""
        inv_freq = 1.0 / self.config.rope_theta ** torch.arange(
            0, 1, 4 / self.head_dim, dtype=torch.float32, device=device
        )
        prefix = torch.zeros(self.num_prefix_tokens, self.head_dim, dtype=torch.float32, device=device)

        def angles(h: int, w: int) -> torch.Tensor:
            coords = get_patches_center_coordinates(
                h, w, dtype=torch.float32, device=device
            )  # [h*w, 2] (y, x)
            if self.training:
                coords = augment_patches_center_coordinates(
                    coords,
                    shift=self.config.pos_embed_shift,
                    jitter=self.config.pos_embed_jitter,
                    rescale=self.config.pos_embed_rescale,
                )
            # [h*w, 2, head_dim/4] -> y angles then x angles -> repeated twice -> [h*w, head_dim]
            turns = (2 * math.pi * coords[:, :, None] * inv_freq[None, None, :]).flatten(1).repeat(1, 2)
            return torch.cat((prefix, turns))  # angle 0 on the prefix rows: cos 1, sin 0

        sizes = [(h, w) for _, h, w in grids]
        # training draws the augmentation per image; eval tables depend on the size only
        parts = [angles(h, w) for h, w in sizes] if self.training else per_size(sizes, angles)
        packed = torch.cat(parts)
        # The standard model hands cos/sin to the layers in the activations' dtype; do the same for parity.
        return packed.cos().to(dtype), packed.sin().to(dtype)

    def embed_packed(
        self, hidden_states: torch.Tensor, grid_thw: torch.Tensor
    ) -> tuple[torch.Tensor, Segments, tuple[torch.Tensor, ...]]:
        """Tokens with each image's prefix rows, and the RoPE ``cos, sin [T, 1, head_dim]`` for the layers."""
        grids = [tuple(int(v) for v in row) for row in grid_thw.tolist()]
        x = self._embed(hidden_states, grids)
        cos, sin = self._rope_tables(grids, x.device, x.dtype)
        segments = segments_from_grid_thw(grid_thw, self.num_prefix_tokens, device=x.device)
        return x, segments, (cos[:, None, :], sin[:, None, :])

    def finish_packed(self, x: torch.Tensor, segments: Segments) -> tuple[torch.Tensor, torch.Tensor | None]:
        sequence = self.norm(x)
        return sequence, sequence.index_select(0, segments.cu_seqlens[:-1].long())  # each image's CLS row
