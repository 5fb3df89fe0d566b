"""``visionports evaluate --model DIR --data COCO_DIR``: the COCO box AP table (pycocotools)."""

from __future__ import annotations

from pathlib import Path

import click

from .common import ModelFolderCommand, device_options, model_option


def data_option(help_text: str) -> click.Option:
    return click.option("--data", "data_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
                        help=help_text)  # fmt: skip


@click.command(cls=ModelFolderCommand)
@model_option("A converted or fine-tuned detector folder.")
@device_options
@data_option("COCO-format folder: annotations/instances_{split}.json and the images.")
@click.option("--split", default="val", show_default=True, help="Which annotations/instances_{split}.json.")
@click.option("--batch-size", default=4, show_default=True, type=click.IntRange(min=1))
def evaluate(model_dir: Path, device: str, dtype: str, data_dir: Path, split: str, batch_size: int) -> None:
    """Print the COCO box AP table of the detector in --model on a COCO-format data set."""
    from ..data.coco_evaluation import evaluate_folder, format_metrics

    metrics = evaluate_folder(model_dir, data_dir, split, batch_size=batch_size, device=device, dtype=dtype)
    click.echo(format_metrics(metrics))
