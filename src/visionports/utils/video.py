"""Reading and writing videos with PyAV (optional dependency: ``pip install visionports[video]``)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from ..core.errors import MissingExtraError
from ..core.files import atomic_write
from .images import ImageInputError, collect_image_files, open_image


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


def iter_video_frames(path: str | Path) -> Iterator[Image.Image]:
    """RGB frames of a video file, decoded one at a time."""
    av = _av()
    path = Path(path)
    if not path.is_file():
        raise ImageInputError(f"{path}: no such video file")
    try:
        container = av.open(str(path))
    except Exception as err:  # PyAV raises several error types
        raise ImageInputError(f"{path}: not a video file PyAV can read ({err})") from err
    with container:
        if not container.streams.video:
            raise ImageInputError(f"{path}: holds no video stream")
        try:
            for frame in container.decode(video=0):
                yield frame.to_image().convert("RGB")
        except Exception as err:
            raise ImageInputError(f"{path}: truncated or corrupt video ({err})") from err


def video_fps(path: str | Path, default: float = 25.0) -> float:
    """The average frame rate of a video file (``default`` when it records none)."""
    av = _av()
    try:
        with av.open(str(path)) as container:
            rate = container.streams.video[0].average_rate
    except Exception as err:  # PyAV raises several error types
        raise ImageInputError(f"{path}: cannot read the frame rate ({err})") from err
    return float(rate) if rate else default


def read_frames(source: str | Path) -> list[Image.Image]:
    """All frames of a video file or of a folder of images (sorted by name); same size required."""
    source = Path(source)
    frames = (
        [open_image(p) for p in collect_image_files([source])]
        if source.is_dir()
        else list(iter_video_frames(source))
    )
    if not frames:
        raise ImageInputError(f"{source}: holds no frames")
    sizes = {f.size for f in frames}
    if len(sizes) > 1:
        raise ImageInputError(f"{source}: frames have different sizes {sorted(sizes)}; a video has one size")
    return frames


def write_video(frames: Sequence[np.ndarray | Image.Image], path: str | Path, fps: float = 25.0) -> None:
    """Encode RGB frames as H.264 MP4 (atomically: the file appears only when complete)."""
    av = _av()
    path = Path(path)
    if not frames:
        raise ImageInputError(f"{path}: no frames to write")
    height, width = np.asarray(frames[0]).shape[:2]
    check_encodable(width, height, str(path))
    path.parent.mkdir(parents=True, exist_ok=True)

    def encode(tmp: Path) -> None:
        with av.open(str(tmp), mode="w", format="mp4") as container:
            stream = container.add_stream("libx264", rate=round(fps))
            stream.width, stream.height = width - width % 2, height - height % 2
            stream.pix_fmt = "yuv420p"
            for frame in frames:
                array = np.ascontiguousarray(np.asarray(frame)[: stream.height, : stream.width, :3])
                for packet in stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)

    atomic_write(path, encode)
