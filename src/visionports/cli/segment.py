"""``visionports segment IMAGES... --prompt TEXT --model DIR``: text-prompted masks, pictures and JSON."""

from __future__ import annotations

from pathlib import Path

import click

from .common import device_options, model_option


@click.command()
@click.argument("inputs", metavar="IMAGES...", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--prompt", "prompts", multiple=True, required=True, help="A text prompt (repeat for several).")
@model_option()
@device_options
@click.option("--output", "output_dir", default=Path("segments"), show_default=True,
              type=click.Path(file_okay=False, path_type=Path),
              help="Folder for pictures and segments.json.")  # fmt: skip
@click.option("--threshold", type=click.FloatRange(0.0, 1.0), help="Score threshold (default: the model's).")
@click.option("--format", "output_format", type=click.Choice(["visionports", "coco"]), default="visionports",
              show_default=True, help="coco: also write segments.coco.json (COCO results: images, categories, "
              "annotations; see docs/results.md).")  # fmt: skip
def segment(inputs: tuple[Path, ...], prompts: tuple[str, ...], model_dir: Path, device: str, dtype: str, output_dir: Path,
            threshold: float | None, output_format: str) -> None:  # fmt: skip
    """Segment what the --prompt texts describe in IMAGES (files or folders)."""
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
    )
    resumed = f" ({summary.resumed} kept from an interrupted run)" if summary.resumed else ""
    click.echo(
        f"{summary.images} image(s){resumed}, {summary.instances} instance(s) -> {summary.output_dir}"
        + (f" (+ {summary.coco_path.name})" if summary.coco_path else "")
    )
