"""``visionports segment-video VIDEO --model DIR --output OUT.mp4``: online video segmentation."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import click

from .common import FrameRate, device_options, model_option


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
    "--output", required=True, type=click.Path(dir_okay=False, path_type=Path), help="The MP4 to write."
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
def segment_video(video: str | None, frames_dir: Path | None, model_dir: Path, device: str, dtype: str, task: str | None, output: Path,
                  json_path: Path | None, chunk: int, fps: Fraction | None, online: bool, input_format: str | None) -> None:  # fmt: skip
    """Segment VIDEO (or --frames-dir) online and write it with coloured masks, track ids and labels.

    VIDEO is a file, `-` for a stream on stdin, a URL (rtsp://, http://...) or, with --input-format, a capture
    device. Live sources are read once, as they come; the others twice (panoptic: three times) so that the
    tracks and classes shown are chosen over the whole video, unless --online.
    """
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
    )
    click.echo(
        f"{run.frames} frame(s), {run.summary} -> {run.output}"
        + (f" and {run.json_path}" if run.json_path else "")
    )
