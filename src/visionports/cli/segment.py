"""``visionports segment IMAGES... --prompt TEXT --model DIR``: text-prompted masks, pictures and JSON."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from .common import device_options, model_option, speed_options
from .distributed import echo_ray_run, ray_options, ray_run_options


def coordinates(count: int) -> Any:
    """A click callback: each ``X,Y[,X2,Y2]`` value as ``count`` floats (one ``Error:`` line naming the option)."""
    shape = "X1,Y1,X2,Y2" if count == 4 else "X,Y"

    def parse(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> list[list[float]]:
        parsed = []
        for value in values:
            try:
                numbers = [float(part) for part in value.split(",")]
            except ValueError:
                numbers = []
            if len(numbers) != count:
                raise click.BadParameter(f"expected {shape} (pixels), got {value!r}", ctx, param)
            parsed.append(numbers)
        return parsed

    return parse


def prompt_geometry(
    boxes: list, negative_boxes: list, points: list, negative_points: list
) -> dict[str, list]:
    """The pipeline's geometry arguments of the positive and negative boxes and points (empty when none)."""
    geometry: dict[str, list] = {}
    for name, positive, negative in (("input_boxes", boxes, negative_boxes), ("input_points", points,
                                                                                negative_points)):  # fmt: skip
        if positive or negative:
            geometry[name] = [*positive, *negative]
            geometry[f"{name}_labels"] = [1] * len(positive) + [0] * len(negative)
    return geometry


@click.command()
@click.argument("inputs", metavar="IMAGES...", nargs=-1, required=True)
@click.option("--prompt", "prompts", multiple=True, help="A text prompt (repeat for several).")
@click.option("--box", "boxes", multiple=True, callback=coordinates(4),
              help="A box exemplar X1,Y1,X2,Y2 in pixels: more like this (repeat for several).")  # fmt: skip
@click.option("--negative-box", "negative_boxes", multiple=True, callback=coordinates(4),
              help="A box X1,Y1,X2,Y2 of what not to find.")  # fmt: skip
@click.option("--point", "points", multiple=True, callback=coordinates(2), help="A point X,Y on an example.")
@click.option("--negative-point", "negative_points", multiple=True, callback=coordinates(2),
              help="A point X,Y on what not to find.")  # fmt: skip
@click.option("--single-object", is_flag=True,
              help="The --point clicks and one --box outline ONE object: its mask (SAM 1 task; needs the tracker "
              "weights).")  # fmt: skip
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
def segment(ctx: click.Context, inputs: tuple[str, ...], prompts: tuple[str, ...], boxes: list, negative_boxes: list,
            points: list, negative_points: list, single_object: bool, model_dir: Path, device: str, dtype: str,
            backend: str,
            deploy: bool, compile_model: bool, output_dir: str, threshold: float | None, output_format: str,
            batch_size: int, **ray: Any) -> None:  # fmt: skip
    """Segment what the --prompt texts describe in IMAGES (files or folders; with --ray also globs, manifest
    files and URLs)."""
    geometry = prompt_geometry(boxes, negative_boxes, points, negative_points)
    if not prompts and not geometry and not single_object:
        raise click.UsageError("give a --prompt text, or --box / --point exemplars")
    options = ray_run_options(ctx, ray, batch_size)
    if options is not None:
        from ..distributed.ray_runner import run_image_task_on_ray
        from ..tasks.segment_images import segmentation_task

        if output_format != "visionports":
            raise click.BadParameter(
                "applies to a local run (Ray records carry COCO RLE masks)", param_hint="--format"
            )
        task = segmentation_task(list(prompts), threshold, device, dtype, "visionports", backend, deploy,
                                 compile_model, geometry, single_object)  # fmt: skip
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
        geometry=geometry,
        single_object=single_object,
    )
    resumed = f" ({summary.resumed} kept from an interrupted run)" if summary.resumed else ""
    click.echo(
        f"{summary.images} image(s){resumed}, {summary.instances} instance(s) -> {summary.output_dir}"
        + (f" (+ {summary.coco_path.name})" if summary.coco_path else "")
    )
