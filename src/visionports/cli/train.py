"""``visionports train --model DIR --data DATA_DIR --output DIR``: fine-tuning with the original recipe.

The family comes from ``--model``: a DEIMv2 detector trains on a COCO-format folder, a VidEoMT model on a
YouTube-VIS-format folder. Options shared by both (``--epochs``, ``--lr`` ...) take the family's own default
when not given; an option of the other family only is refused.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import click

from ..models.deimv2.train_options_deimv2 import FineTuneOptions
from ..models.videomt.train_options_videomt import VideoFineTuneOptions
from .common import ModelFolderCommand, dataclass_options, model_option
from .evaluate import data_option

OPTIONS = {"deimv2": FineTuneOptions, "videomt": VideoFineTuneOptions}  # family -> its settings
_DETECTOR_FIELDS = {f.name for f in dataclasses.fields(FineTuneOptions)}


@click.command(cls=ModelFolderCommand)
@model_option("A converted (or fine-tuned) DEIMv2 detector or VidEoMT folder to start from.")
@data_option("DEIMv2: COCO-format folder, annotations/instances_train.json (+ _val.json) and the images. "
             "VidEoMT: YouTube-VIS-format folder, train.json (+ valid.json) and train/JPEGImages/.")  # fmt: skip
@click.option("--output", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for the fine-tuned model and checkpoints/.")  # fmt: skip
@dataclass_options(FineTuneOptions, skip=("progress",))
@dataclass_options(VideoFineTuneOptions, skip=tuple(_DETECTOR_FIELDS))
@click.option("--evaluate/--no-evaluate", default=True, show_default=True,
              help="Print the validation metrics (COCO AP on instances_val.json; YouTube-VIS AP on valid.json) "
              "when the data set has them.")  # fmt: skip
@click.option("--overwrite", is_flag=True, help="Replace a non-empty --output folder.")
@click.pass_context
def train(
    ctx: click.Context, model_dir: Path, data_dir: Path, output: Path, evaluate: bool, overwrite: bool,
    **settings: Any,
) -> None:  # fmt: skip
    """Fine-tune the model in --model (DEIMv2: transformers Trainer, EMA, the original recipe; VidEoMT: the
    original's clip sampling, loss, layer-wise decay and two-stage schedule). Defaults shown are DEIMv2's; a
    VidEoMT model takes its own recipe for options left unset. Under torchrun each process trains on
    --batch-size images (clips) per step; only the first writes and prints."""
    from ..core.files import require_family_folder

    _, family = require_family_folder(model_dir, "train")
    options = family_options(ctx, family.name, settings)
    if family.name == "videomt":
        _train_videomt(model_dir, data_dir, output, options, evaluate, overwrite)
    else:
        _train_deimv2(model_dir, data_dir, output, options, evaluate, overwrite)


def family_options(ctx: click.Context, family: str, settings: dict[str, Any]) -> Any:
    """The family's options dataclass from the command's values: the user's where given, else the family's
    defaults; an option the family does not take is refused when the user gave it."""
    kind = OPTIONS[family]
    fields = {f.name for f in dataclasses.fields(kind)}
    given = {
        name for name in settings if ctx.get_parameter_source(name) is click.core.ParameterSource.COMMANDLINE
    }
    foreign = sorted(given - fields)
    if foreign:
        from ..training.fine_tuning import TrainingOptionError

        flag = "--" + foreign[0].replace("_", "-")
        raise TrainingOptionError(f"{flag} applies to {_other(family)} models, not {family}")
    values = {
        name: settings[name] for name in fields & set(settings) if name in given or kind is FineTuneOptions
    }
    return kind(**values)


def _other(family: str) -> str:
    return next(name for name in OPTIONS if name != family)


def _train_deimv2(
    model_dir: Path, data_dir: Path, output: Path, options: FineTuneOptions, evaluate: bool, overwrite: bool
) -> None:
    from ..data.coco_evaluation import evaluate_folder, format_metrics
    from ..training.fine_tuning import fine_tune

    summary = fine_tune(model_dir, data_dir, output, options, overwrite=overwrite)
    if not summary["main_process"]:  # under torchrun, the main process alone reports
        return
    click.echo(
        f"fine-tuned: {summary['steps']} steps on {summary['num_images']} images "
        f"({summary['num_classes']} classes), mean loss {summary['train_loss']:.3f} -> {output}"
    )
    if evaluate and (Path(data_dir) / "annotations" / "instances_val.json").is_file():
        click.echo(format_metrics(evaluate_folder(output, data_dir, "val", batch_size=options.batch_size)))


def _train_videomt(
    model_dir: Path,
    data_dir: Path,
    output: Path,
    options: VideoFineTuneOptions,
    evaluate: bool,
    overwrite: bool,
) -> None:
    from ..training.video_fine_tuning import fine_tune_video

    summary = fine_tune_video(model_dir, data_dir, output, options, overwrite=overwrite)
    if not summary["main_process"]:
        return
    click.echo(
        f"fine-tuned: {summary['steps']} steps on {summary['num_videos']} videos "
        f"({summary['num_classes']} classes), mean loss {summary['train_loss']:.3f} -> {output}"
    )
    if evaluate and (Path(data_dir) / "valid.json").is_file():
        from ..data.video_evaluation import evaluate_video_folder, format_video_metrics

        click.echo(format_video_metrics(evaluate_video_folder(output, data_dir, "valid").metrics))
