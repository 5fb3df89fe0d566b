"""Fine-tuning a DEIMv2 detector on one process or several (``torchrun``), resumable, optionally mixed-precision.

Every process checks the options and the output folder (read-only, so a bad input fails everywhere before
anything is written); the main process alone replaces, writes and locks ``output``, the others wait at a
barrier until it is ready and again until the final model is in place.
"""

from __future__ import annotations

import contextlib
import math
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback, TrainingArguments
from transformers.trainer_utils import get_last_checkpoint

from ..core.errors import OutputFolderError, VisionportsError
from ..core.files import (
    is_within,
    make_temporary_sibling_dir,
    output_lock,
    remove_stale_siblings,
    swap_into_place,
)
from ..models.deimv2.train_options_deimv2 import FineTuneOptions
from . import distributed


class TrainingOptionError(VisionportsError, ValueError):
    """A fine-tuning option that cannot be honoured here; the message names the option."""


def check_run_options(options: Any, overwrite: bool) -> None:
    """Refuse the precision and resume combinations this machine cannot run (options of every family)."""
    if options.bf16 and options.fp16:
        raise TrainingOptionError("--bf16 and --fp16 exclude each other; choose one")
    if options.fp16 and not torch.cuda.is_available():
        raise TrainingOptionError("--fp16 needs a CUDA GPU; use --bf16 for mixed precision on CPU")
    if options.resume is not None and overwrite:
        raise TrainingOptionError(
            "--resume continues the run in --output; it cannot be combined with --overwrite"
        )


def check_options(options: FineTuneOptions, overwrite: bool) -> None:
    """Refuse option combinations this machine or launch cannot run."""
    check_run_options(options, overwrite)
    if options.sync_bn and distributed.world_size() > 1 and not torch.cuda.is_available():
        raise TrainingOptionError("--sync-bn needs CUDA GPUs (SyncBatchNorm does not run on CPU)")
    _check_augmentation(options)


AUGMENT_MODES = ("recipe", "flip", "none")
RECIPE_ONLY_OPTIONS = ("augment_epochs", "mosaic_prob", "mixup_prob", "mixup_epochs", "copyblend_prob",
                       "copyblend_epochs", "multiscale_stop_epoch")  # fmt: skip


def augment_mode(options: FineTuneOptions) -> str:
    """``--augment``, or when unset: ``flip`` if ``--hflip`` asks for flips, else ``none`` (the old default)."""
    if options.augment is not None:
        return options.augment
    return "flip" if options.horizontal_flip else "none"


def parse_epochs(value: str | None, count: int, option: str) -> tuple[int, ...] | None:
    """``"a,b[,c]"`` -> ``count`` non-negative, non-decreasing epochs (``None`` stays ``None``)."""
    if value is None:
        return None
    try:
        epochs = tuple(int(part) for part in str(value).split(","))
    except ValueError:
        epochs = ()
    if len(epochs) != count or min(epochs) < 0 or list(epochs) != sorted(epochs):
        shape = ",".join(["START", "MOSAIC_STOP", "STOP"] if count == 3 else ["START", "STOP"])
        raise TrainingOptionError(
            f"{option} must be {count} non-decreasing epochs {shape} (0-based, comma-separated), got {value!r}"
        )
    return epochs


def _check_augmentation(options: FineTuneOptions) -> None:
    if options.augment is not None and options.augment not in AUGMENT_MODES:
        raise TrainingOptionError(
            f"--augment must be one of {', '.join(AUGMENT_MODES)}; got {options.augment!r}"
        )
    mode = augment_mode(options)
    if mode == "none" and options.horizontal_flip:
        raise TrainingOptionError("--hflip flips images; --augment none does not: drop one of them")
    given = [name for name in RECIPE_ONLY_OPTIONS if getattr(options, name) is not None]
    if given and mode != "recipe":
        flag = "--" + given[0].replace("_", "-")
        raise TrainingOptionError(f"{flag} only applies with --augment recipe (here: {mode})")
    parse_epochs(options.augment_epochs, 3, "--augment-epochs")
    parse_epochs(options.mixup_epochs, 2, "--mixup-epochs")
    parse_epochs(options.copyblend_epochs, 2, "--copyblend-epochs")


class AugmentationEpochCallback(TrainerCallback):
    """Tells the data set and the collate function the epoch that starts (0-based), before its first batch."""

    def __init__(self, *targets: Any) -> None:
        self.targets = targets

    def on_epoch_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        epoch = math.floor((state.epoch or 0.0) + 1e-9)  # a resumed run starts inside its epoch
        for target in self.targets:
            target.set_epoch(epoch)


def check_output(output: Path, overwrite: bool, resume: bool, protect: tuple[Path, ...] = ()) -> None:
    """Refuse an ``output`` that must not be written, or replaced without ``overwrite``."""
    if os.path.lexists(output) and not output.is_dir():
        raise OutputFolderError(f"--output {output} exists and is not a folder")
    for path in (Path.cwd(), *protect):
        if is_within(Path(os.path.abspath(path)), Path(os.path.abspath(output))):
            raise OutputFolderError(f"--output {output} holds {path}; name another folder")
    if not output.is_dir() or not any(output.iterdir()):
        return
    if resume and not (output / "checkpoints").is_dir():
        raise OutputFolderError(
            f"--resume: {output} is not empty and holds no checkpoints/; name another --output"
        )
    if not resume and not overwrite:
        raise FileExistsError(f"{output} exists and is not empty; pass --overwrite to replace it")


def resolve_resume(output: Path, resume: str | None) -> str | None:
    """The checkpoint folder ``--resume`` names (``latest``: the newest in ``output/checkpoints``)."""
    if resume is None:
        return None
    if resume == "latest":
        folder = output / "checkpoints"
        found = get_last_checkpoint(str(folder)) if folder.is_dir() else None
        if found is None:
            raise TrainingOptionError(f"--resume latest: no checkpoint-N folder in {folder}")
        return found
    if not (Path(resume) / "trainer_state.json").is_file():
        raise TrainingOptionError(
            f"--resume {resume}: not a trainer checkpoint folder (no trainer_state.json)"
        )
    return str(resume)


def steps_per_epoch(num_images: int, options: FineTuneOptions, processes: int) -> int:
    """Optimiser steps in one pass over the data by all processes together."""
    batches = math.ceil(num_images / (options.batch_size * processes))
    return max(batches // options.gradient_accumulation_steps, 1)


def training_arguments(output: Path, options: FineTuneOptions, epoch_steps: int) -> TrainingArguments:
    """The trainer's arguments: checkpoints in ``output/checkpoints``, mixed precision as asked."""
    save_steps = options.save_steps or epoch_steps * options.save_every_epochs
    return TrainingArguments(
        output_dir=str(output / "checkpoints"),
        num_train_epochs=options.epochs,
        max_steps=options.max_steps,
        per_device_train_batch_size=options.batch_size,
        gradient_accumulation_steps=options.gradient_accumulation_steps,
        max_grad_norm=options.max_grad_norm,
        logging_steps=max(1, epoch_steps // 4),
        save_strategy="steps",
        save_steps=max(1, save_steps),
        save_total_limit=2,
        remove_unused_columns=False,
        report_to="none",
        seed=options.seed,
        dataloader_num_workers=0,
        disable_tqdm=not options.progress,
        use_cpu=not torch.cuda.is_available(),
        bf16=options.bf16,
        fp16=options.fp16,
    )


@contextlib.contextmanager
def claim_output(output: Path, replace: bool) -> Iterator[None]:
    """On the main process: lock ``output`` for the run and make it (``replace``: an empty one swapped in for
    the old, which is deleted). Every process leaves the block's start only once ``output`` is ready."""
    if not distributed.is_main_process():
        distributed.barrier()
        yield
        return
    output = Path(os.path.abspath(output))
    with output_lock(output):
        remove_stale_siblings(output)
        if replace and output.exists():
            swap_into_place(make_temporary_sibling_dir(output), output)
        output.mkdir(parents=True, exist_ok=True)
        distributed.barrier()
        yield


def fine_tune(model_dir: str | Path, data_dir: str | Path, output: str | Path, options: FineTuneOptions,
              overwrite: bool = False) -> dict[str, Any]:  # fmt: skip
    """Fine-tune the detector in ``model_dir`` on ``data_dir`` (COCO format); write the EMA model to ``output``.

    ``output`` receives a ``from_pretrained`` folder (model, config, image processor) and ``checkpoints/``
    (the trainer's ``checkpoint-N`` folders, each with its EMA model under ``ema/``). Under a launcher every
    process trains on its share of each step; only the main process writes. Returns a summary
    (``main_process``: whether this process is the one that should report it).
    """
    from ..data.coco_dataset import load_coco_split
    from ..models.deimv2.train_deimv2 import DetectionTrainer, Schedule, load_for_data
    from .ema import EMACallback

    output = Path(output)
    check_options(options, overwrite)
    check_output(output, overwrite, options.resume is not None, (Path(model_dir), Path(data_dir)))
    checkpoint = resolve_resume(output, options.resume)
    split = load_coco_split(data_dir, "train")
    if not split.images:
        raise ValueError(f"{split.annotation_file} lists no images")
    torch.manual_seed(options.seed)  # heads re-initialised for the data set's classes start alike everywhere
    model, processor = load_for_data(model_dir, split)
    model = _maybe_sync_batch_norm(model, options.sync_bn)
    epoch_steps = steps_per_epoch(len(split.images), options, distributed.world_size())
    schedule = Schedule.resolve(model.config.variant, options, epoch_steps)
    dataset, collate, callbacks = training_data(split, processor, model.config.variant, options, schedule.total,
                                                epoch_steps)  # fmt: skip
    args = training_arguments(output, options, epoch_steps)
    _ = args.device  # sets up the process group (under a launcher) before the barriers below
    ema = EMACallback(options.ema_decay, options.ema_warmups, processor, resume=checkpoint)
    with claim_output(output, replace=overwrite):
        trainer = DetectionTrainer(model=model, args=args, train_dataset=dataset, data_collator=collate,
                                   processing_class=processor, optimizers=schedule.optimizers(model),
                                   callbacks=[ema, *callbacks])  # fmt: skip
        result = trainer.train(resume_from_checkpoint=checkpoint)
        if distributed.is_main_process():
            save_final(ema.ema.module, processor, output)
        distributed.barrier()
    return {
        "steps": result.global_step,
        "train_loss": result.training_loss,
        "num_images": len(dataset),
        "num_classes": model.config.num_labels,
        "lr": schedule.lr,
        "backbone_lr": schedule.backbone_lr,
        "augment": augment_mode(options),
        "output": str(output),
        "processes": distributed.world_size(),
        "main_process": distributed.is_main_process(),
    }


def training_data(split: Any, processor: Any, variant: str, options: FineTuneOptions, total_steps: int,
                  epoch_steps: int) -> tuple[Any, Any, list[TrainerCallback]]:  # fmt: skip
    """The data set, collate function and epoch callbacks of ``--augment`` (see :func:`augment_mode`)."""
    from ..data.detection_data import CocoDetectionDataset, collate_detection
    from ..data.detection_mixing import RecipeCollate
    from ..data.detection_recipe import RecipeAugmentation
    from ..models.deimv2.train_deimv2 import augmentation_plan

    mode = augment_mode(options)
    if mode != "recipe":
        flip = 0.0 if mode == "none" else 0.5 if options.horizontal_flip is None else options.horizontal_flip
        return CocoDetectionDataset(split, processor, flip, options.seed), collate_detection, []
    run_epochs = math.ceil(total_steps / epoch_steps)
    size = (int(processor.size["height"]), int(processor.size["width"]))
    plan = augmentation_plan(variant, options, run_epochs, size)
    rank = distributed.rank()
    dataset = CocoDetectionDataset(split, processor, seed=options.seed, augmentation=RecipeAugmentation(plan),
                                   rank=rank)  # fmt: skip
    collate = RecipeCollate(plan, options.seed, rank)
    return dataset, collate, [AugmentationEpochCallback(dataset, collate)]


def _maybe_sync_batch_norm(model: torch.nn.Module, enabled: bool) -> torch.nn.Module:
    if not enabled:
        return model
    if distributed.world_size() == 1:
        warnings.warn(
            "--sync-bn: a single process has nothing to synchronise; BatchNorm is kept", stacklevel=3
        )
        return model
    return distributed.sync_batch_norm(model)


def save_final(model: torch.nn.Module, processor: Any, output: Path) -> None:
    """The model and processor into ``output``, each file complete before it appears there."""
    import shutil

    final = make_temporary_sibling_dir(output / "model")
    try:
        model.save_pretrained(final)
        processor.save_pretrained(final)
        for item in final.iterdir():
            item.replace(output / item.name)
    finally:
        shutil.rmtree(final, ignore_errors=True)


__all__ = [
    "AUGMENT_MODES",
    "AugmentationEpochCallback",
    "TrainingOptionError",
    "augment_mode",
    "check_options",
    "check_run_options",
    "check_output",
    "fine_tune",
    "parse_epochs",
    "resolve_resume",
    "save_final",
    "steps_per_epoch",
    "training_arguments",
    "training_data",
]
