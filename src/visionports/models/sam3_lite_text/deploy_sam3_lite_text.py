"""Deploy mode of SAM3-LiteText: the MobileCLIP text encoder re-parameterised for inference.

* every RepMixer block's token mixer (two BatchNorms, a depthwise conv + BatchNorm, layer scale) becomes one biased
  depthwise convolution and its ConvFFN's conv + BatchNorm another (:meth:`reparameterize`);
* the ConvFFN's layer scale is folded into its last 1x1 convolution (one multiply less per block);
* the Transformer blocks' explicit float32-softmax attention runs as ``F.scaled_dot_product_attention``
  (measured on the golden text case: 4.3e-6 at the last block, tolerance 1e-5).

The SAM3 detector (ViT, FPN, DETR encoder/decoder, mask decoder) has no BatchNorm or parallel branches to merge
and already runs SDPA: it is left as is. Outputs equal the eval-mode model's up to float32 rounding; a deployed
model is for inference only (``train()`` and ``save_pretrained`` are refused).
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn

DEPLOY_ATTENTION = "sdpa"


@torch.no_grad()
def fold_layer_scale(layer: nn.Module) -> None:
    """``ffn_scale * fc2(y)`` -> ``fc2'(y)`` with the scale in ``fc2``'s weight and bias; ``ffn_scale`` -> None."""
    scale = getattr(layer, "ffn_scale", None)
    if scale is None:
        return
    factor = scale.reshape(-1)
    layer.fc2.weight.mul_(factor.view(-1, *[1] * (layer.fc2.weight.ndim - 1)))
    if layer.fc2.bias is not None:
        layer.fc2.bias.mul_(factor)
    layer.ffn_scale = None


def deploy_text_model(text_model: nn.Module) -> None:
    """Re-parameterise a ``Sam3LiteTextTextModel`` (eval mode) in place: RepMixers fused, layer scales folded,
    SDPA attention."""
    if text_model.training:
        raise RuntimeError("deploy() needs eval mode (BatchNorm running statistics): call .eval() first")
    text_model.reparameterize()
    for layer in text_model.layers:
        if hasattr(layer, "reparameterize"):
            fold_layer_scale(layer)
    text_model.set_attn_implementation(DEPLOY_ATTENTION)
    for param in text_model.parameters():
        param.requires_grad_(False)


class DeployableMixin:
    """``deploy()`` for the SAM3-LiteText models, and the inference-only guards of a deployed model."""

    is_deployed = False

    def deploy(self) -> Any:
        """Re-parameterise the text encoder for inference, in place (see :mod:`.deploy_sam3_lite_text`); returns
        ``self`` (idempotent). Needs eval mode; the deployed model refuses ``train()`` and ``save_pretrained``."""
        if self.is_deployed:
            return self
        if self.training:
            raise RuntimeError("deploy() needs eval mode (BatchNorm running statistics): call .eval() first")
        deploy_text_model(getattr(self, "text_model", self))
        for module in self.modules():
            if isinstance(module, DeployableMixin):
                module.is_deployed = True
        return self

    def _any_deployed(self) -> bool:
        return any(getattr(m, "is_deployed", False) for m in self.modules())

    def train(self, mode: bool = True) -> Any:
        if mode and self._any_deployed():
            raise RuntimeError(
                "a deployed SAM3-LiteText model is for inference only: train the undeployed model"
            )
        return super().train(mode)

    def save_pretrained(self, save_directory: str | os.PathLike, *args: Any, **kwargs: Any) -> None:
        if self._any_deployed():
            raise RuntimeError("deployed models are for inference; save the undeployed model")
        super().save_pretrained(save_directory, *args, **kwargs)
