"""``visionports evaluate --model DIR --data COCO_DIR``: the COCO box AP table (pycocotools)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import click

from .common import ModelFolderCommand, device_options, model_option
from .distributed import ray_options, ray_run_options


def data_option(help_text: str) -> click.Option:
    return click.option("--data", "data_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
                        help=help_text)  # fmt: skip


@click.command(cls=ModelFolderCommand)
@model_option("A converted or fine-tuned detector folder.")
@device_options
@data_option("COCO-format folder: annotations/instances_{split}.json and the images.")
@click.option("--split", default="val", show_default=True, help="Which annotations/instances_{split}.json.")
@click.option("--batch-size", default=4, show_default=True, type=click.IntRange(min=1))
@click.option("--output", help="With --ray: folder or URL for the prediction shards (a re-run resumes from them; "
              "default: a temporary folder).")  # fmt: skip
@ray_options
@click.pass_context
def evaluate(ctx: click.Context, model_dir: Path, device: str, dtype: str, data_dir: Path, split: str, batch_size: int,
             output: str | None, **ray: Any) -> None:  # fmt: skip
    """Print the COCO box AP table of the detector in --model on a COCO-format data set."""
    from ..data.coco_evaluation import evaluate_folder, evaluate_on_ray, format_metrics

    options = ray_run_options(ctx, ray, batch_size)
    if options is None and output is not None:
        raise click.BadParameter("applies with --ray only", param_hint="--output")
    if options is None:
        metrics = evaluate_folder(
            model_dir, data_dir, split, batch_size=batch_size, device=device, dtype=dtype
        )
    elif output is None:
        with tempfile.TemporaryDirectory() as tmp:
            metrics = evaluate_on_ray(model_dir, data_dir, Path(tmp) / "shards", options, split, device=device,
                                      dtype=dtype)  # fmt: skip
    else:
        metrics = evaluate_on_ray(model_dir, data_dir, output, options, split, device=device, dtype=dtype)
    click.echo(format_metrics(metrics))
