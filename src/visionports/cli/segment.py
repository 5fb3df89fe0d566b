"""``visionports segment IMAGES... --prompt TEXT --model DIR``: text-prompted masks, pictures and JSON."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from .common import device_options, model_option, speed_options
from .distributed import echo_ray_run, ray_options, ray_run_options


@click.command()
@click.argument("inputs", metavar="IMAGES...", nargs=-1, required=True)
@click.option("--prompt", "prompts", multiple=True, required=True, help="A text prompt (repeat for several).")
@model_option()
@device_options
@speed_options
@click.option("--output", "output_dir", default="segments", show_default=True,
              help="Folder for pictures and segments.json (with --ray: a folder or URL for the shards).")  # fmt: skip
@click.option("--threshold", type=click.FloatRange(0.0, 1.0), help="Score threshold (default: the model's).")
@click.option("--format", "output_format", type=click.Choice(["visionports", "coco"]), default="visionports",
              show_default=True, help="coco: also write segments.coco.json (COCO results: images, categories, "
              "annotations; see docs/results.md).")  # fmt: skip
@click.option("--batch-size", default=1, show_default=True, type=click.IntRange(min=1),
              help="With --ray: images per model call.")  # fmt: skip
@ray_options
@click.pass_context
def segment(ctx: click.Context, inputs: tuple[str, ...], prompts: tuple[str, ...], model_dir: Path, device: str,
            dtype: str, backend: str, deploy: bool, compile_model: bool, output_dir: str, threshold: float | None,
            output_format: str, batch_size: int, **ray: Any) -> None:  # fmt: skip
    """Segment what the --prompt texts describe in IMAGES (files or folders; with --ray also globs, manifest
    files and URLs)."""
    options = ray_run_options(ctx, ray, batch_size)
    if options is not None:
        from ..distributed.ray_runner import run_image_task_on_ray
        from ..tasks.segment_images import segmentation_task

        if output_format != "visionports":
            raise click.BadParameter(
                "applies to a local run (Ray records carry COCO RLE masks)", param_hint="--format"
            )
        task = segmentation_task(list(prompts), threshold, device, dtype, "visionports", backend, deploy,
                                 compile_model)  # fmt: skip
        return echo_ray_run(run_image_task_on_ray(task, inputs, model_dir, output_dir, options))
    from ..tasks.segment_images import segment_files

    summary = segment_files(
        inputs,
        list(prompts),
        model_dir,
        output_dir,
        threshold=threshold,
        device=device,
        dtype=dtype,
        output_format=output_format,
        backend=backend,
        deploy=deploy,
        compile_model=compile_model,
    )
    resumed = f" ({summary.resumed} kept from an interrupted run)" if summary.resumed else ""
    click.echo(
        f"{summary.images} image(s){resumed}, {summary.instances} instance(s) -> {summary.output_dir}"
        + (f" (+ {summary.coco_path.name})" if summary.coco_path else "")
    )
