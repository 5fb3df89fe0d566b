"""``visionports detect IMAGES... --model DIR``: boxes on images, pictures and JSON."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from .common import device_options, model_option, speed_options
from .distributed import echo_ray_run, ray_options, ray_run_options


@click.command()
@click.argument("inputs", metavar="IMAGES...", nargs=-1, required=True)
@model_option()
@device_options
@click.option("--threshold", default=0.5, show_default=True, type=click.FloatRange(0.0, 1.0),
              help="Minimum score of a reported detection.")  # fmt: skip
@click.option("--output", "output_dir", default="detections", show_default=True,
              help="Folder for annotated PNGs and detections.json (with --ray: a folder or URL for the shards).")  # fmt: skip
@click.option("--batch-size", default=4, show_default=True, type=click.IntRange(min=1))
@click.option("--format", "output_format", type=click.Choice(["visionports", "coco"]), default="visionports",
              show_default=True, help="coco: also write detections.coco.json (COCO results: images, categories, "
              "annotations; see docs/results.md).")  # fmt: skip
@speed_options
@ray_options
@click.pass_context
def detect(ctx: click.Context, inputs: tuple[str, ...], model_dir: Path, device: str, dtype: str, threshold: float,
           output_dir: str, batch_size: int, output_format: str, backend: str, deploy: bool, compile_model: bool, **ray: Any) -> None:  # fmt: skip
    """Detect objects in IMAGES (files or folders; with --ray also globs, manifest files and URLs); write
    annotated pictures and JSON results."""
    task_options = {"threshold": threshold, "device": device, "dtype": dtype, "backend": backend, "deploy": deploy,
                    "compile_model": compile_model}  # fmt: skip
    options = ray_run_options(ctx, ray, batch_size)
    if options is not None:
        return _on_ray(inputs, model_dir, output_dir, options, output_format, task_options)
    from ..tasks.detect import detect_files

    run = detect_files(inputs, model_dir, output_dir, batch_size=batch_size, output_format=output_format,
                       **task_options)  # fmt: skip
    total = sum(len(v) for v in run.entries.values())
    resumed = f" ({run.resumed} kept from an interrupted run)" if run.resumed else ""
    click.echo(
        f"{len(run.pictures)} image(s){resumed}, {total} detection(s) -> {output_dir} "
        f"(pictures + {run.json_path.name}{' + ' + run.coco_path.name if run.coco_path else ''})"
    )


def _on_ray(inputs, model_dir, output, options, output_format: str, task_options: dict) -> None:
    from ..distributed.ray_runner import run_image_task_on_ray
    from ..tasks.detect import detection_task

    if output_format != "visionports":
        raise click.BadParameter(
            "applies to a local run (Ray records carry COCO bbox already)", param_hint="--format"
        )
    echo_ray_run(run_image_task_on_ray(detection_task(**task_options), inputs, model_dir, output, options))
