"""Faithful video: rotation, timestamps, fractional rates, odd sizes, natural frame order, audio."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from visionports.utils.video import read_frames, read_frames_with_times, video_fps, write_video

av = pytest.importorskip("av")


def _clip(path: Path, size=(64, 32), pts=(0, 1, 2), time_base=Fraction(1, 10), rotation=None, audio=False):
    """An H.264 MP4 with a red 8x8 block top-left, given pts, optional display rotation and AAC audio."""
    width, height = size
    array = np.zeros((height, width, 3), np.uint8)
    array[:8, :8] = (255, 0, 0)
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.time_base = stream.time_base = time_base
        if rotation is not None:
            stream.set_display_rotation(rotation)
        sound = container.add_stream("aac", rate=8000) if audio else None
        for tick in pts:
            frame = av.VideoFrame.from_ndarray(array, format="rgb24")
            frame.pts, frame.time_base = tick, time_base
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
        if sound is not None:
            samples = av.AudioFrame.from_ndarray(
                np.zeros((1, 8000), np.float32), format="fltp", layout="mono"
            )
            samples.sample_rate, samples.pts = 8000, 0
            container.mux(sound.encode(samples))
            container.mux(sound.encode())


def _times(path: Path) -> list[Fraction]:
    with av.open(str(path)) as container:
        return [f.pts * Fraction(f.time_base) for f in container.decode(video=0)]


def test_rotation_is_applied(tmp_path: Path) -> None:
    clip = tmp_path / "portrait.mp4"
    _clip(clip, rotation=-90)  # a phone's "rotate=90": turn clockwise to display
    with av.open(str(clip)) as container:
        assert next(container.decode(video=0)).rotation == -90  # the muxer kept the display matrix
    frame = np.asarray(read_frames(clip)[0]).astype(int)
    assert frame.shape == (64, 32, 3)
    assert frame[1:7, 25:31, 0].mean() > 200 and frame[1:7, 1:7, 0].mean() < 50  # the block went top-right


def test_variable_frame_rate_survives(tmp_path: Path) -> None:
    clip, out = tmp_path / "vfr.mp4", tmp_path / "out.mp4"
    ticks = [0, 1001, 2002, 5005]
    _clip(clip, pts=ticks, time_base=Fraction(1, 30000))
    frames, times = read_frames_with_times(clip)
    assert times == [Fraction(t, 30000) for t in ticks]
    write_video(frames, out, times=times)
    assert all(abs(a - b) <= Fraction(1, 30000) for a, b in zip(_times(out), times, strict=True))
    write_video(frames, out, times=[float(t) for t in times])  # floats: a 1/90000 time base
    assert all(abs(a - b) <= Fraction(1, 90000) for a, b in zip(_times(out), times, strict=True))


def test_fractional_frame_rate_kept(tmp_path: Path) -> None:
    out = tmp_path / "ntsc.mp4"
    write_video([np.zeros((16, 16, 3), np.uint8)] * 4, out, fps=30000 / 1001)
    assert video_fps(out) == Fraction(30000, 1001)
    assert _times(out) == [Fraction(1001 * i, 30000) for i in range(4)]


def test_odd_size_written_exactly(tmp_path: Path) -> None:
    out = tmp_path / "odd.mp4"
    frame = np.zeros((17, 33, 3), np.uint8)
    frame[:, -1] = frame[-1, :] = 255  # the last column and row must survive
    write_video([frame, frame], out, fps=5)
    back = np.asarray(read_frames(out)[0]).astype(int)
    assert back.shape == (17, 33, 3)
    assert back[:, -1].mean() > 200 and back[-1, :].mean() > 200 and back[:15, :31].mean() < 30


def test_frame_folder_natural_order(tmp_path: Path) -> None:
    for i in range(1, 13):
        Image.fromarray(np.full((8, 8, 3), i * 20, np.uint8)).save(tmp_path / f"frame{i}.png")
    frames, times = read_frames_with_times(tmp_path, fps=Fraction(30000, 1001))
    assert [np.asarray(f)[0, 0, 0] for f in frames] == [i * 20 for i in range(1, 13)]
    assert times[:2] == [0, Fraction(1001, 30000)]
    assert [np.asarray(f)[0, 0, 0] for f in read_frames(tmp_path)][:3] == [20, 40, 60]


def test_audio_copied_through(tmp_path: Path) -> None:
    clip, out = tmp_path / "talk.mp4", tmp_path / "out.mp4"
    _clip(clip, audio=True)
    assert write_video(read_frames(clip), out, fps=10, audio_from=clip) == []
    with av.open(str(out)) as container:
        assert container.streams.audio[0].codec_context.name == "aac"
        assert sum(1 for p in container.demux(audio=0) if p.size) > 0
