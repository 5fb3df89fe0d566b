"""Deploy mode of DEIMv2: BatchNorm folded into the convolutions, RepVGG blocks merged into one 3x3 conv.

Outputs are those of the eval-mode model up to float32 rounding; the deployed model has other weights (and
state-dict keys), so it is for inference only: training and ``save_pretrained`` are refused.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers.models.hgnet_v2.modeling_hgnet_v2 import HGNetV2ConvLayer

from ...core.fusion import fold_batchnorm, folded_conv_bn, pad_kernel
from .backbone_deimv2 import Deimv2ConvNorm, Deimv2SpatialTuningAdapter
from .encoder_deimv2 import Deimv2RepVggBlock

STA_PAIRS = (("stem_conv", "stem_norm"), ("conv2", "norm2"), ("conv3", "norm3"), ("conv4", "norm4"))


def _fold_pair(owner: nn.Module, conv_name: str, norm_name: str) -> None:
    """Fold ``owner.<norm_name>`` into ``owner.<conv_name>`` and replace the norm by ``nn.Identity``."""
    norm = getattr(owner, norm_name)
    if isinstance(norm, nn.BatchNorm2d):
        fold_batchnorm(getattr(owner, conv_name), norm)
        setattr(owner, norm_name, nn.Identity())


@torch.no_grad()
def merge_repvgg(block: Deimv2RepVggBlock) -> None:
    """Replace the 3x3 and 1x1 conv-norm branches of ``block`` by one biased 3x3 convolution."""
    if block.fused is not None:
        return
    w3, b3 = folded_conv_bn(block.conv1.conv, block.conv1.norm)
    w1, b1 = folded_conv_bn(block.conv2.conv, block.conv2.norm)
    source = block.conv1.conv
    fused = nn.Conv2d(source.in_channels, source.out_channels, 3, padding=1, bias=True)
    fused.to(device=source.weight.device, dtype=source.weight.dtype)
    fused.weight.copy_(w3 + pad_kernel(w1, 3))
    fused.bias.copy_(b3 + b1)
    fused.requires_grad_(False)
    block.fused = fused
    block.conv1 = None
    block.conv2 = None


def fold_module(module: nn.Module) -> None:
    """Fold one known conv + BatchNorm module in place (others are left alone)."""
    if isinstance(module, Deimv2ConvNorm):
        _fold_pair(module, "conv", "norm")
    elif isinstance(module, HGNetV2ConvLayer):
        _fold_pair(module, "convolution", "normalization")
    elif isinstance(module, Deimv2SpatialTuningAdapter):
        for conv_name, norm_name in STA_PAIRS:
            _fold_pair(module, conv_name, norm_name)


def deploy_body(body: nn.Module, channels_last: bool = False) -> None:
    """Re-parameterise the backbone and encoder of a ``Deimv2Model`` (eval mode) in place.

    RepVGG blocks are merged first (their branches hold BatchNorms), then every conv + BatchNorm pair is
    folded. ``channels_last`` stores the 4D convolution weights of the backbone and encoder channels-last.
    """
    if body.training:
        raise RuntimeError("deploy() needs eval mode (BatchNorm running statistics): call .eval() first")
    parts = [body.backbone, body.encoder]
    for part in parts:
        for module in list(part.modules()):
            if isinstance(module, Deimv2RepVggBlock):
                merge_repvgg(module)
        for module in list(part.modules()):
            fold_module(module)
        for param in part.parameters():
            param.requires_grad_(False)
        if channels_last:
            part.to(memory_format=torch.channels_last)
