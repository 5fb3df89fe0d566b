"""``visionports export --model DIR --output MODEL.onnx``: an ONNX graph of a detector folder."""

from __future__ import annotations

from pathlib import Path

import click

from .common import ModelFolderCommand, model_option


@click.command(cls=ModelFolderCommand, legacy_positionals=("--model", "--output"))
@model_option()
@click.option("--output", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The ONNX file to write.")  # fmt: skip
@click.option("--dynamic-batch/--static-batch", default=True, show_default=True, help="Dynamic batch axis.")
@click.option("--postprocess", is_flag=True,
              help="Take orig_target_sizes (w, h) and return labels, boxes (absolute xyxy), scores (top-k, no NMS).")  # fmt: skip
@click.option(
    "--opset", default=18, show_default=True, type=click.IntRange(min=17), help="ONNX opset version."
)
@click.option(
    "--image-size", type=int, nargs=2, metavar="H W", help="Input size (default: the model's eval size)."
)
@click.option("--overwrite", is_flag=True, help="Replace --output if it exists.")
def export(model_dir: Path, output: Path, dynamic_batch: bool, postprocess: bool, opset: int,
           image_size: tuple[int, int] | None, overwrite: bool) -> None:  # fmt: skip
    """Export the detector in --model to an ONNX graph at --output."""
    from transformers import AutoModelForObjectDetection

    from ..core.files import require_family_folder
    from ..models.deimv2.export_deimv2 import export_onnx

    if output.exists() and not overwrite:
        raise click.ClickException(f"--output {output} exists; pass --overwrite to replace it")
    model_dir, family = require_family_folder(model_dir, "export")
    detector = AutoModelForObjectDetection.from_pretrained(model_dir).eval()
    path = export_onnx(
        detector, output, dynamic_batch=dynamic_batch, postprocess=postprocess, opset=opset,
        image_size=tuple(image_size) if image_size else None,
    )  # fmt: skip
    kind = "labels/boxes/scores" if postprocess else "logits/pred_boxes"
    batch = "dynamic" if dynamic_batch else "static"
    click.echo(f"{family.name} -> {path} (opset {opset}, {batch} batch, outputs {kind})")
