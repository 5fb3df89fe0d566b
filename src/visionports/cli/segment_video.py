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
@speed_options
@ray_options
@click.pass_context
def segment_video(ctx: click.Context, video: str | None, frames_dir: Path | None, model_dir: Path, device: str, dtype: str, task: str | None, output: Path,
                  json_path: Path | None, chunk: int, fps: Fraction | None, online: bool, input_format: str | None, backend: str,
                  deploy: bool, compile_model: bool, **ray: Any) -> None:  # fmt: skip
    """Segment VIDEO (or --frames-dir) online and write it with coloured masks, track ids and labels.

    VIDEO is a file, `-` for a stream on stdin, a URL (rtsp://, http://...) or, with --input-format, a capture
    device. Live sources are read once, as they come; the others twice (panoptic: three times) so that the
    tracks and classes shown are chosen over the whole video, unless --online. With --ray, VIDEO may name many
    videos (a folder, a glob, a manifest file): each is segmented by one of the Ray actors into --output.
    """
    options = ray_run_options(ctx, ray, batch_size=1)
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
