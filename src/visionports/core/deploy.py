"""What every family's deploy mode shares: eval mode required, and a deployed model kept for inference.

A family's ``deploy()`` re-parameterises weights (folded BatchNorms, merged branches) into a layout its
``from_pretrained`` cannot read back, so a deployed model refuses ``train()`` and ``save_pretrained``.
"""

from __future__ import annotations

import os
from typing import Any

from torch import nn


class InferenceOnlyMixin:
    """``is_deployed`` flags and the guards of a deployed model (put before ``PreTrainedModel`` in the bases)."""

    is_deployed = False  # set by deploy(): the weights are re-parameterised, for inference only

    def _require_eval(self) -> None:
        if self.training:
            raise RuntimeError("deploy() needs eval mode (BatchNorm running statistics): call .eval() first")

    def _mark_deployed(self) -> None:
        for module in self.modules():
            if isinstance(module, InferenceOnlyMixin):
                module.is_deployed = True

    def _any_deployed(self) -> bool:
        return any(getattr(module, "is_deployed", False) for module in self.modules())

    def train(self, mode: bool = True) -> nn.Module:
        if mode and self._any_deployed():
            raise RuntimeError(
                f"a deployed {type(self).__name__} is for inference only: train the undeployed model"
            )
        return super().train(mode)

    def save_pretrained(self, save_directory: str | os.PathLike, *args: Any, **kwargs: Any) -> None:
        if self._any_deployed():
            raise RuntimeError("deployed models are for inference; save the undeployed model")
        super().save_pretrained(save_directory, *args, **kwargs)
