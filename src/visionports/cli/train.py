"""``visionports train --model DIR --data COCO_DIR --output DIR``: fine-tuning with the original recipe."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ..models.deimv2.train_options_deimv2 import FineTuneOptions
from .common import ModelFolderCommand, dataclass_options, model_option
from .evaluate import data_option


@click.command(cls=ModelFolderCommand)
@model_option("A converted (or fine-tuned) detector folder to start from.")
@data_option("COCO-format folder: annotations/instances_train.json (+ _val.json) and the images.")
@click.option("--output", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for the fine-tuned model (EMA weights) and checkpoints/.")  # fmt: skip
@dataclass_options(FineTuneOptions, skip=("progress",))
@click.option("--evaluate/--no-evaluate", default=True, show_default=True,
              help="Print the COCO AP table on annotations/instances_val.json when present.")  # fmt: skip
@click.option("--overwrite", is_flag=True, help="Replace a non-empty --output folder.")
def train(
    model_dir: Path, data_dir: Path, output: Path, evaluate: bool, overwrite: bool, **settings: Any
) -> None:
    """Fine-tune the detector in --model on a COCO-format data set (transformers Trainer, EMA, the original
    recipe; options left unset take the variant's recipe). Under torchrun each process trains on --batch-size
    images per step; only the first writes and prints."""
    from ..data.coco_evaluation import evaluate_folder, format_metrics
    from ..training.fine_tuning import fine_tune

    summary = fine_tune(model_dir, data_dir, output, FineTuneOptions(**settings), overwrite=overwrite)
    if not summary["main_process"]:  # under torchrun, the main process alone reports
        return
    click.echo(
        f"fine-tuned: {summary['steps']} steps on {summary['num_images']} images "
        f"({summary['num_classes']} classes), mean loss {summary['train_loss']:.3f} -> {output}"
    )
    if evaluate and (Path(data_dir) / "annotations" / "instances_val.json").is_file():
        click.echo(
            format_metrics(evaluate_folder(output, data_dir, "val", batch_size=settings["batch_size"]))
        )
