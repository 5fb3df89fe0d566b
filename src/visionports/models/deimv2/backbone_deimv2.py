"""DEIMv2 backbones: HGNetV2 (reused from transformers) and a ViT with the Spatial Tuning Adapter."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from transformers import HGNetV2Backbone, HGNetV2Config
from transformers.modeling_layers import GradientCheckpointingLayer

from .configuration_deimv2 import Deimv2Config
from .layers_deimv2 import REDUCED_PRECISION

Rope = tuple[torch.Tensor, torch.Tensor]  # (sin, cos) tables of the patch tokens, [N_patches, head_dim] each
WithWeights = tuple[torch.Tensor, torch.Tensor | None]  # output and attention weights (when requested)


def hgnet_backbone_config(config: Deimv2Config) -> HGNetV2Config:
    """The transformers HGNetV2 configuration equivalent to the original stage table."""
    stages = config.hgnet_stages
    column = list(zip(*stages, strict=True))
    return HGNetV2Config(
        stem_channels=list(config.hgnet_stem_channels),
        stage_in_channels=list(column[0]),
        stage_mid_channels=list(column[1]),
        stage_out_channels=list(column[2]),
        stage_num_blocks=list(column[3]),
        stage_downsample=[bool(v) for v in column[4]],
        stage_light_block=[bool(v) for v in column[5]],
        stage_kernel_size=list(column[6]),
        stage_numb_of_layers=list(column[7]),
        use_learnable_affine_block=config.hgnet_use_lab,
        hidden_act=config.hgnet_activation,
        depths=list(column[3]),
        hidden_sizes=list(column[2]),
        embedding_size=config.hgnet_stem_channels[-1],
        out_indices=[i + 1 for i in config.hgnet_out_indices],  # index 0 is the stem there
    )


def rope_periods(head_dim: int, base: float) -> torch.Tensor:
    """RoPE periods ``base ** (2 i / (head_dim / 2))`` for ``i < head_dim / 4``, float32 (as the original)."""
    exponents = 2 * torch.arange(head_dim // 4, dtype=torch.float32) / (head_dim // 2)
    return base**exponents


class Deimv2RopeEmbedding(nn.Module):
    """2D rotary position embedding of the DINOv3-style ViTs (coordinates normalised per axis to (-1, 1))."""

    def __init__(self, head_dim: int, base: float):
        super().__init__()
        self.base = base
        self.register_buffer("periods", rope_periods(head_dim, base), persistent=True)

    def _periods(self) -> torch.Tensor:
        """The periods, recomputed in float32 when the model was cast to float16/bfloat16: half-precision angles
        are off by up to 0.03 rad; the rotation then runs in float32, as for float32 models."""
        if self.periods.dtype in REDUCED_PRECISION:
            return rope_periods(self.periods.shape[0] * 4, self.base).to(self.periods.device)
        return self.periods

    def forward(self, height: int, width: int) -> Rope:
        device = self.periods.device
        # Coordinates are always float32 (as the original); the angles take the periods' dtype.
        coords_h = torch.arange(0.5, height, device=device, dtype=torch.float32) / height
        coords_w = torch.arange(0.5, width, device=device, dtype=torch.float32) / width
        coords = torch.stack(torch.meshgrid(coords_h, coords_w, indexing="ij"), dim=-1).flatten(0, 1)
        coords = 2.0 * coords - 1.0
        angles = 2 * math.pi * coords[:, :, None] / self._periods()[None, None, :]
        angles = angles.flatten(1, 2).tile(2)
        return torch.sin(angles), torch.cos(angles)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    first, second = x.chunk(2, dim=-1)
    return torch.cat([-second, first], dim=-1)


def apply_rope(x: torch.Tensor, sin: torch.Tensor, cos: torch.Tensor, num_prefix: int) -> torch.Tensor:
    """Rotate the patch tokens of ``x`` [B, heads, N, d] (the first ``num_prefix`` tokens are left alone)."""
    dtype = x.dtype
    x = x.to(sin.dtype)
    rotated = x[:, :, num_prefix:] * cos + _rotate_half(x[:, :, num_prefix:]) * sin
    return torch.cat([x[:, :, :num_prefix], rotated], dim=2).to(dtype)


class Deimv2ViTAttention(nn.Module):
    """ViT self-attention with 2D RoPE.

    Uses ``F.scaled_dot_product_attention``, the original's own kernel (whatever ``attn_implementation`` says,
    so that results equal the original's bit for bit); an explicit softmax only when the weights are requested.
    """

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(
        self, x: torch.Tensor, rope: Rope, num_prefix: int, output_attentions: bool = False
    ) -> WithWeights:
        batch, tokens, dim = x.shape
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, dim // self.num_heads)
        q, k, v = (t.transpose(1, 2) for t in qkv.unbind(2))
        sin, cos = rope
        q = apply_rope(q, sin, cos, num_prefix)
        k = apply_rope(k, sin, cos, num_prefix)
        weights = None
        if output_attentions:
            weights = F.softmax((q @ k.transpose(-2, -1)) * q.shape[-1] ** -0.5, dim=-1)
            out = weights @ v
        else:
            out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(batch, tokens, dim)), weights


class Deimv2LayerScale(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), 1e-5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class Deimv2ViTMlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Deimv2ViTSwiGLU(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.w1 = nn.Linear(dim, hidden)
        self.w2 = nn.Linear(dim, hidden)
        self.w3 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w3(F.silu(self.w1(x)) * self.w2(x))


class Deimv2ViTLayer(GradientCheckpointingLayer):
    def __init__(self, config: Deimv2Config):
        super().__init__()
        dim = config.vit_hidden_size
        self.norm1 = nn.LayerNorm(dim, eps=config.vit_layer_norm_eps)
        self.attention = Deimv2ViTAttention(dim, config.vit_num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=config.vit_layer_norm_eps)
        ffn = Deimv2ViTSwiGLU if config.vit_ffn_type == "swiglu" else Deimv2ViTMlp
        self.mlp = ffn(dim, config.vit_ffn_hidden_size)
        self.layer_scale1 = Deimv2LayerScale(dim) if config.vit_layer_scale else nn.Identity()
        self.layer_scale2 = Deimv2LayerScale(dim) if config.vit_layer_scale else nn.Identity()

    def forward(
        self, x: torch.Tensor, rope: Rope, num_prefix: int, output_attentions: bool = False
    ) -> WithWeights:
        update, weights = self.attention(self.norm1(x), rope, num_prefix, output_attentions)
        x = x + self.layer_scale1(update)
        return x + self.layer_scale2(self.mlp(self.norm2(x))), weights


class Deimv2ViT(nn.Module):
    """Plain ViT with 2D RoPE: the distilled ViT-Tiny(+) of DEIMv2 S/M or DINOv3 ViT-S(+) of L/X.

    Returns, for each of ``config.vit_out_indices``, the patch tokens [B, N, D] and the class token [B, D]
    (after the final LayerNorm when ``config.vit_final_norm``), and each layer's attention weights
    ``[B, heads, N_all, N_all]`` (with ``output_attentions``; otherwise an empty list).
    """

    def __init__(self, config: Deimv2Config):
        super().__init__()
        dim = config.vit_hidden_size
        self.patch_size = config.vit_patch_size
        self.out_indices = list(config.vit_out_indices)
        self.patch_embed = nn.Conv2d(3, dim, kernel_size=self.patch_size, stride=self.patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.num_register_tokens = config.vit_num_register_tokens
        if self.num_register_tokens:
            self.register_tokens = nn.Parameter(torch.zeros(1, self.num_register_tokens, dim))
        self.rope = Deimv2RopeEmbedding(dim // config.vit_num_heads, config.vit_rope_base)
        self.layers = nn.ModuleList(Deimv2ViTLayer(config) for _ in range(config.vit_depth))
        self.norm = nn.LayerNorm(dim, eps=config.vit_layer_norm_eps) if config.vit_final_norm else None

    def forward(
        self, pixel_values: torch.Tensor, output_attentions: bool = False
    ) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], list[torch.Tensor]]:
        batch = pixel_values.shape[0]
        patches = self.patch_embed(pixel_values)
        grid_h, grid_w = patches.shape[-2:]
        tokens = [self.cls_token.expand(batch, -1, -1)]
        if self.num_register_tokens:
            tokens.append(self.register_tokens.expand(batch, -1, -1))
        tokens.append(patches.flatten(2).transpose(1, 2))
        x = torch.cat(tokens, dim=1)
        num_prefix = 1 + self.num_register_tokens
        rope = self.rope(grid_h, grid_w)
        outputs, attentions = [], []
        for index, layer in enumerate(self.layers):
            x, weights = layer(x, rope, num_prefix, output_attentions)
            if output_attentions:
                attentions.append(weights)
            if index in self.out_indices:
                out = self.norm(x) if self.norm is not None else x
                outputs.append((out[:, num_prefix:], out[:, 0]))
        return outputs, attentions


class Deimv2SpatialTuningAdapter(nn.Module):
    """Small CNN giving detail features at strides 8, 16 and 32 (``SpatialPriorModulev2`` of the original)."""

    def __init__(self, inplanes: int):
        super().__init__()
        self.stem_conv = nn.Conv2d(3, inplanes, 3, stride=2, padding=1, bias=False)
        self.stem_norm = nn.BatchNorm2d(inplanes)
        self.stem_pool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.conv2 = nn.Conv2d(inplanes, 2 * inplanes, 3, stride=2, padding=1, bias=False)
        self.norm2 = nn.BatchNorm2d(2 * inplanes)
        self.conv3 = nn.Conv2d(2 * inplanes, 4 * inplanes, 3, stride=2, padding=1, bias=False)
        self.norm3 = nn.BatchNorm2d(4 * inplanes)
        self.conv4 = nn.Conv2d(4 * inplanes, 4 * inplanes, 3, stride=2, padding=1, bias=False)
        self.norm4 = nn.BatchNorm2d(4 * inplanes)

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        c1 = self.stem_pool(F.gelu(self.stem_norm(self.stem_conv(pixel_values))))
        c2 = self.norm2(self.conv2(c1))
        c3 = self.norm3(self.conv3(F.gelu(c2)))
        c4 = self.norm4(self.conv4(F.gelu(c3)))
        return c2, c3, c4


class Deimv2ConvNorm(nn.Module):
    """Convolution without bias followed by BatchNorm and an optional activation."""

    def __init__(
        self, in_ch: int, out_ch: int, kernel: int, stride: int = 1, groups: int = 1, act: str | None = None
    ):
        super().__init__()
        self.conv = nn.Conv2d(
            in_ch, out_ch, kernel, stride, padding=(kernel - 1) // 2, groups=groups, bias=False
        )
        self.norm = nn.BatchNorm2d(out_ch)
        self.act = _activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(x)))


def _activation(name: str | None) -> nn.Module:
    if name is None:
        return nn.Identity()
    from transformers.activations import ACT2FN

    return ACT2FN[name]


class Deimv2ViTAdapterBackbone(nn.Module):
    """ViT semantic tokens resized to strides 8/16/32, fused with the adapter's detail features."""

    def __init__(self, config: Deimv2Config):
        super().__init__()
        self.vit = Deimv2ViT(config)
        self.sta = Deimv2SpatialTuningAdapter(config.sta_inplanes)
        dim, inplanes, hidden = config.vit_hidden_size, config.sta_inplanes, config.backbone_hidden_dim
        in_channels = [dim + 2 * inplanes, dim + 4 * inplanes, dim + 4 * inplanes]
        self.projections = nn.ModuleList(Deimv2ConvNorm(c, hidden, 1) for c in in_channels)

    def forward(
        self, pixel_values: torch.Tensor, output_attentions: bool = False
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Projected maps (strides 8/16/32) and the ViT layers' attention weights (with ``output_attentions``)."""
        batch, _, height, width = pixel_values.shape
        grid_h, grid_w = height // 16, width // 16
        layers, attentions = self.vit(pixel_values, output_attentions)
        if len(layers) == 1:
            layers = layers * 3
        semantic = []
        top = len(layers) - 2
        for index, (tokens, _) in enumerate(layers):
            feat = tokens.transpose(1, 2).reshape(batch, -1, grid_h, grid_w)
            size = [int(grid_h * 2 ** (top - index)), int(grid_w * 2 ** (top - index))]
            semantic.append(F.interpolate(feat, size=size, mode="bilinear", align_corners=False))
        details = self.sta(pixel_values)
        maps = [
            proj(torch.cat([s, d], dim=1))
            for proj, s, d in zip(self.projections, semantic, details, strict=True)
        ]
        return maps, attentions


class Deimv2HGNetBackbone(nn.Module):
    """transformers' HGNetV2 returning the feature maps DEIMv2 uses."""

    def __init__(self, config: Deimv2Config):
        super().__init__()
        self.hgnet = HGNetV2Backbone(hgnet_backbone_config(config))

    def forward(
        self, pixel_values: torch.Tensor, output_attentions: bool = False
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Feature maps; HGNetV2 has no attention layers."""
        return list(self.hgnet(pixel_values).feature_maps), []


def build_backbone(config: Deimv2Config) -> nn.Module:
    if config.backbone_type == "hgnetv2":
        return Deimv2HGNetBackbone(config)
    return Deimv2ViTAdapterBackbone(config)
