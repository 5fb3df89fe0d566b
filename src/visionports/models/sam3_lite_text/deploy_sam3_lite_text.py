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

from typing import Any

import torch
from torch import nn

from ...core.deploy import InferenceOnlyMixin
from ...core.fusion import scale_output_channels

DEPLOY_ATTENTION = "sdpa"


@torch.no_grad()
def fold_layer_scale(layer: nn.Module) -> None:
    """``ffn_scale * fc2(y)`` -> ``fc2'(y)`` with the scale in ``fc2``'s weight and bias; ``ffn_scale`` -> None."""
    scale = getattr(layer, "ffn_scale", None)
    if scale is None:
        return
    scale_output_channels(layer.fc2, scale)
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


class DeployableMixin(InferenceOnlyMixin):
    """``deploy()`` for the SAM3-LiteText models (the inference-only guards come from the core mixin)."""

    def deploy(self) -> Any:
        """Re-parameterise the text encoder for inference, in place (see :mod:`.deploy_sam3_lite_text`); returns
        ``self`` (idempotent). Needs eval mode; the deployed model refuses ``train()`` and ``save_pretrained``."""
        if self.is_deployed:
            return self
        self._require_eval()
        deploy_text_model(getattr(self, "text_model", self))
        self._mark_deployed()
        return self
