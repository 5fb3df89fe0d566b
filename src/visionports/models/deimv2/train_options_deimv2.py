"""DEIMv2's fine-tuning settings, kept free of torch so the ``train`` command builds its options cheaply."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


def _option(default: Any, help: str, **bounds: Any) -> Any:
    """A field whose metadata (help, bounds, aliases) the ``train`` command turns into its option."""
    return field(default=default, metadata={"help": help, **bounds})


@dataclass
class FineTuneOptions:
    """Fine-tuning settings; ``None`` values take the variant's recipe (see ``train_deimv2.RECIPES``)."""

    epochs: int = _option(12, "Training epochs.", min=1)
    batch_size: int = _option(4, "Images per step and process.", min=1)
    lr: float | None = _option(None, "Base learning rate [variant's recipe].", min=0, min_open=True)
    backbone_lr: float | None = _option(None, "Backbone learning rate [recipe ratio to --lr].", min=0)
    weight_decay: float | None = _option(None, "AdamW weight decay [variant's recipe].", min=0)
    warmup_steps: int | None = _option(None, "Quadratic warm-up steps [min(recipe, 10%)].", min=0)
    flat_epochs: int | None = _option(None, "Epochs at full learning rate [half the run].", min=0)
    no_aug_epochs: int = _option(0, "Final epochs at the minimum learning rate.", min=0)
    lr_gamma: float | None = _option(None, "Minimum / base learning rate [recipe].", min=0, max=1)
    max_grad_norm: float = _option(0.1, "Gradient clipping norm.", min=0, min_open=True)
    ema_decay: float = _option(0.9999, "EMA decay.", min=0, max=1, max_open=True)
    ema_warmups: int = _option(1000, "EMA warm-up steps.", min=0)
    augment: str | None = _option(
        None,
        "Augmentation: 'recipe' (the variant's dense one-to-one recipe: Mosaic, photometric distortion, zoom-out, "
        "IoU crop, flips, Mixup, CopyBlend, multi-scale, on its epoch schedule scaled to --epochs), 'flip' "
        "(horizontal flips only) or 'none' [flip with --hflip, else none].",
    )
    horizontal_flip: float | None = _option(
        None, "Probability of a horizontal flip [0.5 with --augment flip/recipe].", min=0, max=1,
        aliases=("--hflip",),
    )  # fmt: skip
    augment_epochs: str | None = _option(
        None, "--augment recipe: 'START,MOSAIC_STOP,STOP' epochs of the per-image ops [recipe, scaled]."
    )
    mosaic_prob: float | None = _option(None, "--augment recipe: Mosaic probability [recipe].", min=0, max=1)
    mixup_prob: float | None = _option(None, "--augment recipe: Mixup probability [recipe].", min=0, max=1)
    mixup_epochs: str | None = _option(
        None, "--augment recipe: 'START,STOP' epochs of Mixup [recipe, scaled]."
    )
    copyblend_prob: float | None = _option(
        None, "--augment recipe: CopyBlend probability [recipe].", min=0, max=1
    )
    copyblend_epochs: str | None = _option(
        None, "--augment recipe: 'START,STOP' epochs of CopyBlend [recipe, scaled]."
    )
    multiscale_stop_epoch: int | None = _option(
        None, "--augment recipe: first epoch without multi-scale batches [recipe, scaled].", min=0
    )
    max_steps: int = _option(-1, "Stop after this many steps (-1: epochs).", min=-1)
    save_every_epochs: int = _option(1, "Checkpoint every N epochs.", min=1)
    save_steps: int | None = _option(
        None, "Checkpoint (to --output/checkpoints/checkpoint-N) every N steps [--save-every-epochs].", min=1
    )
    resume: str | None = _option(
        None, "Continue a run from a checkpoint-N folder, or 'latest' in --output/checkpoints."
    )
    gradient_accumulation_steps: int = _option(
        1, "Batches per optimiser step (each normalised by its own box count).", min=1
    )
    sync_bn: bool = _option(False, "Synchronise BatchNorm statistics across processes (GPUs only).")
    bf16: bool = _option(False, "bfloat16 mixed precision (autocast; CUDA or CPU).")
    fp16: bool = _option(False, "float16 mixed precision with loss scaling (CUDA only).")
    seed: int = _option(0, "Random seed (data order, augmentations, re-initialised heads).")
    progress: bool = _option(True, "Show progress bars.")


__all__ = ["FineTuneOptions"]
