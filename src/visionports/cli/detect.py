"""``visionports detect IMAGES... --model DIR``: boxes on images, pictures and JSON."""

from __future__ import annotations

from pathlib import Path

import click

from .common import device_options, model_option


@click.command()
@click.argument("inputs", metavar="IMAGES...", nargs=-1, required=True, type=click.Path(path_type=Path))
@model_option()
@device_options
@click.option("--threshold", default=0.5, show_default=True, type=click.FloatRange(0.0, 1.0),
              help="Minimum score of a reported detection.")  # fmt: skip
@click.option("--output", "output_dir", default=Path("detections"), show_default=True,
              type=click.Path(file_okay=False, path_type=Path),
              help="Folder for annotated PNGs and detections.json.")  # fmt: skip
@click.option("--batch-size", default=4, show_default=True, type=click.IntRange(min=1))
@click.option("--format", "output_format", type=click.Choice(["visionports", "coco"]), default="visionports",
              show_default=True, help="coco: also write detections.coco.json (COCO results: images, categories, "
              "annotations; see docs/results.md).")  # fmt: skip
def detect(inputs: tuple[Path, ...], model_dir: Path, device: str, dtype: str, threshold: float, output_dir: Path,
           batch_size: int, output_format: str) -> None:  # fmt: skip
    """Detect objects in IMAGES (files or folders); write annotated pictures and JSON results."""
    from ..tasks.detect import detect_files

    run = detect_files(inputs, model_dir, output_dir, threshold=threshold, batch_size=batch_size,
                       device=device, dtype=dtype, output_format=output_format)  # fmt: skip
    total = sum(len(v) for v in run.entries.values())
    resumed = f" ({run.resumed} kept from an interrupted run)" if run.resumed else ""
    click.echo(
        f"{len(run.pictures)} image(s){resumed}, {total} detection(s) -> {output_dir} "
        f"(pictures + {run.json_path.name}{' + ' + run.coco_path.name if run.coco_path else ''})"
    )
