"""The ``visionports`` command line."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from .core.registry import family_names, get_family


class FamilyChoice(click.Choice):
    """The registry's families (with hyphenated aliases such as ``sam3-lite-text``), read when a command runs."""

    def __init__(self, extra: tuple[str, ...] = ()) -> None:
        self._extra = tuple(extra)
        super().__init__([], case_sensitive=False)

    @property
    def choices(self) -> tuple[str, ...]:
        return (*family_names(with_aliases=True), *self._extra)

    @choices.setter
    def choices(self, value: object) -> None:  # click.Choice assigns its list; the registry is the source
        pass


def _user_errors() -> tuple[type[BaseException], ...]:
    """What a user's input can cause: one ``Error:`` line and exit 1, never a traceback."""
    from huggingface_hub.errors import StrictDataclassError

    from .core.errors import VisionportsError

    return (VisionportsError, ValueError, TypeError, OSError, ImportError, StrictDataclassError)


class VisionportsGroup(click.Group):
    """Every verb's errors about its inputs (package errors, bad values, files) reported the same way."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except _user_errors() as err:
            raise click.ClickException(str(err)) from err


@click.group(cls=VisionportsGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="visionports")
def main() -> None:
    """Vision models ported into transformers, with parity to their originals."""


@main.command()
@click.argument("model", type=FamilyChoice())
@click.argument("checkpoint", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("output_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--variant", help="Released variant (e.g. atto, s); inferred from the weights when omitted.")
@click.option(
    "--image-size", type=int, help="Default (square) input size, when it differs from the stored anchors."
)
@click.option("--allow-partial", is_flag=True, help="Save even if some weights are missing or unexpected.")
@click.option("--overwrite", is_flag=True, help="Replace OUTPUT_DIR if it exists.")
@click.option(
    "--set",
    "settings",
    multiple=True,
    metavar="KEY=VALUE",
    help="A config value the weights cannot tell (JSON value), e.g. --set num_attention_heads=4.",
)
def convert(
    model: str,
    checkpoint: Path,
    output_dir: Path,
    variant: str | None,
    image_size: int | None,
    allow_partial: bool,
    overwrite: bool,
    settings: tuple[str, ...],
) -> None:
    """Convert an original CHECKPOINT of MODEL into a from_pretrained folder OUTPUT_DIR."""

    from .core.conversion import convert_checkpoint

    overrides = _parse_settings(settings)
    if image_size:
        overrides["eval_image_size"] = [image_size, image_size]
    result = convert_checkpoint(
        get_family(model),
        checkpoint,
        output_dir,
        variant=variant,
        allow_partial=allow_partial,
        overwrite=overwrite,
        config_overrides=overrides or None,
    )
    report = result.report
    name = getattr(result.config, "variant", None) or "custom"
    click.echo(
        f"{model} ({name}): {result.num_parameters:,} parameters, missing {len(report.missing)} / unexpected "
        f"{len(report.unexpected)} / mis-shaped {len(report.mismatched)}, skipped {len(report.skipped)} "
        f"-> {output_dir}"
    )


def _parse_settings(settings: tuple[str, ...]) -> dict:
    import json

    values = {}
    for item in settings:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected KEY=VALUE, got {item!r}", param_hint="--set")
        try:
            values[key] = json.loads(raw)
        except json.JSONDecodeError:
            values[key] = raw
    return values


@main.command()
@click.argument("model", type=FamilyChoice(extra=("packed",)))
@click.argument("case_dir", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option(
    "--float64/--no-float64", default=True, help="Also run the strict float64 check when available."
)
@click.option(
    "--sizes",
    default="224x224,224x336,112x112,448x224",
    help="packed only: image sizes HxW, comma-separated (multiples of the patch size).",
)
def parity(model: str, case_dir: Path, float64: bool, sizes: str) -> None:
    """Check MODEL against a golden CASE_DIR of the original implementation (exit 0 only on parity).

    ``parity packed MODEL_FOLDER`` compares a packed encoder with the standard model image by image.
    """
    if model == "packed":
        _packed_parity(case_dir, sizes)
    from .core.parity import run_parity

    report = run_parity(get_family(model), case_dir, float64=float64)
    click.echo(report.render())
    sys.exit(0 if report.ok else 1)


def _packed_parity(folder: Path, sizes: str) -> None:
    from .models.packed.parity_packed import compare_packed

    try:
        parsed = [tuple(int(v) for v in item.lower().split("x")) for item in sizes.split(",") if item]
    except ValueError as err:
        raise click.BadParameter(
            f"expected sizes like 224x224,224x336, got {sizes!r}", param_hint="--sizes"
        ) from err
    checks = compare_packed(folder, parsed)
    click.echo(f"{'size':>10} {'rows':>6} {'max abs':>10} {'pooled':>10}  result")
    for c in checks:
        pooled = "-" if c.pooled_max_abs is None else f"{c.pooled_max_abs:.2e}"
        result = "pass" if c.passed else "FAIL"
        click.echo(f"{c.size[0]:>4}x{c.size[1]:<5} {c.rows:>6} {c.max_abs:>10.2e} {pooled:>10}  {result}")
    ok = all(c.passed for c in checks)
    click.echo("PARITY OK" if ok else "PARITY FAILED")
    sys.exit(0 if ok else 1)


@main.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--model",
    "model_dir",
    required=True,
    type=click.Path(path_type=Path),
    help="A converted model folder (from `visionports convert`).",
)
@click.option(
    "--threshold",
    default=0.5,
    show_default=True,
    type=click.FloatRange(0.0, 1.0),
    help="Minimum score of a reported detection.",
)
@click.option(
    "--output",
    "output_dir",
    default=Path("detections"),
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for annotated PNGs and detections.json.",
)
@click.option("--batch-size", default=4, show_default=True, type=click.IntRange(min=1))
def detect(
    inputs: tuple[Path, ...], model_dir: Path, threshold: float, output_dir: Path, batch_size: int
) -> None:
    """Detect objects in IMAGE files or folders; write annotated pictures and JSON results."""
    from .tasks.detect import detect_files

    run = detect_files(inputs, model_dir, output_dir, threshold=threshold, batch_size=batch_size)
    total = sum(len(v) for v in run.results.values())
    click.echo(
        f"{len(run.pictures)} image(s), {total} detection(s) -> {output_dir} (pictures + {run.json_path.name})"
    )


@main.command()
@click.argument("model", type=click.Choice(["deimv2"], case_sensitive=False))
@click.argument("model_dir", type=click.Path(file_okay=False, path_type=Path))
@click.argument("output", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--dynamic-batch/--static-batch", default=True, show_default=True, help="Dynamic batch axis.")
@click.option(
    "--postprocess",
    is_flag=True,
    help="Take orig_target_sizes (w, h) and return labels, boxes (absolute xyxy), scores (top-k, no NMS).",
)
@click.option(
    "--opset", default=18, show_default=True, type=click.IntRange(min=17), help="ONNX opset version."
)
@click.option(
    "--image-size", type=int, nargs=2, metavar="H W", help="Input size (default: the model's eval size)."
)
@click.option("--overwrite", is_flag=True, help="Replace OUTPUT if it exists.")
def export(
    model: str,
    model_dir: Path,
    output: Path,
    dynamic_batch: bool,
    postprocess: bool,
    opset: int,
    image_size: tuple[int, int] | None,
    overwrite: bool,
) -> None:
    """Export a converted MODEL_DIR to an ONNX graph at OUTPUT."""
    if output.exists() and not overwrite:
        raise click.ClickException(f"{output} exists; pass --overwrite to replace it")
    from transformers import AutoModelForObjectDetection

    from .core.files import require_model_folder
    from .models.deimv2.export_deimv2 import export_onnx

    require_model_folder(model_dir)
    detector = AutoModelForObjectDetection.from_pretrained(model_dir).eval()
    if detector.config.model_type != "visionports_deimv2":
        raise click.ClickException(
            f"{model_dir}: a {detector.config.model_type} model, expected a DEIMv2 folder"
        )
    path = export_onnx(
        detector, output, dynamic_batch=dynamic_batch, postprocess=postprocess, opset=opset,
        image_size=tuple(image_size) if image_size else None,
    )  # fmt: skip
    kind = "labels/boxes/scores" if postprocess else "logits/pred_boxes"
    batch = "dynamic" if dynamic_batch else "static"
    click.echo(f"deimv2 -> {path} (opset {opset}, {batch} batch, outputs {kind})")


@main.command()
@click.argument("model", type=click.Choice(["deimv2"], case_sensitive=False))
@click.option("--model", "model_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="A converted or fine-tuned detector folder.")  # fmt: skip
@click.option("--data", "data_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="COCO-format folder: annotations/instances_{split}.json and the images.")  # fmt: skip
@click.option("--split", default="val", show_default=True, help="Which annotations/instances_{split}.json.")
@click.option("--batch-size", default=4, show_default=True, type=click.IntRange(min=1))
def evaluate(model: str, model_dir: Path, data_dir: Path, split: str, batch_size: int) -> None:
    """Print the COCO box AP table of a detector folder on a COCO-format data set (pycocotools)."""
    from .data.coco_evaluation import evaluate_folder, format_metrics

    metrics = evaluate_folder(model_dir, data_dir, split, batch_size=batch_size)
    click.echo(format_metrics(metrics))


@main.command()
@click.argument("model", type=click.Choice(["deimv2"], case_sensitive=False))
@click.option("--model", "model_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="A converted (or fine-tuned) detector folder to start from.")  # fmt: skip
@click.option("--data", "data_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="COCO-format folder: annotations/instances_train.json (+ _val.json) and the images.")  # fmt: skip
@click.option("--output", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for the fine-tuned model (EMA weights) and checkpoints/.")  # fmt: skip
@click.option("--epochs", default=12, show_default=True, type=click.IntRange(min=1))
@click.option("--batch-size", default=4, show_default=True, type=click.IntRange(min=1))
@click.option(
    "--lr", type=click.FloatRange(min=0, min_open=True), help="Base learning rate [variant's recipe]."
)
@click.option(
    "--backbone-lr", type=click.FloatRange(min=0), help="Backbone learning rate [recipe ratio to --lr]."
)
@click.option("--weight-decay", type=click.FloatRange(min=0), help="AdamW weight decay [variant's recipe].")
@click.option(
    "--warmup-steps", type=click.IntRange(min=0), help="Quadratic warm-up steps [min(recipe, 10%)]."
)
@click.option(
    "--flat-epochs", type=click.IntRange(min=0), help="Epochs at full learning rate [half the run]."
)
@click.option("--no-aug-epochs", default=0, show_default=True, type=click.IntRange(min=0),
              help="Final epochs at the minimum learning rate.")  # fmt: skip
@click.option("--lr-gamma", type=click.FloatRange(0, 1), help="Minimum / base learning rate [recipe].")
@click.option("--ema-decay", default=0.9999, show_default=True, type=click.FloatRange(0, 1, max_open=True))
@click.option("--ema-warmups", default=1000, show_default=True, type=click.IntRange(min=0))
@click.option("--hflip", default=0.0, show_default=True, type=click.FloatRange(0, 1),
              help="Probability of a horizontal flip (0: augmentation-free).")  # fmt: skip
@click.option(
    "--max-steps", default=-1, show_default=True, type=int, help="Stop after this many steps (-1: epochs)."
)
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--evaluate/--no-evaluate", default=True, show_default=True,
              help="Print the COCO AP table on annotations/instances_val.json when present.")  # fmt: skip
@click.option("--overwrite", is_flag=True, help="Replace a non-empty --output folder.")
def train(model: str, model_dir: Path, data_dir: Path, output: Path, epochs: int, batch_size: int,
          lr: float | None, backbone_lr: float | None, weight_decay: float | None, warmup_steps: int | None,
          flat_epochs: int | None, no_aug_epochs: int, lr_gamma: float | None, ema_decay: float,
          ema_warmups: int, hflip: float, max_steps: int, seed: int, evaluate: bool,
          overwrite: bool) -> None:  # fmt: skip
    """Fine-tune a detector on a COCO-format data set (transformers Trainer, EMA, the original recipe)."""
    from .data.coco_evaluation import evaluate_folder, format_metrics
    from .models.deimv2.train_deimv2 import FineTuneOptions, fine_tune

    options = FineTuneOptions(
        epochs=epochs, batch_size=batch_size, lr=lr, backbone_lr=backbone_lr, weight_decay=weight_decay,
        warmup_steps=warmup_steps, flat_epochs=flat_epochs, no_aug_epochs=no_aug_epochs, lr_gamma=lr_gamma,
        ema_decay=ema_decay, ema_warmups=ema_warmups, horizontal_flip=hflip, max_steps=max_steps, seed=seed,
    )  # fmt: skip
    summary = fine_tune(model_dir, data_dir, output, options, overwrite=overwrite)
    click.echo(
        f"deimv2: {summary['steps']} steps on {summary['num_images']} images ({summary['num_classes']} classes), "
        f"mean loss {summary['train_loss']:.3f} -> {output}"
    )
    if evaluate and (Path(data_dir) / "annotations" / "instances_val.json").is_file():
        click.echo(format_metrics(evaluate_folder(output, data_dir, "val", batch_size=batch_size)))


@main.command("segment-video")
@click.argument("video", required=False, type=click.Path(path_type=Path))
@click.option(
    "--frames-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="A folder of frames instead of VIDEO.",
)
@click.option(
    "--model", "model_dir", required=True, type=click.Path(path_type=Path), help="A converted model folder."
)
@click.option(
    "--task", type=click.Choice(["instance", "semantic", "panoptic"]), help="Default: the model's task."
)
@click.option(
    "--output", required=True, type=click.Path(dir_okay=False, path_type=Path), help="The MP4 to write."
)
@click.option(
    "--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), help="Also write JSON results."
)
@click.option(
    "--chunk", default=8, show_default=True, type=click.IntRange(min=1), help="Frames per model call."
)
def segment_video_command(video: Path | None, frames_dir: Path | None, model_dir: Path, task: str | None,
                          output: Path, json_path: Path | None, chunk: int) -> None:  # fmt: skip
    """Segment VIDEO (or --frames-dir) online and write it with coloured masks, track ids and labels."""
    from .tasks.segment_video import segment_video

    if (video is None) == (frames_dir is None):
        raise click.UsageError("give either VIDEO or --frames-dir")
    run = segment_video(video or frames_dir, model_dir, output, task=task, json_path=json_path, chunk=chunk)
    click.echo(
        f"{run.frames} frame(s), {run.summary} -> {run.output}"
        + (f" and {run.json_path}" if run.json_path else "")
    )


@main.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--prompt", "prompts", multiple=True, required=True, help="A text prompt (repeat for several).")
@click.option(
    "--model", "model_dir", required=True, type=click.Path(path_type=Path), help="A converted model folder."
)
@click.option(
    "--output",
    "output_dir",
    default=Path("segments"),
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for pictures and segments.json.",
)
@click.option("--threshold", type=click.FloatRange(0.0, 1.0), help="Score threshold (default: the model's).")
def segment(inputs: tuple[Path, ...], prompts: tuple[str, ...], model_dir: Path, output_dir: Path,
            threshold: float | None) -> None:  # fmt: skip
    """Segment what the --prompt texts describe in IMAGE files or folders (SAM3-LiteText)."""
    from .tasks.segment_images import segment_files

    summary = segment_files(inputs, list(prompts), model_dir, output_dir, threshold=threshold)
    click.echo(f"{summary.images} image(s), {summary.instances} instance(s) -> {summary.output_dir}")


if __name__ == "__main__":
    main()
