"""DINOv3 ViT over packed images of different sizes: one pass, no padding, attention bounded per image.

Weights and parameter names are those of ``transformers.DINOv3ViTModel``; a folder saved by that class loads
here unchanged. Input rows are patches only (see ``visionports.packing``); the model inserts each image's CLS
and register tokens, so every image owns ``1 + num_register_tokens + h * w`` output rows
``[CLS, registers, patches row-major]``.

Position encoding: the RoPE table of every image is built from that image's own ``(h, w)``. In ``eval()`` it is
the deterministic table of the standard model. In ``train()`` the ``pos_embed_shift/jitter/rescale``
augmentation is drawn independently for each image (the standard model draws once per batch, and a batch there
is made of same-size images, so one draw per image is the packed counterpart). Drop-path and attention dropout
are not applied: this class is meant for inference and for parity with the standard model in eval mode.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from transformers import DINOv3ViTConfig, PreTrainedModel
from transformers import initialization as init
from transformers.modeling_outputs import BaseModelOutputWithPooling
from transformers.models.dinov3_vit.modeling_dinov3_vit import (
    DINOv3ViTEmbeddings,
    DINOv3ViTLayer,
    DINOv3ViTLayerScale,
    augment_patches_center_coordinates,
    get_patches_center_coordinates,
)

from ...packing import (
    cu_seqlens_from_grid_thw,
    packed_attention,
    resolve_backend,
    segment_lengths,
    validate_packed,
)
from .loading import RefuseMissingWeightsMixin

__all__ = ["Dinov3PackedVisionModel"]


def _half_turn(x: torch.Tensor) -> torch.Tensor:
    """``[a, b] -> [-b, a]`` over the last dim (halves, not interleaved pairs), as DINOv3's RoPE expects."""
    first, second = x.chunk(2, dim=-1)
    return torch.cat((-second, first), dim=-1)


class _PackedEncoder(nn.Module):
    """Holds the standard layers under the standard names (``model.layer.N``)."""

    def __init__(self, config: DINOv3ViTConfig):
        super().__init__()
        self.layer = nn.ModuleList([DINOv3ViTLayer(config) for _ in range(config.num_hidden_layers)])


class Dinov3PackedVisionModel(RefuseMissingWeightsMixin, PreTrainedModel):
    """``DINOv3ViTModel`` taking ``hidden_states [sum h*w, p*p*C]`` + ``grid_thw [n, 3]``."""

    config_class = DINOv3ViTConfig
    config: DINOv3ViTConfig
    base_model_prefix = "model"
    main_input_name = "hidden_states"
    input_modalities = ("image",)
    _no_split_modules = ["DINOv3ViTEmbeddings", "DINOv3ViTLayer"]
    _supports_sdpa = True
    _supports_flash_attn = True

    def __init__(self, config: DINOv3ViTConfig):
        super().__init__(config)
        self.embeddings = DINOv3ViTEmbeddings(config)
        self.model = _PackedEncoder(config)
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.num_prefix_tokens = 1 + config.num_register_tokens
        self.num_heads = config.num_attention_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.post_init()

    @torch.no_grad()
    def _init_weights(self, module) -> None:
        std = self.config.initializer_range
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            init.trunc_normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            init.ones_(module.weight)
            init.zeros_(module.bias)
        elif isinstance(module, DINOv3ViTEmbeddings):
            init.trunc_normal_(module.cls_token, mean=0.0, std=std)
            if module.register_tokens.numel():
                init.trunc_normal_(module.register_tokens, mean=0.0, std=std)
            init.zeros_(module.mask_token)
        elif isinstance(module, DINOv3ViTLayerScale):
            init.constant_(module.lambda1, self.config.layerscale_value)

    def get_input_embeddings(self) -> nn.Module:
        return self.embeddings.patch_embeddings

    # ----------------------------------------------------------------- embeddings and positions

    def _patch_size(self) -> int:
        p = self.config.patch_size
        if isinstance(p, (tuple, list)):
            if p[0] != p[1]:
                raise ValueError(f"packed DINOv3 needs square patches, got patch_size={p}")
            p = p[0]
        return int(p)

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
        """Packed ``cos, sin [T, head_dim]``: per-image tables, prefix rows cos=1 / sin=0."""
        inv_freq = 1.0 / self.config.rope_theta ** torch.arange(
            0, 1, 4 / self.head_dim, dtype=torch.float32, device=device
        )
        prefix_cos = torch.ones(self.num_prefix_tokens, self.head_dim, dtype=torch.float32, device=device)
        prefix_sin = torch.zeros_like(prefix_cos)
        cos_parts, sin_parts = [], []
        for _, h, w in grids:
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
            angles = (2 * math.pi * coords[:, :, None] * inv_freq[None, None, :]).flatten(1).repeat(1, 2)
            cos_parts.extend((prefix_cos, angles.cos()))
            sin_parts.extend((prefix_sin, angles.sin()))
        # The standard model hands cos/sin to the layers in the activations' dtype; do the same for parity.
        return torch.cat(cos_parts).to(dtype), torch.cat(sin_parts).to(dtype)

    # ----------------------------------------------------------------- layers

    def _attention(
        self,
        layer: DINOv3ViTLayer,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        cu_seqlens: torch.Tensor,
        max_seqlen: int,
        lengths: list[int],
        requested: str | None,
    ) -> torch.Tensor:
        attn = layer.attention
        shape = (x.shape[0], self.num_heads, self.head_dim)
        q = attn.q_proj(x).view(shape)
        k = attn.k_proj(x).view(shape)
        v = attn.v_proj(x).view(shape)
        cos, sin = cos[:, None, :], sin[:, None, :]
        q = q * cos + _half_turn(q) * sin
        k = k * cos + _half_turn(k) * sin
        backend = resolve_backend(requested, q)
        out = packed_attention(q, k, v, cu_seqlens, max_seqlen, lengths, attn.scaling, backend)
        return attn.o_proj(out.reshape(x.shape[0], -1))

    def _requested_backend(self) -> str | None:
        impl = getattr(self.config, "_attn_implementation", None)
        # transformers fills in "sdpa" by default: treat it like no request (flash when it can run, else
        # exact per-segment SDPA). A forced flash request must be able to run; "eager" is honoured.
        return None if impl in (None, "sdpa") else impl

    def forward(
        self,
        hidden_states: torch.Tensor,
        grid_thw: torch.Tensor,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> BaseModelOutputWithPooling | tuple:
        patch_size = self._patch_size()
        validate_packed(hidden_states, grid_thw, patch_size, self.config.num_channels)
        output_hidden_states = bool(output_hidden_states)
        return_dict = True if return_dict is None else return_dict

        grids = [tuple(int(v) for v in row) for row in grid_thw.tolist()]
        x = self._embed(hidden_states, grids)
        cos, sin = self._rope_tables(grids, x.device, x.dtype)

        # Segment bookkeeping once per forward (no per-layer host syncs).
        cu_seqlens, max_seqlen = cu_seqlens_from_grid_thw(grid_thw.to(x.device), self.num_prefix_tokens)
        lengths = segment_lengths(grid_thw, self.num_prefix_tokens)
        requested = self._requested_backend()

        all_hidden = (x,) if output_hidden_states else None
        for layer in self.model.layer:
            attn_out = self._attention(
                layer, layer.norm1(x), cos, sin, cu_seqlens, max_seqlen, lengths, requested
            )
            x = x + layer.layer_scale1(attn_out)
            x = x + layer.layer_scale2(layer.mlp(layer.norm2(x)))
            if output_hidden_states:
                all_hidden = all_hidden + (x,)

        sequence = self.norm(x)
        starts = cu_seqlens[:-1].long()
        pooled = sequence.index_select(0, starts)
        if not return_dict:
            return tuple(v for v in (sequence, pooled, all_hidden) if v is not None)
        return BaseModelOutputWithPooling(
            last_hidden_state=sequence, pooler_output=pooled, hidden_states=all_hidden
        )
