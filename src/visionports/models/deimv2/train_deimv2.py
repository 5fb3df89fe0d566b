"""Fine-tuning DEIMv2 on a COCO-format folder with ``transformers.Trainer``.

The recipe of the original: AdamW (betas 0.9/0.999), a lower learning rate for the backbone, no weight
decay on norms and biases, gradient clipping at 0.1, a flat-then-cosine schedule with quadratic warm-up,
EMA of the weights (the EMA model is what gets saved), and the matcher switch at ``matcher_change_epoch``.
Training is augmentation-free (optionally with horizontal flips), as the recipe's final epochs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch
from transformers import Trainer

from ...core.files import require_family_folder
from ...data.coco_dataset import CocoSplit
from ...training.fine_tuning import fine_tune  # the Trainer loop around this module's pieces
from .train_options_deimv2 import FineTuneOptions

# Per released variant: (base lr, backbone lr, weight decay, warm-up iterations, lr_gamma), from the ymls.
RECIPES: dict[str, tuple[float, float, float, int, float]] = {
    "atto": (2e-3, 1e-3, 1e-4, 4000, 0.5),
    "femto": (1.6e-3, 8e-4, 1e-4, 4000, 0.5),
    "pico": (1.6e-3, 8e-4, 1e-4, 4000, 0.5),
    "n": (8e-4, 4e-4, 1e-4, 2000, 1.0),
    "s": (5e-4, 2.5e-5, 1e-4, 2000, 0.5),
    "m": (5e-4, 2.5e-5, 1e-4, 2000, 0.5),
    "l": (5e-4, 1.25e-5, 1.25e-4, 2000, 0.5),
    "x": (5e-4, 1e-5, 1.25e-4, 2000, 0.5),
}


def flat_cosine_factor(step: int, total: int, warmup: int, flat: int, no_aug: int, gamma: float) -> float:
    """Learning-rate multiplier: quadratic warm-up, flat, cosine down to ``gamma``, then ``gamma``."""
    if step <= warmup:
        return (step / warmup) ** 2 if warmup > 0 else 1.0
    if step <= flat:
        return 1.0
    if step >= total - no_aug:
        return gamma
    progress = (step - flat) / max(total - flat - no_aug, 1)
    return gamma + (1 - gamma) * 0.5 * (1 + math.cos(math.pi * progress))


def parameter_groups(
    model: torch.nn.Module, lr: float, backbone_lr: float, weight_decay: float
) -> list[dict]:
    """Backbone vs the rest (learning rate) x matrices vs norms/biases (weight decay)."""
    groups: dict[tuple[bool, bool], list] = {}
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            key = (".backbone." in f".{name}", parameter.ndim <= 1)
            groups.setdefault(key, []).append(parameter)
    return [
        {
            "params": params,
            "lr": backbone_lr if backbone else lr,
            "weight_decay": 0.0 if flat else weight_decay,
        }
        for (backbone, flat), params in sorted(groups.items())
    ]


def load_for_data(model_dir: str | Path, split: CocoSplit):
    """The detector and its processor, with the classification heads sized to ``split``'s categories.

    Labels are the split's sorted category ids, ``0 .. C-1`` (no background class: DEIMv2 scores every
    class with a sigmoid); heads whose size changes are re-initialised, all other weights are kept.
    """
    from transformers import AutoImageProcessor, AutoModelForObjectDetection

    model_dir, _ = require_family_folder(model_dir, "train")
    names = dict(enumerate(split.category_names))
    model = AutoModelForObjectDetection.from_pretrained(
        model_dir,
        id2label=names,
        label2id={v: k for k, v in names.items()},
        ignore_mismatched_sizes=True,
    )
    model.config.category_ids = list(split.category_ids)
    return model, AutoImageProcessor.from_pretrained(model_dir)


class DetectionTrainer(Trainer):
    """``Trainer`` that gives the criterion the current epoch (``forward(epoch=...)``): the matcher changes its
    cost at ``matcher_change_epoch``."""

    def compute_loss(self, model, inputs, *args: Any, **kwargs: Any):
        epoch = math.floor((self.state.epoch or 0.0) + 1e-9)  # the epoch this step belongs to
        return super().compute_loss(model, {**inputs, "epoch": epoch}, *args, **kwargs)


@dataclass
class Schedule:
    """The learning rates and step counts of one run: the options, else the variant's recipe."""

    lr: float
    backbone_lr: float
    weight_decay: float
    gamma: float
    total: int
    warmup: int
    flat: int
    no_aug: int

    @classmethod
    def resolve(cls, variant: str, options: FineTuneOptions, steps_per_epoch: int) -> Schedule:
        recipe_lr, recipe_backbone_lr, weight_decay, warmup, gamma = RECIPES.get(variant, RECIPES["atto"])
        lr = options.lr if options.lr is not None else recipe_lr
        total = options.max_steps if options.max_steps > 0 else steps_per_epoch * options.epochs
        return cls(
            lr=lr,
            # the backbone keeps the recipe's ratio to the base learning rate unless given
            backbone_lr=options.backbone_lr
            if options.backbone_lr is not None
            else lr * recipe_backbone_lr / recipe_lr,
            weight_decay=options.weight_decay if options.weight_decay is not None else weight_decay,
            gamma=options.lr_gamma if options.lr_gamma is not None else gamma,
            total=total,
            warmup=options.warmup_steps if options.warmup_steps is not None else min(warmup, total // 10),
            flat=steps_per_epoch * options.flat_epochs if options.flat_epochs is not None else total // 2,
            no_aug=steps_per_epoch * options.no_aug_epochs,
        )

    def optimizers(self, model: torch.nn.Module):
        """AdamW over :func:`parameter_groups` and the flat-cosine schedule."""
        groups = parameter_groups(model, self.lr, self.backbone_lr, self.weight_decay)
        optimizer = torch.optim.AdamW(groups, lr=self.lr, betas=(0.9, 0.999))
        factor = partial(flat_cosine_factor, total=self.total, warmup=self.warmup, flat=self.flat,
                         no_aug=self.no_aug, gamma=self.gamma)  # fmt: skip
        return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


__all__ = [
    "RECIPES",
    "DetectionTrainer",
    "FineTuneOptions",
    "Schedule",
    "fine_tune",
    "flat_cosine_factor",
    "load_for_data",
    "parameter_groups",
]
