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
    av = _av()
    if not path.is_file():
        raise ImageInputError(f"{path}: no such video file")
    try:
        container = av.open(str(path))
    except Exception as err:  # PyAV raises several error types
        raise ImageInputError(f"{path}: not a video file PyAV can read ({err})") from err
    if not container.streams.video:
        container.close()
        raise ImageInputError(f"{path}: holds no video stream")
    return container


def iter_video_frames_with_times(path: str | Path) -> Iterator[tuple[Image.Image, Fraction]]:
    """Upright RGB frames of a video file with their timestamps (exact seconds), decoded one at a time."""
    path = Path(path)
    with _open_video(path) as container:
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
            raise ImageInputError(f"{path}: truncated or corrupt video ({err})") from err


def iter_video_frames(path: str | Path) -> Iterator[Image.Image]:
    """Upright RGB frames of a video file, decoded one at a time."""
    for image, _ in iter_video_frames_with_times(path):
        yield image


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
    source: str | Path, fps: float | Fraction = 10
) -> Iterator[tuple[Image.Image, Fraction]]:
    """``read_frames_with_times`` one frame at a time (same checks, raised when the offending frame comes)."""
    source = Path(source)
    if source.is_dir():
        files = sorted(collect_image_files([source]), key=natural_key)
        rate = _as_fraction(fps)
        pairs = ((open_image(p), i / rate) for i, p in enumerate(files))
    else:
        pairs = iter_video_frames_with_times(source)
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

    ``size`` is (width, height); ``times`` gives every frame's timestamp up front (the time base depends on
    all of them), so exactly ``len(times)`` frames must be written. The file appears only when the block
    ends without error and every frame came; ``notes`` then says which audio streams were not copied.
    """

    def __init__(
        self,
        path: str | Path,
        size: tuple[int, int],
        times: Sequence[float | Fraction],
        fps: float | Fraction = 25.0,
        audio_from: str | Path | None = None,
    ) -> None:
        self.path, (self.width, self.height) = Path(path), size
        check_encodable(self.width, self.height, str(self.path))
        if not times:
            raise ImageInputError(f"{self.path}: no frames to write")
        self.rate = _as_fraction(fps)
        self.pts, self.base = _pts(times, len(times), str(self.path))
        self.audio_from, self.notes, self.count = audio_from, [], 0
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

    def write(self, frame: np.ndarray | Image.Image) -> None:
        """Encode the next RGB frame (its size must be the writer's)."""
        av = _av()
        array = np.ascontiguousarray(np.asarray(frame)[..., :3])
        if array.shape[:2] != (self.height, self.width) or self.count >= len(self.pts):
            raise ImageInputError(f"{self.path}: frame {self.count} of {array.shape[1]}x{array.shape[0]} does "
                                  f"not fit {len(self.pts)} frames of {self.width}x{self.height}")  # fmt: skip
        video_frame = av.VideoFrame.from_ndarray(array, format="rgb24")
        video_frame.pts, video_frame.time_base = self.pts[self.count], self.base
        for packet in self._stream.encode(video_frame):
            self._container.mux(packet)
        self.count += 1

    def __exit__(self, kind, error, trace) -> None:
        try:
            if kind is None:
                if self.count != len(self.pts):
                    raise ImageInputError(
                        f"{self.path}: {self.count} frames written, {len(self.pts)} expected"
                    )
                for packet in self._stream.encode():
                    self._container.mux(packet)
                _mux_audio(self._container, self._src, self._audio)
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
