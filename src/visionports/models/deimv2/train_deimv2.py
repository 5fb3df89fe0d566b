"""Fine-tuning DEIMv2 on a COCO-format folder with ``transformers.Trainer``.

The recipe of the original: AdamW (betas 0.9/0.999), a lower learning rate for the backbone, no weight
decay on norms and biases, gradient clipping at 0.1, a flat-then-cosine schedule with quadratic warm-up,
EMA of the weights (the EMA model is what gets saved), and the matcher switch at ``matcher_change_epoch``.
Augmentation: none, horizontal flips, or the variant's "dense one-to-one" data recipe (``AUGMENT_RECIPES``,
resolved into a :class:`~visionports.data.detection_recipe.AugmentationPlan` by :func:`augmentation_plan`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

import torch
from transformers import Trainer

from ...core.files import require_family_folder
from ...data.coco_dataset import CocoSplit
from ...data.detection_recipe import AugmentationPlan, multiscale_sizes
from ...training.fine_tuning import (  # the Trainer loop around this module's pieces
    TrainingOptionError,
    fine_tune,
    parse_epochs,
)
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


class AugmentRecipe(NamedTuple):
    """A variant's data recipe, in epochs of its own ``epochs``-long schedule (the ymls' resolved values)."""

    epochs: int  # the recipe's training epochs
    size: int  # its square training size
    policy: tuple[int, int, int]  # per-image ops: start, Mosaic stop, stop
    mosaic_prob: float
    min_box_size: float  # SanitizeBoundingBoxes min_size, pixels at `size`
    mixup_prob: float
    mixup_epochs: tuple[int, int]
    copyblend_prob: float
    copyblend_epochs: tuple[int, int]
    multiscale_stop: int  # the collate's stop_epoch
    base_size_repeat: int | None  # None: no multi-scale


# Per released variant. Atto/Femto/Pico/N have no multi-scale (base_size_repeat ~); Atto/Femto/Pico no Mixup or
# CopyBlend (probability 0; their windows [40000, 15000] never open).
AUGMENT_RECIPES: dict[str, AugmentRecipe] = {
    "atto": AugmentRecipe(500, 320, (4, 250, 400), 0.3, 12, 0.0, (0, 0), 0.0, (0, 0), 468, None),
    "femto": AugmentRecipe(500, 416, (4, 250, 400), 0.5, 10, 0.0, (0, 0), 0.0, (0, 0), 468, None),
    "pico": AugmentRecipe(500, 640, (4, 250, 400), 0.5, 8, 0.0, (0, 0), 0.0, (0, 0), 468, None),
    "n": AugmentRecipe(160, 640, (4, 78, 148), 0.5, 1, 0.5, (4, 78), 0.4, (4, 78), 148, None),
    "s": AugmentRecipe(132, 640, (4, 64, 120), 0.5, 1, 0.5, (4, 64), 0.5, (4, 120), 120, 20),
    "m": AugmentRecipe(102, 640, (4, 49, 90), 0.5, 1, 0.5, (4, 49), 0.5, (4, 90), 90, 6),
    "l": AugmentRecipe(68, 640, (4, 34, 60), 0.5, 1, 0.5, (4, 34), 0.5, (4, 60), 60, 3),
    "x": AugmentRecipe(58, 640, (4, 29, 50), 0.5, 1, 0.5, (4, 29), 0.5, (4, 50), 50, 3),
}


def scale_epoch(epoch: int, run_epochs: int, recipe_epochs: int) -> int:
    """A recipe epoch at the same fraction of a ``run_epochs``-long run (rounded half up)."""
    return math.floor(epoch * run_epochs / recipe_epochs + 0.5)


def augmentation_plan(
    variant: str, options: FineTuneOptions, run_epochs: int, size: tuple[int, int]
) -> AugmentationPlan:
    """The variant's data recipe for a run of ``run_epochs`` epochs at ``size`` (height, width).

    Every recipe epoch keeps its fraction of the recipe's length (e.g. Atto's Mosaic stop 250 of 500 is epoch 6
    of 12); explicit options are epochs of this run and are not scaled. The sanitize threshold scales with the
    training size; Mosaic tiles are half of it; multi-scale sizes are built around it (square sizes only).
    """
    recipe = AUGMENT_RECIPES.get(variant, AUGMENT_RECIPES["atto"])

    def scaled(epochs: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(scale_epoch(e, run_epochs, recipe.epochs) for e in epochs)

    policy = parse_epochs(options.augment_epochs, 3, "--augment-epochs") or scaled(recipe.policy)
    mixup_epochs = parse_epochs(options.mixup_epochs, 2, "--mixup-epochs") or scaled(recipe.mixup_epochs)
    copyblend_epochs = parse_epochs(options.copyblend_epochs, 2, "--copyblend-epochs")
    stop = options.multiscale_stop_epoch
    repeat = recipe.base_size_repeat
    height, width = size
    return AugmentationPlan(
        size=size,
        policy_epochs=policy,
        mosaic_prob=_given(options.mosaic_prob, recipe.mosaic_prob, "--mosaic-prob"),
        min_box_size=max(1.0, recipe.min_box_size * min(size) / recipe.size),
        mixup_prob=_given(options.mixup_prob, recipe.mixup_prob, "--mixup-prob"),
        mixup_epochs=mixup_epochs,
        copyblend_prob=_given(options.copyblend_prob, recipe.copyblend_prob, "--copyblend-prob"),
        copyblend_epochs=copyblend_epochs or scaled(recipe.copyblend_epochs),
        multiscale_stop_epoch=stop if stop is not None else scaled((recipe.multiscale_stop,))[0],
        multiscale_sizes=multiscale_sizes(height, repeat) if repeat and height == width else None,
        flip_prob=_given(options.horizontal_flip, 0.5, "--hflip"),
    )


def _given(value: float | None, default: float, option: str) -> float:
    """``value`` when set (a probability), else ``default``."""
    if value is None:
        return default
    if not 0.0 <= value <= 1.0:
        raise TrainingOptionError(f"{option} must be a probability in [0, 1], got {value}")
    return float(value)


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
    "AUGMENT_RECIPES",
    "RECIPES",
    "AugmentRecipe",
    "DetectionTrainer",
    "FineTuneOptions",
    "Schedule",
    "augmentation_plan",
    "fine_tune",
    "flat_cosine_factor",
    "load_for_data",
    "parameter_groups",
    "scale_epoch",
]
