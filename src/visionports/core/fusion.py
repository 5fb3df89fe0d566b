"""Inference-time re-parameterisation helpers: BatchNorm folding and kernel padding."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def folded_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight and bias of one convolution equal to ``bn(conv(x))`` with ``bn`` in eval mode.

    The per-channel affine ``gamma * (y - mean) / sqrt(var + eps) + beta`` is applied to the conv's kernel and
    (zero when absent) bias; computed in float64 and returned in the conv's dtype.
    """
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError("cannot fold a BatchNorm without running statistics")
    dtype = conv.weight.dtype
    var = bn.running_var.double()
    scale = torch.rsqrt(var + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight.double()
    bias = conv.bias.double() if conv.bias is not None else torch.zeros_like(var)
    bias = (bias - bn.running_mean.double()) * scale
    if bn.bias is not None:
        bias = bias + bn.bias.double()
    weight = conv.weight.double() * scale.reshape(-1, *([1] * (conv.weight.ndim - 1)))
    return weight.to(dtype), bias.to(dtype)


@torch.no_grad()
def fold_batchnorm(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
    """Fold eval-mode ``bn`` into ``conv`` in place (adds a bias when the conv has none)."""
    if bn.training:
        raise RuntimeError("BatchNorm folding needs eval mode (running statistics): call .eval() first")
    weight, bias = folded_conv_bn(conv, bn)
    conv.weight.copy_(weight)
    if conv.bias is None:
        conv.bias = nn.Parameter(bias, requires_grad=conv.weight.requires_grad)
    else:
        conv.bias.copy_(bias)


@torch.no_grad()
def scale_output_channels(layer: nn.Module, factor: torch.Tensor) -> None:
    """Multiply ``factor`` (one value per output channel) into a linear or conv ``layer``'s weight and bias, in
    place: ``factor * layer(x) == layer'(x)`` (a LayerScale folded into the layer before it)."""
    factor = factor.reshape(-1)
    weight = layer.weight
    weight.mul_(factor.to(weight.dtype).view(-1, *[1] * (weight.ndim - 1)))
    if layer.bias is not None:
        layer.bias.mul_(factor.to(layer.bias.dtype))


def pad_kernel(kernel: torch.Tensor, size: int) -> torch.Tensor:
    """Zero-pad a centred square kernel ``[O, I, k, k]`` to ``size x size``."""
    pad = (size - kernel.shape[-1]) // 2
    return F.pad(kernel, [pad] * 4)


def count_batchnorms(module: nn.Module) -> int:
    """Number of BatchNorm layers left in ``module``."""
    return sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules())
