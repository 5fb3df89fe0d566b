"""Deploy mode of VidEoMT: SDPA attention, LayerScale folded into the linear layer before it.

``LayerScale(Linear(x)) = (gamma * W) x + gamma * b``: each block's two scales are multiplied into the
attention output projection and the last MLP layer, and the scale module becomes the identity. Its
parameter stays (set to ones) under the same name, so the state dict keeps its keys and a saved deployed
model reloads as an ordinary one with the same outputs. Outputs equal the eval-mode model's up to float32
rounding; a deployed model refuses to run in training mode.
"""

from __future__ import annotations

import torch
from torch import nn

from ...core.fusion import scale_output_channels
from .modeling_videomt import VideomtLayer, VideomtLayerScale

ATTENTION = "sdpa"


class FoldedLayerScale(nn.Module):
    """A LayerScale already multiplied into the linear layer before it: the identity, for inference only."""

    def __init__(self, source: VideomtLayerScale):
        super().__init__()
        self.name = source.name
        self.register_parameter(source.name, getattr(source, source.name))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            raise RuntimeError("a deployed VidEoMT is for inference only: train the undeployed model")
        return x


@torch.no_grad()
def fold_layer_scale(linear: nn.Linear, scale: nn.Module) -> FoldedLayerScale:
    """Multiply ``scale``'s per-channel factor into ``linear`` (its output channels); the folded scale."""
    if isinstance(scale, FoldedLayerScale):
        return scale
    gamma = getattr(scale, scale.name)
    scale_output_channels(linear, gamma)
    gamma.fill_(1.0)
    return FoldedLayerScale(scale).train(scale.training)


def _projections(layer: VideomtLayer) -> tuple[nn.Linear, nn.Linear]:
    """The linear layers that feed ``layer_scale1`` and ``layer_scale2`` (timm DINOv2 or DINOv3 names)."""
    attention = layer.attention
    out = attention.proj if hasattr(attention, "proj") else attention.o_proj
    return out, (layer.mlp.down_proj if hasattr(layer, "mlp") else layer.fc2)


def deploy_model(model: nn.Module) -> nn.Module:
    """Put a ``VideomtForUniversalSegmentation`` (eval mode) in deploy mode, in place; idempotent."""
    if model.training:
        raise RuntimeError("deploy() needs eval mode: call .eval() first")
    model.set_attn_implementation(ATTENTION)
    for layer in model.layers:
        attention_out, mlp_out = _projections(layer)
        layer.layer_scale1 = fold_layer_scale(attention_out, layer.layer_scale1)
        layer.layer_scale2 = fold_layer_scale(mlp_out, layer.layer_scale2)
    for param in model.parameters():
        param.requires_grad_(False)
    model.is_deployed = True
    return model
