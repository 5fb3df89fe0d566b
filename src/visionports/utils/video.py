"""Reading and writing videos with PyAV (optional dependency: ``pip install visionports[video]``).

Frames come back upright (the stream's display rotation applied) with their own timestamps, so variable
frame rates survive a read → write round trip; frames of odd sizes are written at their exact size.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterator, Sequence
from fractions import Fraction
from itertools import pairwise
from math import lcm
from pathlib import Path

import numpy as np
from PIL import Image

from ..core.errors import MissingExtraError
from ..core.files import _umask
from .images import ImageInputError, collect_image_files, open_image

FINE_TIME_BASE = Fraction(1, 90000)  # for timestamps that are not exact fractions (floats)
MP4_AUDIO = {"aac", "mp3", "opus", "alac", "flac", "ac3", "eac3"}  # audio codecs an MP4 can hold


def _av():
    try:
        import av
    except ImportError:
        raise MissingExtraError("video files need PyAV: pip install 'visionports[video]'") from None
    return av


def require_av() -> None:
    """``MissingExtraError`` now, before any work, when PyAV is missing."""
    _av()


def check_encodable(width: int, height: int, name: str) -> None:
    """``ImageInputError`` unless frames of ``width`` x ``height`` can be written as H.264 (2x2 at least)."""
    if width < 2 or height < 2:
        raise ImageInputError(f"{name}: frames of {width}x{height} are too small to encode (H.264 needs 2x2)")


def natural_key(path: str | Path) -> tuple:
    """Sort key for file names with digit runs compared as numbers (``frame2`` before ``frame10``)."""
    parts = re.split(r"(\d+)", Path(path).name.lower())
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in parts if p)


def _rotation(frame, stream) -> int:
    """Counter-clockwise degrees that turn ``frame`` upright for display (0 when none is recorded)."""
    degrees = getattr(frame, "rotation", None)  # PyAV >= 14: the display matrix
    if degrees is None:  # older PyAV: the legacy clockwise ``rotate`` tag
        degrees = -int(float(stream.metadata.get("rotate", 0) or 0))
    return int(round(degrees)) % 360


def _upright(image: Image.Image, degrees: int) -> Image.Image:
    """``image`` turned ``degrees`` counter-clockwise (exact for multiples of 90)."""
    return image.rotate(degrees, expand=True) if degrees else image


def _open_video(path: Path):
    """An open container with a video stream, or ``ImageInputError``."""
    if not path.is_file():
        raise ImageInputError(f"{path}: no such video file")
    return _open_container(str(path), str(path))


def _open_container(target, name: str, **options):
    """``av.open(target, **options)`` holding a video stream, or ``ImageInputError`` naming ``name``."""
    av = _av()
    try:
        container = av.open(target, **options)
    except Exception as err:  # PyAV raises several error types
        raise ImageInputError(f"{name}: not a video source PyAV can read ({err})") from err
    if not container.streams.video:
        container.close()
        raise ImageInputError(f"{name}: holds no video stream")
    return container


def _decode_with_times(container, name: str) -> Iterator[tuple[Image.Image, Fraction]]:
    """Upright RGB frames of ``container``'s first video stream with their timestamps (exact seconds)."""
    stream = container.streams.video[0]
    step = 1 / Fraction(stream.average_rate or 25)
    previous = None
    try:
        for frame in container.decode(stream):
            if frame.pts is None or frame.time_base is None:
                time = Fraction(0) if previous is None else previous + step
            else:
                time = frame.pts * Fraction(frame.time_base)
            previous = time
            yield _upright(frame.to_image().convert("RGB"), _rotation(frame, stream)), time
    except Exception as err:
        raise ImageInputError(f"{name}: truncated or corrupt video ({err})") from err


def iter_video_frames_with_times(path: str | Path) -> Iterator[tuple[Image.Image, Fraction]]:
    """Upright RGB frames of a video file with their timestamps (exact seconds), decoded one at a time."""
    path = Path(path)
    with _open_video(path) as container:
        yield from _decode_with_times(container, str(path))


def iter_video_frames(path: str | Path) -> Iterator[Image.Image]:
    """Upright RGB frames of a video file, decoded one at a time."""
    for image, _ in iter_video_frames_with_times(path):
        yield image


REALTIME_SCHEMES = {"rtsp", "rtsps", "rtmp", "rtmps", "rtp", "udp", "tcp", "srt"}  # frames come at their pace
URL_TIMEOUT = 15.0  # seconds to open a URL, and at most between two reads


class LiveSource:
    """A video read once, as it comes: ``-`` (a pipe on stdin), a URL PyAV opens (``rtsp://``, ``http://``,
    ...), or a capture device named with its ``input_format`` (``v4l2`` /dev/video0, ``avfoundation`` 0,
    ``dshow`` video=..., ``lavfi`` testsrc). ``rate`` is its nominal frame rate once frames were read."""

    def __init__(self, target: str, input_format: str | None = None) -> None:
        self.target, self.input_format, self.rate = target, input_format, None

    def __str__(self) -> str:
        return "stdin" if self.target == "-" else self.target

    @property
    def realtime(self) -> bool:
        """Frames come at the source's pace (a camera, a stream), so a slow reader must drop, not queue them."""
        scheme = self.target.split("://", 1)[0].lower() if "://" in self.target else ""
        return self.target != "-" and (self.input_format is not None or scheme in REALTIME_SCHEMES)

    def frames_with_times(self) -> Iterator[tuple[Image.Image, Fraction]]:
        """Upright RGB frames and their timestamps, decoded as they arrive."""
        options: dict = {} if self.input_format is None else {"format": self.input_format}
        target = self.target
        if target == "-":
            import sys

            target = sys.stdin.buffer
        elif "://" in target:
            options["timeout"] = URL_TIMEOUT
        with _open_container(target, str(self), **options) as container:
            self.rate = Fraction(container.streams.video[0].average_rate or 25)
            yield from _decode_with_times(container, str(self))


def live_source(source: str | Path, input_format: str | None = None) -> LiveSource | None:
    """The :class:`LiveSource` that ``source`` names (``-``, a URL, or any target with ``input_format``)."""
    text = str(source)
    if input_format is not None or text == "-" or re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", text):
        return LiveSource(text, input_format)
    return None


def video_fps(path: str | Path, default: float = 25.0) -> Fraction:
    """The exact average frame rate of a video file (``default`` when it records none)."""
    av = _av()
    try:
        with av.open(str(path)) as container:
            rate = container.streams.video[0].average_rate
    except Exception as err:  # PyAV raises several error types
        raise ImageInputError(f"{path}: cannot read the frame rate ({err})") from err
    return Fraction(rate) if rate else _as_fraction(default)


def read_frames_with_times(
    source: str | Path, fps: float | Fraction = 10
) -> tuple[list[Image.Image], list[Fraction]]:
    """Frames and timestamps (seconds) of a video file, or of an image folder (natural name order) at ``fps``."""
    pairs = list(iter_frames_with_times(source, fps))
    return [frame for frame, _ in pairs], [time for _, time in pairs]


def iter_frames_with_times(
    source: str | Path | LiveSource, fps: float | Fraction = 10
) -> Iterator[tuple[Image.Image, Fraction]]:
    """``read_frames_with_times`` one frame at a time (same checks, raised when the offending frame comes)."""
    if isinstance(source, LiveSource):
        yield from _same_size(source.frames_with_times(), str(source))
        return
    source = Path(source)
    if source.is_dir():
        files = sorted(collect_image_files([source]), key=natural_key)
        rate = _as_fraction(fps)
        pairs = ((open_image(p), i / rate) for i, p in enumerate(files))
    else:
        pairs = iter_video_frames_with_times(source)
    yield from _same_size(pairs, str(source))


def _same_size(
    pairs: Iterator[tuple[Image.Image, Fraction]], source: str
) -> Iterator[tuple[Image.Image, Fraction]]:
    """``pairs`` checked to hold frames, all of one size."""
    first = None
    for frame, time in pairs:
        if first is None:
            first = frame.size
        elif frame.size != first:
            sizes = sorted({first, frame.size})
            raise ImageInputError(f"{source}: frames have different sizes {sizes}; a video has one size")
        yield frame, time
    if first is None:
        raise ImageInputError(f"{source}: holds no frames")


def read_frames(source: str | Path) -> list[Image.Image]:
    """All frames of a video file or of a folder of images (natural name order); same size required."""
    return read_frames_with_times(source)[0]


def _as_fraction(value: float | Fraction) -> Fraction:
    """``value`` as a fraction (29.97002997 → 30000/1001)."""
    return Fraction(value).limit_denominator(100000)


def _pts(times: Sequence[float | Fraction], count: int, name: str) -> tuple[list[int], Fraction]:
    """Integer pts (first at 0 or later) and their time base for ``times``; strictly increasing required."""
    if len(times) != count:
        raise ImageInputError(f"{name}: {len(times)} timestamps for {count} frames")
    exact = all(isinstance(t, (int, Fraction)) for t in times)
    denominator = lcm(*(Fraction(t).denominator for t in times)) if exact else 0
    base = Fraction(1, denominator) if 0 < denominator <= 10**6 else FINE_TIME_BASE
    start = min(Fraction(times[0]), Fraction(0))
    pts = [round((Fraction(t) - start) / base) for t in times]
    if any(b <= a for a, b in pairwise(pts)):
        raise ImageInputError(f"{name}: frame timestamps must increase strictly")
    return pts, base


def _audio_streams(container, src, notes: list[str]) -> list[tuple]:
    """(source, output) pairs: ``src``'s audio streams an MP4 can hold, templated into ``container``."""
    if src is None:
        return []
    pairs = []
    for stream in src.streams.audio:
        name = stream.codec_context.name
        if name not in MP4_AUDIO:
            notes.append(f"audio stream {stream.index} ({name}) not copied: MP4 cannot hold it")
            continue
        add = getattr(container, "add_stream_from_template", None)  # PyAV >= 14
        pairs.append((stream, add(stream) if add else container.add_stream(template=stream)))
    return pairs


def _mux_audio(container, src, pairs: list[tuple]) -> None:
    """Copy the audio packets of ``src`` unchanged (no re-encoding)."""
    for stream, out in pairs:
        for packet in src.demux(stream):
            if packet.dts is not None:
                packet.stream = out
                container.mux(packet)


def _video_stream(container, width: int, height: int, rate: Fraction, base: Fraction):
    """An H.264 stream of exactly ``width`` x ``height``: 4:2:0 when both are even, else 4:4:4."""
    stream = container.add_stream("libx264", rate=rate)
    stream.width, stream.height = width, height
    stream.pix_fmt = "yuv420p" if width % 2 == 0 and height % 2 == 0 else "yuv444p"
    stream.codec_context.time_base = stream.time_base = base
    return stream


class VideoWriter:
    """Streaming ``write_video``: ``with VideoWriter(path, size, times) as w: w.write(frame)`` per frame.

    ``size`` is (width, height). ``times`` gives every frame's timestamp up front (the time base then fits
    them exactly), so exactly ``len(times)`` frames must be written. With ``times=None`` frames may keep
    coming (a live source): each ``write(frame, time)`` gives its own timestamp on a 1/90000 s base, the
    first frame at 0; a time that does not increase is moved just after the previous one and counted in
    ``notes``. The file appears only when the block ends without error; ``notes`` then says what was
    adjusted and which audio streams were not copied.
    """

    def __init__(
        self,
        path: str | Path,
        size: tuple[int, int],
        times: Sequence[float | Fraction] | None,
        fps: float | Fraction = 25.0,
        audio_from: str | Path | None = None,
    ) -> None:
        self.path, (self.width, self.height) = Path(path), size
        check_encodable(self.width, self.height, str(self.path))
        if times is not None and not times:
            raise ImageInputError(f"{self.path}: no frames to write")
        self.rate = _as_fraction(fps)
        if times is None:
            self.pts, self.base = None, FINE_TIME_BASE
        else:
            self.pts, self.base = _pts(times, len(times), str(self.path))
        self.audio_from, self.notes, self.count = audio_from, [], 0
        self._start: Fraction | None = None
        self._last, self._moved = -1, 0
        self._tmp: Path | None = None

    def __enter__(self) -> VideoWriter:
        av = _av()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".partial", dir=self.path.parent)
        os.close(handle)
        self._tmp = Path(tmp)
        try:
            self._src = None if self.audio_from is None else _open_video(Path(self.audio_from))
            self._container = av.open(tmp, mode="w", format="mp4")
            self._stream = _video_stream(self._container, self.width, self.height, self.rate, self.base)
            self._audio = _audio_streams(self._container, self._src, self.notes)
        except BaseException:
            self._close()
            raise
        return self

    def write(self, frame: np.ndarray | Image.Image, time: float | Fraction | None = None) -> None:
        """Encode the next RGB frame (its size must be the writer's); ``time``: its timestamp when the writer
        was made without ``times`` (default: ``1/fps`` after the previous frame)."""
        av = _av()
        array = np.ascontiguousarray(np.asarray(frame)[..., :3])
        planned = self.pts is not None
        if array.shape[:2] != (self.height, self.width) or (planned and self.count >= len(self.pts)):
            frames = f"{len(self.pts)} frames" if planned else "frames"
            raise ImageInputError(f"{self.path}: frame {self.count} of {array.shape[1]}x{array.shape[0]} does "
                                  f"not fit {frames} of {self.width}x{self.height}")  # fmt: skip
        video_frame = av.VideoFrame.from_ndarray(array, format="rgb24")
        video_frame.pts = self.pts[self.count] if planned else self._next_pts(time)
        video_frame.time_base = self.base
        for packet in self._stream.encode(video_frame):
            self._container.mux(packet)
        self.count += 1

    def _next_pts(self, time: float | Fraction | None) -> int:
        """The pts of a streamed frame at ``time`` (seconds), strictly after the previous one."""
        if time is None:
            time = 0 if self._start is None else self._start + self.count / self.rate
        time = Fraction(time).limit_denominator(10**9)
        self._start = time if self._start is None else self._start
        pts = round((time - self._start) / self.base)
        if pts <= self._last:
            pts, self._moved = self._last + 1, self._moved + 1
        self._last = pts
        return pts

    def __exit__(self, kind, error, trace) -> None:
        try:
            if kind is None:
                if self.pts is not None and self.count != len(self.pts):
                    raise ImageInputError(
                        f"{self.path}: {self.count} frames written, {len(self.pts)} expected"
                    )
                if self.count == 0:
                    raise ImageInputError(f"{self.path}: no frames to write")
                for packet in self._stream.encode():
                    self._container.mux(packet)
                _mux_audio(self._container, self._src, self._audio)
                if self._moved:
                    self.notes.append(
                        f"{self._moved} frame time(s) did not increase: moved just after the previous"
                    )
        except BaseException:
            self._close()
            raise
        self._close(keep=kind is None)

    def _close(self, keep: bool = False) -> None:
        """Close the files; move the finished file into place when ``keep``, else remove it."""
        tmp, self._tmp = self._tmp, None
        try:
            for handle in (getattr(self, "_container", None), getattr(self, "_src", None)):
                if handle is not None:
                    handle.close()
            if keep and tmp is not None:
                os.chmod(tmp, 0o666 & ~_umask())
                os.replace(tmp, self.path)
        finally:
            if tmp is not None:
                tmp.unlink(missing_ok=True)


def write_video(
    frames: Sequence[np.ndarray | Image.Image],
    path: str | Path,
    fps: float | Fraction = 25.0,
    times: Sequence[float | Fraction] | None = None,
    audio_from: str | Path | None = None,
) -> list[str]:
    """Encode RGB frames as H.264 MP4 atomically (the file appears only when complete); returns notes.

    ``times`` (seconds, one per frame) become the frames' pts, so a variable frame rate survives; without
    them frames are ``1/fps`` apart. Odd sizes are kept exactly (4:4:4 chroma, High 4:4:4 profile, which
    some players lack); even sizes use the widely played 4:2:0. ``audio_from``: a video whose audio streams
    are copied in unchanged; the notes say which could not be.
    """
    path = Path(path)
    if not frames:
        raise ImageInputError(f"{path}: no frames to write")
    height, width = np.asarray(frames[0]).shape[:2]
    rate = _as_fraction(fps)
    times = [i / rate for i in range(len(frames))] if times is None else times
    with VideoWriter(path, (width, height), times, fps=rate, audio_from=audio_from) as writer:
        for frame in frames:
            writer.write(frame)
    return writer.notes
