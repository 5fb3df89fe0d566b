"""``visionports segment-video VIDEO --model DIR --output OUT.mp4``: online video segmentation."""

from __future__ import annotations

from pathlib import Path

import click

from .common import device_options, model_option


@click.command("segment-video")
@click.argument("video", required=False, type=click.Path(path_type=Path))
@click.option("--frames-dir", type=click.Path(file_okay=False, path_type=Path),
              help="A folder of frames instead of VIDEO.")  # fmt: skip
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
def segment_video(video: Path | None, frames_dir: Path | None, model_dir: Path, device: str, dtype: str, task: str | None, output: Path,
                  json_path: Path | None, chunk: int) -> None:  # fmt: skip
    """Segment VIDEO (or --frames-dir) online and write it with coloured masks, track ids and labels."""
    from ..tasks.segment_video import segment_video as run_segment_video

    if (video is None) == (frames_dir is None):
        raise click.UsageError("give either VIDEO or --frames-dir")
    run = run_segment_video(
        video or frames_dir,
        model_dir,
        output,
        task=task,
        json_path=json_path,
        chunk=chunk,
        device=device,
        dtype=dtype,
    )
    click.echo(
        f"{run.frames} frame(s), {run.summary} -> {run.output}"
        + (f" and {run.json_path}" if run.json_path else "")
    )
