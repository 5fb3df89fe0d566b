"""Fine-tuning VidEoMT on YouTube-VIS-format clips with ``transformers.Trainer``, as the original trains.

The original's optimiser: AdamW with one weight decay on every parameter and layer-wise learning-rate decay —
ViT block ``i`` of ``L`` at ``lr · decay^(L-1-i)``, the patch embedding and tokens at ``decay^(L-1)``, the ViT's
final norm at 1 (DINOv2) or ``decay^(L-1)`` (DINOv3: it comes before the blocks there), the queries, updater
and heads at ``lr``. Its two-stage schedule: the non-ViT parameters warm up linearly while the ViT is frozen,
then the ViT warms up; each then decays polynomially to the end of the run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch

from .train_options_videomt import VideoFineTuneOptions

RECIPE_WARMUPS = (500, 1000)  # non-ViT, then ViT (SOLVER.WARMUP_STEPS of the released configs)


def layer_scale_of(name: str, depth: int, decay: float, backbone_type: str) -> float | None:
    """The learning-rate factor of a ViT parameter (``None`` for the queries, updater and heads)."""
    parts = name.split(".")
    if parts[0] == "layers":
        return decay ** (depth - 1 - int(parts[1]))
    if parts[0] == "embeddings":
        return decay ** (depth - 1)
    if parts[0] == "norm":
        return 1.0 if backbone_type == "dinov2" else decay ** (depth - 1)
    return None


def parameter_groups(model: torch.nn.Module, lr: float, weight_decay: float, decay: float) -> list[dict]:
    """The ViT groups (one per learning-rate factor, flagged ``vit``) first, then the rest at ``lr``."""
    config = model.config
    vit: dict[float, list] = {}
    rest = []
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        factor = layer_scale_of(name, config.num_hidden_layers, decay, config.backbone_type)
        if factor is None:
            rest.append(parameter)
        else:
            vit.setdefault(factor, []).append(parameter)
    groups = [
        {"params": params, "lr": lr * factor, "weight_decay": weight_decay, "vit": True}
        for factor, params in sorted(vit.items())
    ]
    return groups + [{"params": rest, "lr": lr, "weight_decay": weight_decay, "vit": False}]


def two_stage_factor(
    step: int, vit: bool, head_warmup: int, vit_warmup: int, total: int, power: float
) -> float:
    """Learning-rate multiplier at ``step``: non-ViT groups warm up over ``head_warmup`` steps; ViT groups stay
    at 0 for ``head_warmup`` steps and warm up over the next ``vit_warmup``; then poly decay to ``total``."""
    start = head_warmup + vit_warmup if vit else head_warmup
    if vit and step < head_warmup:
        return 0.0
    if step < start:
        warmup = vit_warmup if vit else head_warmup
        return (step - (start - warmup)) / warmup
    return max(0.0, 1 - max(0, step - start) / max(1, total - start)) ** power


@dataclass
class VideoSchedule:
    """Learning rates and step counts of one run."""

    lr: float
    weight_decay: float
    layer_decay: float
    total: int
    head_warmup: int
    vit_warmup: int
    power: float

    @classmethod
    def resolve(cls, options: VideoFineTuneOptions, steps_per_epoch: int) -> VideoSchedule:
        total = options.max_steps if options.max_steps > 0 else steps_per_epoch * options.epochs
        head = options.head_warmup_steps
        vit = options.vit_warmup_steps
        return cls(
            lr=options.lr,
            weight_decay=options.weight_decay,
            layer_decay=options.layer_decay,
            total=total,
            head_warmup=head if head is not None else min(RECIPE_WARMUPS[0], total // 10),
            vit_warmup=vit if vit is not None else min(RECIPE_WARMUPS[1], total // 5),
            power=options.poly_power,
        )

    def optimizers(self, model: torch.nn.Module):
        """AdamW over :func:`parameter_groups` and the two-stage schedule (one lambda per group)."""
        groups = parameter_groups(model, self.lr, self.weight_decay, self.layer_decay)
        optimizer = torch.optim.AdamW(groups, lr=self.lr)
        factors = [
            partial(two_stage_factor, vit=group["vit"], head_warmup=self.head_warmup,
                    vit_warmup=self.vit_warmup, total=self.total, power=self.power)
            for group in groups
        ]  # fmt: skip
        return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factors)


def load_for_data(model_dir: str | Path, category_ids: list[int], category_names: list[str]):
    """The model (class head re-initialised when the data set's classes differ) and its processor."""
    from transformers import AutoImageProcessor

    from .modeling_videomt import VideomtForUniversalSegmentation

    names = dict(enumerate(category_names))
    model = VideomtForUniversalSegmentation.from_pretrained(
        model_dir, id2label=names, label2id={v: k for k, v in names.items()}, ignore_mismatched_sizes=True
    )
    model.config.category_ids = list(category_ids)
    return model, AutoImageProcessor.from_pretrained(model_dir)


def steps_per_epoch(num_clips: int, options: VideoFineTuneOptions, processes: int) -> int:
    """Optimiser steps in one pass over the videos by all processes together."""
    batches = math.ceil(num_clips / (options.batch_size * processes))
    return max(batches // options.gradient_accumulation_steps, 1)


__all__ = [
    "RECIPE_WARMUPS",
    "VideoSchedule",
    "layer_scale_of",
    "load_for_data",
    "parameter_groups",
    "steps_per_epoch",
    "two_stage_factor",
]
