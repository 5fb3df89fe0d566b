"""`segment-video` on sources read once: stdin, an HTTP URL, a capture device (FFmpeg's lavfi), ``--online``;
``--fps`` for frame folders; where the run ran in the JSON."""

from __future__ import annotations

import functools
import http.server
import json
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from golden import FIXTURES
from visionports.cli import main
from visionports.tasks import segment_video as sv
from visionports.utils.video import VideoWriter

CASE = FIXTURES / "videomt" / "dinov2_tiny_s0_b1_t3"
TICKS = [0, 1001, 2002, 5005, 6006, 9009, 10010]  # a variable frame rate, 1/30000 s time base


@pytest.fixture(scope="module")
def model_dir(convert: Callable[..., Path]) -> Path:
    return convert("videomt", CASE / "checkpoint.pth", "--set", "num_attention_heads=4",
                   "--set", "num_thing_classes=2", "--set", "min_size_test=64")  # fmt: skip


def _stream_clip(path: Path, format: str = "matroska") -> Path:
    """A clip a pipe can carry (Matroska / MPEG-TS need no seeking), with a variable frame rate."""
    rng = np.random.default_rng(1)
    base = Fraction(1, 30000)
    with av.open(str(path), "w", format=format) as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 100, 72, "yuv420p"
        stream.codec_context.time_base = base
        for tick in TICKS:
            frame = av.VideoFrame.from_ndarray(
                rng.integers(0, 256, (72, 100, 3), dtype=np.uint8), format="rgb24"
            )
            frame.pts, frame.time_base = tick, base
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def _times(path: Path) -> list[Fraction]:
    with av.open(str(path)) as container:
        return [f.pts * Fraction(f.time_base) for f in container.decode(video=0)]


def _frames(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def test_stdin_pipe_streams_once_and_keeps_timestamps(model_dir: Path, tmp_path: Path) -> None:
    """`... | visionports segment-video - ...` in a real process: frames and their times come through."""
    clip = _stream_clip(tmp_path / "clip.mkv")
    out, js = tmp_path / "out.mp4", tmp_path / "out.json"
    command = [sys.executable, "-m", "visionports.cli", "segment-video", "-", "--model", str(model_dir),
               "--output", str(out), "--json", str(js), "--chunk", "3"]  # fmt: skip
    with clip.open("rb") as stdin:
        done = subprocess.run(command, stdin=stdin, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "7 frame(s)" in done.stdout
    source = _times(clip)  # Matroska keeps milliseconds: 0, 0.033, 0.067, 0.167, ...
    assert len(set(np.diff(source))) > 1 and _times(out) == [t - source[0] for t in source]
    payload = json.loads(js.read_text())
    assert payload["source"] == "stdin" and payload["online"] is True and payload["frames"] == 7
    assert payload["device"] == "cpu" and payload["dtype"] == "float32"
    assert "dropped_frames" not in payload  # a pipe waits for its reader: nothing is dropped


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def http_url(tmp_path: Path) -> Iterator[str]:
    """A local HTTP server (no network beyond this machine) serving ``tmp_path``."""
    handler = functools.partial(_QuietHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_http_url_is_read_online(model_dir: Path, tmp_path: Path, http_url: str) -> None:
    _stream_clip(tmp_path / "clip.ts", format="mpegts")
    run = sv.segment_video(f"{http_url}/clip.ts", model_dir, tmp_path / "out.mp4", json_path=tmp_path / "o.json",
                           chunk=2, progress=False, device="cpu")  # fmt: skip
    assert run.frames == 7 and len(_frames(tmp_path / "out.mp4")) == 7
    times = _times(tmp_path / "out.mp4")
    source = _times(tmp_path / "clip.ts")  # MPEG-TS: 1/90000 s, starting at 1.4 s
    assert (
        [t - times[0] for t in times]
        == [t - source[0] for t in source]
        == [Fraction(t, 30000) for t in TICKS]
    )
    assert json.loads((tmp_path / "o.json").read_text())["source"].startswith(http_url)
    missing = CliRunner().invoke(main, ["segment-video", f"{http_url}/none.ts", "--model", str(model_dir),
                                        "--output", str(tmp_path / "none.mp4")])  # fmt: skip
    assert missing.exit_code != 0 and missing.output.startswith("Error: ") and "none.ts" in missing.output
    assert not (tmp_path / "none.mp4").exists()


def test_capture_device_drops_what_it_cannot_keep_up_with(model_dir: Path, tmp_path: Path) -> None:
    """FFmpeg's lavfi test source stands for a camera (``--input-format v4l2 /dev/video0`` on Linux): frames
    come at the source's pace, so those the model cannot keep up with are dropped, and counted."""
    out, js = tmp_path / "cam.mp4", tmp_path / "cam.json"
    result = CliRunner().invoke(main, ["segment-video", "testsrc=size=96x64:rate=25:duration=2", "--input-format",
                                       "lavfi", "--model", str(model_dir), "--output", str(out), "--json", str(js),
                                       "--chunk", "2"])  # fmt: skip
    assert result.exit_code == 0, result.output
    payload = json.loads(js.read_text())
    written = len(_frames(out))
    assert written == payload["frames"] and written + payload.get("dropped_frames", 0) == 50
    assert payload["online"] is True
    times = _times(out)
    assert all(b > a for a, b in zip(times, times[1:], strict=False)) and times[0] == 0
    bad = CliRunner().invoke(main, ["segment-video", "/dev/no-camera", "--input-format", "v4l2", "--model",
                                    str(model_dir), "--output", str(tmp_path / "x.mp4")])  # fmt: skip
    assert bad.exit_code != 0 and bad.output.startswith("Error: ") and not (tmp_path / "x.mp4").exists()


def _tweak(processor) -> None:
    processor.object_threshold, processor.overlap_threshold = 0.0, 0.1


@pytest.mark.parametrize("task", ["instance", "semantic", "panoptic"])
def test_online_pass_reads_once_and_equals_the_exact_run_within_one_chunk(
    model_dir: Path, tmp_path: Path, task: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the whole clip in one chunk the frames seen so far are the whole video: the one-pass result is
    the exact one, frame for frame; with smaller chunks the video is still read once."""
    clip = _stream_clip(tmp_path / "clip.mkv")
    load, opened = sv._load, []
    monkeypatch.setattr(sv, "_load", lambda path: (lambda pair: (_tweak(pair[1]), pair)[1])(load(path)))
    frames = sv.iter_frames_with_times
    monkeypatch.setattr(sv, "iter_frames_with_times", lambda *a: (opened.append(1), frames(*a))[1])
    written: dict[str, list] = {"exact": [], "online": []}
    write = VideoWriter.write
    for mode in written:
        monkeypatch.setattr(VideoWriter, "write", lambda self, f, t=None, m=mode: (written[m].append(np.array(f)),
                                                                                   write(self, f, t)))  # fmt: skip
        sv.segment_video(clip, model_dir, tmp_path / f"{mode}.mp4", task=task, chunk=7, progress=False,
                         device="cpu", online=mode == "online")  # fmt: skip
    for got, want in zip(written["online"], written["exact"], strict=True):
        np.testing.assert_array_equal(got, want)
    assert _times(tmp_path / "online.mp4") == _times(tmp_path / "exact.mp4")
    opened.clear()
    js = tmp_path / "small.json"
    run = sv.segment_video(clip, model_dir, tmp_path / "small.mp4", task=task, json_path=js, chunk=2,
                           progress=False, device="cpu", online=True)  # fmt: skip
    assert len(opened) == 2 and run.frames == 7  # the size check and one pass
    segments = json.loads(js.read_text())["segments"]
    assert all(s["frames"] == sorted(set(s["frames"])) and s["frames"] for s in segments)


def test_fps_for_frame_folders(model_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in (1, 2, 10):  # natural order: 1, 2, 10
        Image.fromarray(np.full((48, 64, 3), 20 * i, np.uint8)).save(folder / f"frame{i}.png")
    out = tmp_path / "out.mp4"
    result = CliRunner().invoke(main, ["segment-video", "--frames-dir", str(folder), "--fps", "30000/1001",
                                       "--model", str(model_dir), "--output", str(out)])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert _times(out) == [Fraction(0), Fraction(1001, 30000), Fraction(2002, 30000)]
    video = CliRunner().invoke(main, ["segment-video", str(tmp_path / "x.mp4"), "--fps", "5", "--model",
                                      str(model_dir), "--output", str(tmp_path / "y.mp4")])  # fmt: skip
    assert video.exit_code != 0 and "--fps" in video.output and "--frames-dir" in video.output
    zero = CliRunner().invoke(main, ["segment-video", "--frames-dir", str(folder), "--fps", "0", "--model",
                                     str(model_dir), "--output", str(tmp_path / "z.mp4")])  # fmt: skip
    assert zero.exit_code != 0 and "--fps" in zero.output and not (tmp_path / "z.mp4").exists()
