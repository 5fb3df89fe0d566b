"""Fine-tuning a VidEoMT model on a YouTube-VIS-format folder, on one process or several (``torchrun``).

The same run discipline as the detector's (:mod:`.fine_tuning`): every process checks the options and the output
folder first; the main process alone replaces, writes and locks ``output``; checkpoints go to
``output/checkpoints`` and a run resumes from them; the final model and processor are written atomically.
There is no EMA (the original keeps none).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..models.videomt.train_options_videomt import VideoFineTuneOptions
from . import distributed
from .fine_tuning import (
    check_output,
    check_run_options,
    claim_output,
    resolve_resume,
    save_final,
    training_arguments,
)


def fine_tune_video(
    model_dir: str | Path,
    data_dir: str | Path,
    output: str | Path,
    options: VideoFineTuneOptions,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Fine-tune the VidEoMT model in ``model_dir`` on ``data_dir`` (YouTube-VIS layout, split ``train``);
    write the model and its processor to ``output`` (with the trainer's ``checkpoints/``). Returns a summary
    (``main_process``: whether this process is the one that should report it)."""
    from transformers import Trainer

    from ..data.video_clips import YtvisClipDataset, collate_video_clips
    from ..data.ytvis import load_ytvis_split
    from ..models.videomt.train_videomt import VideoSchedule, load_for_data, steps_per_epoch

    output = Path(output)
    check_run_options(options, overwrite)
    check_output(output, overwrite, options.resume is not None, (Path(model_dir), Path(data_dir)))
    checkpoint = resolve_resume(output, options.resume)
    split = load_ytvis_split(data_dir, "train")
    torch.manual_seed(options.seed)  # the re-initialised class head starts alike on every process
    model, processor = load_for_data(model_dir, split.category_ids, split.category_names)
    dataset = YtvisClipDataset(
        split, processor, frames=options.clip_frames, frame_range=options.frame_range,
        size_scale=options.size_scale, seed=options.seed,
    )  # fmt: skip
    if len(dataset) == 0:
        raise ValueError(f"{split.annotation_file}: no video with an annotated track to train on")
    epoch_steps = steps_per_epoch(len(dataset), options, distributed.world_size())
    schedule = VideoSchedule.resolve(options, epoch_steps)
    args = training_arguments(output, options, epoch_steps)
    _ = args.device  # sets up the process group (under a launcher) before the barriers below
    with claim_output(output, replace=overwrite):
        trainer = Trainer(
            model=model, args=args, train_dataset=dataset, data_collator=collate_video_clips,
            processing_class=processor, optimizers=schedule.optimizers(model),
        )  # fmt: skip
        result = trainer.train(resume_from_checkpoint=checkpoint)
        if distributed.is_main_process():
            save_final(model, processor, output)
        distributed.barrier()
    return {
        "steps": result.global_step,
        "train_loss": result.training_loss,
        "num_videos": len(dataset),
        "num_classes": model.config.num_labels,
        "lr": schedule.lr,
        "output": str(output),
        "processes": distributed.world_size(),
        "main_process": distributed.is_main_process(),
    }


__all__ = ["fine_tune_video"]
