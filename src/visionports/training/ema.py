"""Exponential moving average of a model's weights, as a ``transformers`` trainer callback."""

from __future__ import annotations

import copy
import json
import math
import warnings
from pathlib import Path

import torch
from torch import nn
from transformers import TrainerCallback


class ModelEMA:
    """Keeps ``ema = d * ema + (1 - d) * weights`` for every floating tensor of the state dict.

    The decay ramps up as ``decay * (1 - exp(-updates / warmups))`` so that early updates follow the
    weights closely (``warmups=0``: constant decay).
    """

    def __init__(self, model: nn.Module, decay: float = 0.9999, warmups: int = 1000):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"decay must be in [0, 1), got {decay}")
        if warmups < 0:
            raise ValueError(f"warmups must be >= 0, got {warmups}")
        self.module = copy.deepcopy(model).eval()
        for parameter in self.module.parameters():
            parameter.requires_grad_(False)
        self.decay, self.warmups, self.updates = decay, warmups, 0

    def current_decay(self) -> float:
        if self.warmups == 0:
            return self.decay
        return self.decay * (1 - math.exp(-self.updates / self.warmups))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        decay = self.current_decay()
        weights = model.state_dict()
        for name, value in self.module.state_dict().items():
            if value.dtype.is_floating_point:
                value.mul_(decay).add_(weights[name].detach(), alpha=1 - decay)


class EMACallback(TrainerCallback):
    """Updates a :class:`ModelEMA` after every optimiser step; saves it with each checkpoint (``ema/``).

    With ``resume`` (a ``checkpoint-N`` folder), the EMA starts from that checkpoint's ``ema/`` weights and
    update count instead of the model's weights. Only the process that saves checkpoints writes ``ema/``.
    """

    def __init__(
        self, decay: float = 0.9999, warmups: int = 1000, processor=None, resume: str | Path | None = None
    ):
        self.decay, self.warmups, self.processor = decay, warmups, processor
        self.resume = Path(resume) if resume is not None else None
        self.ema: ModelEMA | None = None

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if self.ema is None:
            self.ema = ModelEMA(model, self.decay, self.warmups)
            if self.resume is not None:
                restore_ema(self.ema, self.resume)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        self.ema.update(model)

    def on_save(self, args, state, control, **kwargs):
        if not args.should_save:
            return
        folder = f"{args.output_dir}/checkpoint-{state.global_step}/ema"
        self.ema.module.save_pretrained(folder)
        if self.processor is not None:
            self.processor.save_pretrained(folder)


def restore_ema(ema: ModelEMA, checkpoint: Path) -> None:
    """Load ``checkpoint/ema`` into ``ema`` and set its update count to the checkpoint's step."""
    from safetensors.torch import load_file

    weights = checkpoint / "ema" / "model.safetensors"
    if not weights.is_file():
        warnings.warn(f"{checkpoint} has no ema/ weights; the EMA restarts from the model's", stacklevel=2)
        return
    missing, unexpected = ema.module.load_state_dict(load_file(weights), strict=False)
    if unexpected or any(name not in _tied(ema.module) for name in missing):
        raise ValueError(f"{weights} does not match the model (missing {missing}, unexpected {unexpected})")
    ema.updates = int(json.loads((checkpoint / "trainer_state.json").read_text())["global_step"])


def _tied(module: nn.Module) -> set[str]:
    """State-dict names whose tensor another name shares (``save_pretrained`` writes one of them)."""
    names: dict[int, list[str]] = {}
    for name, value in module.state_dict(keep_vars=True).items():
        names.setdefault(id(value), []).append(name)
    return {name for group in names.values() if len(group) > 1 for name in group}


__all__ = ["EMACallback", "ModelEMA", "restore_ema"]
