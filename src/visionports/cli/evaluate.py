"""``visionports evaluate --model DIR --data DIR``: the metrics of the model's family and task.

DEIMv2 detectors: the COCO box AP table (pycocotools) on a COCO-format folder. VidEoMT video segmenters, by
their task: YouTube-VIS / OVIS AP (instance), VIPSeg VPQ and STQ (panoptic), VSPW mIoU (semantic).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import click

from .common import ModelFolderCommand, device_options, model_option
from .distributed import ray_options, ray_run_options

SHARED = {"model_dir", "device", "dtype", "data_dir", "split"}
VIDEOMT_ONLY = {"max_videos", "chunk", "predictions"}


def data_option(help_text: str) -> click.Option:
    return click.option("--data", "data_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
                        help=help_text)  # fmt: skip


@click.command(cls=ModelFolderCommand)
@model_option("A converted or fine-tuned model folder: a DEIMv2 detector or a VidEoMT video segmenter.")
@device_options
@data_option("DEIMv2: a COCO-format folder (annotations/instances_{split}.json and the images). VidEoMT, by "
             "the model's task: YouTube-VIS / OVIS ({split}.json, {split}/JPEGImages/), VIPSeg "
             "(panoptic_gt_VIPSeg_{split}.json, images/, panomasksRGB/) or VSPW ({split}.txt, data/).")  # fmt: skip
@click.option("--split", help="Which split of --data.  [default: val; VidEoMT: valid for YouTube-VIS / OVIS, "
              "val for VIPSeg / VSPW, the other of the two when missing]")  # fmt: skip
@click.option("--batch-size", default=4, show_default=True, type=click.IntRange(min=1), help="DEIMv2 only.")
@click.option("--output", help="DEIMv2 with --ray: folder or URL for the prediction shards (a re-run resumes "
              "from them; default: a temporary folder).")  # fmt: skip
@click.option(
    "--max-videos", type=click.IntRange(min=1), help="VidEoMT: only the first N videos (a quick run)."
)
@click.option("--chunk", default=1, show_default=True, type=click.IntRange(min=1),
              help="VidEoMT: frames per model call, the state carried between calls (1: frame by frame, as the "
              "original evaluation; more is faster, the same up to float round-off).")  # fmt: skip
@click.option("--predictions", type=click.Path(dir_okay=False, path_type=Path),
              help="VidEoMT instance models: also write the predictions as a YouTube-VIS results JSON (to "
              "submit to the evaluation server; required for a split without annotations).")  # fmt: skip
@ray_options
@click.pass_context
def evaluate(ctx: click.Context, model_dir: Path, device: str, dtype: str, data_dir: Path, split: str | None,
             batch_size: int, output: str | None, max_videos: int | None, chunk: int, predictions: Path | None,
             **ray: Any) -> None:  # fmt: skip
    """Print the metrics table of the model in --model on --data: COCO box AP (DEIMv2); YouTube-VIS / OVIS AP,
    VIPSeg VPQ and STQ, or VSPW mIoU by the model's task (VidEoMT)."""
    from ..core.files import require_family_folder

    _, family = require_family_folder(model_dir, "evaluate")
    _refuse_other_family_options(ctx, family.name, family.display_name)
    if family.name == "videomt":
        _evaluate_videomt(model_dir, data_dir, split, max_videos, predictions, chunk, device, dtype)
    else:
        _evaluate_coco(ctx, model_dir, data_dir, split or "val", batch_size, output, ray, device, dtype)


def _refuse_other_family_options(ctx: click.Context, family: str, display_name: str) -> None:
    """One ``Error:`` line naming the first option given that the loaded family does not take."""
    takes = (
        SHARED | VIDEOMT_ONLY if family == "videomt" else {p.name for p in ctx.command.params} - VIDEOMT_ONLY
    )
    for param in ctx.command.params:
        given = ctx.get_parameter_source(param.name) not in (None, click.core.ParameterSource.DEFAULT)
        if given and param.name not in takes:
            raise click.ClickException(f"{param.opts[0]} does not apply to {display_name} models")


def _evaluate_videomt(model_dir: Path, data_dir: Path, split: str | None, max_videos: int | None,
                      predictions: Path | None, chunk: int, device: str, dtype: str) -> None:  # fmt: skip
    from ..data.video_evaluation import DATA_SETS, evaluate_video_folder, format_video_metrics

    run = evaluate_video_folder(model_dir, data_dir, split, max_videos, predictions, chunk, device=device,
                                dtype=dtype)  # fmt: skip
    if run.metrics:
        click.echo(format_video_metrics(run.metrics))
    else:
        click.echo(f"{DATA_SETS[run.task]} split {run.split!r} has no ground truth: no metrics")
    if run.predictions is not None:
        click.echo(f"{run.videos} video(s) -> {run.predictions}")


def _evaluate_coco(ctx: click.Context, model_dir: Path, data_dir: Path, split: str, batch_size: int,
                   output: str | None, ray: dict[str, Any], device: str, dtype: str) -> None:  # fmt: skip
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
