"""VidEoMT's fine-tuning settings (the original's recipe by default), free of torch so the CLI builds cheaply."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


def _option(default: Any, help: str, **bounds: Any) -> Any:
    """A field whose metadata (help, bounds) the ``train`` command turns into its option."""
    return field(default=default, metadata={"help": help, **bounds})


@dataclass
class VideoFineTuneOptions:
    """Fine-tuning a VidEoMT model on YouTube-VIS-format clips; defaults follow the released training configs
    (AdamW lr 1e-4, weight decay 0.05, layer-wise decay 0.6, two-stage warm-up then poly 0.9, 5-frame clips,
    no gradient clipping); warm-ups left unset are the recipe's 500 / 1000 steps capped at 10% / 20% of the run."""

    epochs: int = _option(12, "Training epochs (one clip per video and epoch).", min=1)
    batch_size: int = _option(2, "Clips per step and process.", min=1)
    lr: float = _option(1e-4, "Base learning rate (AdamW).", min=0, min_open=True)
    weight_decay: float = _option(0.05, "AdamW weight decay, on every parameter.", min=0)
    layer_decay: float = _option(0.6, "Layer-wise learning-rate decay of the ViT blocks.", min=0, max=1)
    head_warmup_steps: int | None = _option(None, "Linear warm-up of the non-ViT parameters [500].", min=0)
    vit_warmup_steps: int | None = _option(
        None, "ViT frozen for --head-warmup-steps, then warmed up for this many [1000].", min=0
    )
    poly_power: float = _option(0.9, "Poly decay power after the warm-ups.", min=0)
    max_grad_norm: float = _option(0.0, "Gradient clipping norm (0: none, as the original).", min=0)
    clip_frames: int = _option(5, "Frames per training clip.", min=1)
    frame_range: int = _option(
        2, "Sampling range around the reference frame (2 × range + 1 = consecutive).", min=0
    )
    size_scale: float = _option(
        1.0,
        "Multiplies every size of the recipe's resize and crop (e.g. 0.25 for small frames on CPU).",
        min=0,
        min_open=True,
    )
    max_steps: int = _option(-1, "Stop after this many steps (-1: epochs).", min=-1)
    save_every_epochs: int = _option(1, "Checkpoint every N epochs.", min=1)
    save_steps: int | None = _option(None, "Checkpoint every N steps [--save-every-epochs].", min=1)
    resume: str | None = _option(
        None, "Continue a run from a checkpoint-N folder, or 'latest' in --output/checkpoints."
    )
    gradient_accumulation_steps: int = _option(1, "Batches per optimiser step.", min=1)
    bf16: bool = _option(False, "bfloat16 mixed precision (autocast; CUDA or CPU).")
    fp16: bool = _option(False, "float16 mixed precision with loss scaling (CUDA only; the original's AMP).")
    seed: int = _option(0, "Random seed (clip sampling, augmentation, the re-initialised class head).")
    progress: bool = _option(True, "Show progress bars.")


__all__ = ["VideoFineTuneOptions"]
