"""DEIMv2 encoders: the LiteEncoder (Atto/Femto/Pico) and the HybridEncoder (AIFI + FPN/PAN, N..X)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers.modeling_layers import GradientCheckpointingLayer

from .backbone_deimv2 import Deimv2ConvNorm, _activation
from .configuration_deimv2 import Deimv2Config
from .layers_deimv2 import Deimv2SelfAttention


class Deimv2RepVggBlock(nn.Module):
    """Parallel 3x3 and 1x1 conv-norm branches, summed, then activated.

    Deploy mode (``deploy_deimv2.merge_repvgg``) replaces both branches by one biased 3x3 conv, ``fused``.
    """

    def __init__(self, channels: int, act: str):
        super().__init__()
        self.conv1 = Deimv2ConvNorm(channels, channels, 3)
        self.conv2 = Deimv2ConvNorm(channels, channels, 1)
        self.act = _activation(act)
        self.fused: nn.Conv2d | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fused is not None:
            return self.act(self.fused(x))
        return self.act(self.conv1(x) + self.conv2(x))


class Deimv2CSPLayer(nn.Module):
    """CSP layer: one 1x1 conv split in two halves, RepVGG blocks on one, summed with the other."""

    def __init__(self, in_ch: int, out_ch: int, num_blocks: int, act: str):
        super().__init__()
        self.conv1 = Deimv2ConvNorm(in_ch, 2 * out_ch, 1, act=act)
        self.bottlenecks = nn.Sequential(*(Deimv2RepVggBlock(out_ch, act) for _ in range(num_blocks)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut, main = self.conv1(x).chunk(2, dim=1)
        return shortcut + self.bottlenecks(main)


class Deimv2CSPBranch(nn.Sequential):
    """A CSP layer, followed by a 3x3 conv-norm in the ``elan4`` block."""

    def __init__(self, in_ch: int, out_ch: int, num_blocks: int, act: str, trailing_conv: bool):
        layers: list[nn.Module] = [Deimv2CSPLayer(in_ch, out_ch, num_blocks, act)]
        if trailing_conv:
            layers.append(Deimv2ConvNorm(out_ch, out_ch, 3, act=act))
        super().__init__(*layers)


class Deimv2ELANBlock(nn.Module):
    """RepNCSPELAN4 (``elan4``) / RepNCSPELAN5 (``elan5``) fusion block."""

    def __init__(
        self, in_ch: int, out_ch: int, split_ch: int, branch_ch: int, num_blocks: int, act: str, kind: str
    ):
        super().__init__()
        self.half = split_ch // 2
        trailing = kind == "elan4"
        self.cv1 = Deimv2ConvNorm(in_ch, split_ch, 1, act=act)
        self.cv2 = Deimv2CSPBranch(self.half, branch_ch, num_blocks, act, trailing)
        self.cv3 = Deimv2CSPBranch(branch_ch, branch_ch, num_blocks, act, trailing)
        self.cv4 = Deimv2ConvNorm(split_ch + 2 * branch_ch, out_ch, 1, act=act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = list(self.cv1(x).split((self.half, self.half), dim=1))
        parts.append(self.cv2(parts[-1]))
        parts.append(self.cv3(parts[-1]))
        return self.cv4(torch.cat(parts, dim=1))


def _fusion_block(config: Deimv2Config, in_ch: int) -> Deimv2ELANBlock:
    hidden = config.encoder_hidden_dim
    return Deimv2ELANBlock(
        in_ch,
        hidden,
        2 * hidden,
        config.encoder_csp_channels,
        config.encoder_csp_blocks,
        config.encoder_activation,
        config.encoder_block,
    )


class Deimv2LiteEncoder(nn.Module):
    """Two levels from one backbone map: stride 16 and an average-pooled stride 32 with global context."""

    def __init__(self, config: Deimv2Config):
        super().__init__()
        hidden, act = config.encoder_hidden_dim, config.encoder_activation
        self.input_proj = nn.ModuleList(Deimv2ConvNorm(c, hidden, 1) for c in config.encoder_in_channels)
        self.downsample1 = Deimv2PoolDownsample(hidden, act)
        self.downsample2 = Deimv2PoolDownsample(hidden, act)
        self.gap_fusion = Deimv2ConvNorm(hidden, hidden, 1, act=act)
        self.fpn_block = _fusion_block(config, hidden)
        self.pan_block = _fusion_block(config, hidden)

    def forward(
        self, features: list[torch.Tensor], output_attentions: bool = False
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Two maps (strides 16 and 32); the lite encoder has no attention layers."""
        projected = [proj(feat) for proj, feat in zip(self.input_proj, features, strict=True)]
        coarse = self.downsample1(projected[-1])
        coarse = self.gap_fusion(coarse + F.adaptive_avg_pool2d(coarse, 1))
        fine = self.fpn_block(projected[0] + F.interpolate(coarse, scale_factor=2.0, mode="nearest"))
        coarse = self.pan_block(coarse + self.downsample2(fine))
        return [fine, coarse], []


class Deimv2PoolDownsample(nn.Module):
    """3x3/2 average pool, then 1x1 conv-norm-activation."""

    def __init__(self, channels: int, act: str):
        super().__init__()
        self.pool = nn.AvgPool2d(kernel_size=3, stride=2, padding=1)
        self.proj = Deimv2ConvNorm(channels, channels, 1, act=act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.pool(x))


def sincos_position_embedding(height: int, width: int, dim: int, temperature: float) -> torch.Tensor:
    """Fixed 2D sin-cos embedding [1, H*W, dim] (float32), in the original's (width-major) grid order."""
    grid_w, grid_h = torch.meshgrid(
        torch.arange(int(width), dtype=torch.float32),
        torch.arange(int(height), dtype=torch.float32),
        indexing="ij",
    )
    quarter = dim // 4
    omega = 1.0 / (temperature ** (torch.arange(quarter, dtype=torch.float32) / quarter))
    out_w = grid_w.flatten()[..., None] @ omega[None]
    out_h = grid_h.flatten()[..., None] @ omega[None]
    return torch.cat([out_w.sin(), out_w.cos(), out_h.sin(), out_h.cos()], dim=1)[None]


class Deimv2AIFILayer(GradientCheckpointingLayer):
    """Post-norm transformer encoder layer applied to the coarsest level (attention-based intra-scale fusion)."""

    def __init__(self, config: Deimv2Config):
        super().__init__()
        dim = config.encoder_hidden_dim
        self.self_attn = Deimv2SelfAttention(dim, config.encoder_attention_heads, config)
        self.norm1 = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, config.encoder_ffn_dim)
        self.act = _activation(config.encoder_ffn_activation)
        self.fc2 = nn.Linear(config.encoder_ffn_dim, dim)
        self.norm2 = nn.LayerNorm(dim)

    def forward(
        self, x: torch.Tensor, pos: torch.Tensor, output_attentions: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        update, weights = self.self_attn(x + pos, x, output_attentions=output_attentions)
        x = self.norm1(x + update)
        return self.norm2(x + self.fc2(self.act(self.fc1(x)))), weights


class Deimv2AIFI(nn.Module):
    def __init__(self, config: Deimv2Config):
        super().__init__()
        self.layers = nn.ModuleList(Deimv2AIFILayer(config) for _ in range(config.encoder_layers))

    def forward(
        self, x: torch.Tensor, pos: torch.Tensor, output_attentions: bool = False
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        attentions = []
        for layer in self.layers:
            x, weights = layer(x, pos, output_attentions)
            attentions.append(weights)
        return x, attentions


class Deimv2HybridEncoder(nn.Module):
    """AIFI on selected levels, then a top-down FPN and a bottom-up PAN with ELAN fusion blocks."""

    def __init__(self, config: Deimv2Config):
        super().__init__()
        hidden, levels = config.encoder_hidden_dim, len(config.encoder_in_channels)
        self.hidden = hidden
        self.temperature = config.positional_encoding_temperature
        self.aifi_indices = list(config.encoder_aifi_indices)
        self.input_proj = nn.ModuleList(
            nn.Identity() if c == hidden else Deimv2ConvNorm(c, hidden, 1) for c in config.encoder_in_channels
        )
        self.aifi = nn.ModuleList(Deimv2AIFI(config) for _ in self.aifi_indices)
        fused_in = hidden if config.encoder_fuse_op == "sum" else 2 * hidden
        self.fuse_sum = config.encoder_fuse_op == "sum"
        self.lateral_convs = nn.ModuleList(Deimv2ConvNorm(hidden, hidden, 1) for _ in range(levels - 1))
        self.fpn_blocks = nn.ModuleList(_fusion_block(config, fused_in) for _ in range(levels - 1))
        self.downsample_convs = nn.ModuleList(Deimv2SCDown(hidden) for _ in range(levels - 1))
        self.pan_blocks = nn.ModuleList(_fusion_block(config, fused_in) for _ in range(levels - 1))

    def _fuse(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a + b if self.fuse_sum else torch.cat([a, b], dim=1)

    def forward(
        self, features: list[torch.Tensor], output_attentions: bool = False
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Fused maps, fine to coarse, and the AIFI layers' attention weights (with ``output_attentions``)."""
        feats = [proj(feat) for proj, feat in zip(self.input_proj, features, strict=True)]
        attentions: list[torch.Tensor] = []
        for aifi, index in zip(self.aifi, self.aifi_indices, strict=True):
            batch, _, height, width = feats[index].shape
            tokens = feats[index].flatten(2).permute(0, 2, 1)
            pos = sincos_position_embedding(height, width, self.hidden, self.temperature)
            tokens, weights = aifi(
                tokens, pos.to(device=tokens.device, dtype=tokens.dtype), output_attentions
            )
            attentions += weights
            feats[index] = tokens.permute(0, 2, 1).reshape(batch, self.hidden, height, width).contiguous()

        levels = len(feats)
        inner = [feats[-1]]
        for step, index in enumerate(range(levels - 1, 0, -1)):
            top = self.lateral_convs[step](inner[0])
            inner[0] = top
            upsampled = F.interpolate(top, scale_factor=2.0, mode="nearest")
            inner.insert(0, self.fpn_blocks[step](self._fuse(upsampled, feats[index - 1])))

        outputs = [inner[0]]
        for step in range(levels - 1):
            down = self.downsample_convs[step](outputs[-1])
            outputs.append(self.pan_blocks[step](self._fuse(down, inner[step + 1])))
        return outputs, attentions


class Deimv2SCDown(nn.Module):
    """Pointwise conv-norm then a depthwise 3x3/2 conv-norm."""

    def __init__(self, channels: int):
        super().__init__()
        self.cv1 = Deimv2ConvNorm(channels, channels, 1)
        self.cv2 = Deimv2ConvNorm(channels, channels, 3, stride=2, groups=channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cv2(self.cv1(x))


def build_encoder(config: Deimv2Config) -> nn.Module:
    return Deimv2LiteEncoder(config) if config.encoder_type == "lite" else Deimv2HybridEncoder(config)
