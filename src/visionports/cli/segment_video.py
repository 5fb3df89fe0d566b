"""``visionports segment-video VIDEO --model DIR --output OUT.mp4``: online video segmentation."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Any

import click

from .common import FrameRate, device_options, model_option, speed_options
from .distributed import echo_ray_run, ray_options, ray_run_options


@click.command("segment-video")
@click.argument("video", required=False)
@click.option("--frames-dir", type=click.Path(file_okay=False, path_type=Path),
              help="A folder of frames (natural name order) instead of VIDEO.")  # fmt: skip
@model_option()
@device_options
@click.option(
    "--task", type=click.Choice(["instance", "semantic", "panoptic"]), help="Default: the model's task."
)
@click.option(
    "--output", required=True, help="The MP4 to write (with --ray: a folder or URL for the results)."
)
@click.option(
    "--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), help="Also write JSON results."
)
@click.option(
    "--chunk", default=8, show_default=True, type=click.IntRange(min=1), help="Frames per model call."
)
@click.option(
    "--fps", type=FrameRate(), help="Frame rate of --frames-dir: 25, 29.97, 30000/1001...  [default: 10]"
)
@click.option("--online", is_flag=True,
              help="Decide from the frames seen so far and read the video once (always so for live sources).")  # fmt: skip
@click.option("--input-format", metavar="FORMAT",
              help="PyAV/FFmpeg input format of a live VIDEO: v4l2 (/dev/video0), avfoundation (0), dshow, lavfi, mpegts...")  # fmt: skip
@click.option("--prompt", help="SAM3-LiteText models: the text of what to track (every instance of it).")
@click.option("--threshold", type=click.FloatRange(0.0, 1.0),
              help="SAM3-LiteText: detection score to keep a detection [default: 0.5, the original's]")  # fmt: skip
@click.option("--new-object-threshold", type=click.FloatRange(0.0, 1.0),
              help="SAM3-LiteText: detection score to start a new track [default: 0.7, the original's]")  # fmt: skip
@speed_options
@ray_options
@click.pass_context
def segment_video(ctx: click.Context, video: str | None, frames_dir: Path | None, model_dir: Path, device: str, dtype: str, task: str | None, output: Path,
                  json_path: Path | None, chunk: int, fps: Fraction | None, online: bool, input_format: str | None, prompt: str | None,
                  threshold: float | None, new_object_threshold: float | None, backend: str, deploy: bool,
                  compile_model: bool, **ray: Any) -> None:  # fmt: skip
    """Segment VIDEO (or --frames-dir) online and write it with coloured masks, track ids and labels.

    VIDEO is a file, `-` for a stream on stdin, a URL (rtsp://, http://...) or, with --input-format, a capture
    device. Live sources are read once, as they come; the others twice (panoptic: three times) so that the
    tracks and classes shown are chosen over the whole video, unless --online. With --ray, VIDEO may name many
    videos (a folder, a glob, a manifest file): each is segmented by one of the Ray actors into --output.
    """
    options = ray_run_options(ctx, ray, batch_size=1)
    if options is not None and prompt is not None:
        raise click.UsageError("--ray segments videos with VidEoMT models; track a --prompt without --ray")
    if options is not None and (backend != "torch" or deploy or compile_model):
        raise click.UsageError("--ray runs the torch model as it is: drop --backend, --deploy and --compile")
    if options is not None:
        if video is None or json_path is not None or input_format is not None or fps is not None:
            raise click.UsageError("--ray takes VIDEO files (a folder, glob or manifest of them), not --frames-dir, "
                                   "--json (results are in the shards), --input-format or --fps")  # fmt: skip
        from ..distributed.ray_runner import run_videos_on_ray

        settings = {"task": task, "chunk": chunk, "device": device, "dtype": dtype, "online": online}
        return echo_ray_run(run_videos_on_ray([video], model_dir, output, options, **settings))
    from ..tasks.segment_video import segment_video as run_segment_video

    if (video is None) == (frames_dir is None):
        raise click.UsageError("give either VIDEO or --frames-dir")
    if fps is not None and frames_dir is None:
        raise click.BadParameter(
            "applies to --frames-dir only (a video keeps its own timestamps)", param_hint="--fps"
        )
    if _is_prompted(model_dir):
        thresholds = {"score_threshold_detection": threshold, "new_det_thresh": new_object_threshold}
        return _track(video or frames_dir, model_dir, output, prompt, json_path, device, dtype, fps, input_format,
                      thresholds, task=task, backend=backend, deploy=deploy, compile_model=compile_model)  # fmt: skip
    given = (
        ("--prompt", prompt),
        ("--threshold", threshold),
        ("--new-object-threshold", new_object_threshold),
    )
    for name, value in given:
        if value is not None:
            raise click.BadParameter(
                "applies to SAM3-LiteText models (this one segments by itself)", param_hint=name
            )
    run = run_segment_video(
        video or frames_dir,
        model_dir,
        output,
        task=task,
        json_path=json_path,
        chunk=chunk,
        device=device,
        dtype=dtype,
        fps=10 if fps is None else fps,
        online=online,
        input_format=input_format,
        backend=backend,
        deploy=deploy,
        compile_model=compile_model,
    )
    click.echo(
        f"{run.frames} frame(s), {run.summary} -> {run.output}"
        + (f" and {run.json_path}" if run.json_path else "")
    )


def _is_prompted(model_dir: Path) -> bool:
    """Whether the folder holds a text-prompted (SAM3-LiteText) model; other folders are checked by the task."""
    from ..core.files import require_family_folder

    _, family = require_family_folder(model_dir, "segment-video")
    return family.name == "sam3_lite_text"


def _track(source: Any, model_dir: Path, output: Path, prompt: str | None, json_path: Path | None, device: str,
           dtype: str, fps: Fraction | None, input_format: str | None, thresholds: dict, **unused: Any) -> None:  # fmt: skip
    """``segment-video`` with a SAM3-LiteText folder: the prompt's instances tracked (one pass, online)."""
    from ..models.sam3_lite_text.video_sam3_lite_text import Sam3LiteTextVideoSettings
    from ..tasks.track_video import track_video

    if prompt is None:
        raise click.UsageError("a SAM3-LiteText model tracks what --prompt names: give --prompt TEXT")
    given = [f"--{name.replace('_', '-')}" for name, value in unused.items()
             if value not in (None, False, "torch")]  # fmt: skip
    if given:
        raise click.UsageError(
            f"{', '.join(given)}: not for SAM3-LiteText tracking (it runs online, in torch)"
        )
    settings = Sam3LiteTextVideoSettings(**{k: v for k, v in thresholds.items() if v is not None})
    run = track_video(source, model_dir, output, prompt, json_path=json_path, device=device, dtype=dtype,
                      fps=10 if fps is None else fps, input_format=input_format, settings=settings)  # fmt: skip
    click.echo(
        f"{run.frames} frame(s), {run.summary} -> {run.output}"
        + (f" and {run.json_path}" if run.json_path else "")
    )
