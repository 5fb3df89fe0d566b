"""Hostile user inputs: each ends in one ``Error:`` line (CLI) or a package error (API), never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

from golden import FIXTURES
from visionports.core.errors import VisionportsError
from visionports.models.deimv2 import Deimv2ImageProcessor
from visionports.models.packed import PackedImageProcessor
from visionports.models.sam3_lite_text import Sam3LiteTextImageProcessor
from visionports.models.videomt import VideomtVideoProcessor
from visionports.utils.images import ImageInputError, open_image, to_rgb
from visionports.utils.video import MissingExtraError


@pytest.fixture(scope="module")
def deimv2(convert: Callable[..., Path]) -> Path:  # noqa: F811
    return convert("deimv2", FIXTURES / "deimv2" / "atto_s0_b1_320" / "checkpoint.pth")


@pytest.fixture(scope="module")
def videomt(convert: Callable[..., Path]) -> Path:  # noqa: F811
    case = FIXTURES / "videomt" / "dinov2_tiny_s0_b1_t3" / "checkpoint.pth"
    return convert("videomt", case, "--set", "num_attention_heads=4", "--set", "num_thing_classes=2",
                   "--set", "min_size_test=64")  # fmt: skip


def _cli(*args: str, prelude: str = "pass") -> subprocess.CompletedProcess:
    code = f"import sys; {prelude}; from visionports.cli import main; main(sys.argv[1:], prog_name='visionports')"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})  # fmt: skip


def _one_error_line(result: subprocess.CompletedProcess, *words: str) -> str:
    """The single ``Error:`` line, on a line of its own, with exit status 1 and no traceback."""
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.split("\n") if "Error:" in line]
    assert len(errors) == 1 and errors[0].startswith("Error:"), result.stderr
    assert all(w in errors[0] for w in words), errors[0]
    return errors[0]


def _image(path: Path, size: tuple[int, int] = (40, 60)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (*size, 3), dtype=np.uint8)).save(path)
    return path


# -- integer images are refused outside their range, never wrapped ------------------------------------


@pytest.mark.parametrize(
    ("array", "low", "high"),
    [(np.array([[-1, 0]], np.int64), -1, 0), (np.array([[2**40, 0]], np.int64), 0, 2**40),
     (np.array([[256, 0]], np.int32), 0, 256), (np.array([[-5, 3]], np.int8), -5, 3)],
)  # fmt: skip
def test_integer_images_outside_their_range_are_refused(array: np.ndarray, low: int, high: int) -> None:
    message = f"{array.dtype} pixel values must lie in 0..255, got min {low} and max {high}"
    with pytest.raises(ImageInputError, match=message):
        to_rgb(array, name="pixels")
    with pytest.raises(ImageInputError, match=r"images\[0\]: " + message):
        Deimv2ImageProcessor()(array)


def test_integer_images_inside_their_range_are_read_as_documented() -> None:
    values = np.array([[0, 17, 255]])
    for dtype in (np.int8, np.int16, np.int32, np.int64, np.uint32):
        data = values.clip(0, np.iinfo(dtype).max).astype(dtype)
        assert np.array_equal(np.asarray(to_rgb(data))[..., 0], data.astype(np.uint8))
    sixteen = np.array([[0, 256, 65535]], np.uint16)
    assert np.asarray(to_rgb(sixteen))[0, :, 0].tolist() == [0, 1, 255]
    with pytest.raises(ImageInputError, match="0..65535"):
        to_rgb(Image.fromarray(np.array([[-1, 7]], np.int32)))  # PIL's 32-bit mode "I" holds 16-bit files


# -- tracebacks that became errors --------------------------------------------------------------------


def test_bfloat16_tensors_are_read_as_floats() -> None:
    pixels = torch.rand(3, 20, 30)
    for processor in (Deimv2ImageProcessor(size={"height": 32, "width": 32}), Sam3LiteTextImageProcessor(size=28),
                      PackedImageProcessor(patch_size=14)):  # fmt: skip
        for dtype in (torch.bfloat16,):
            got, want = processor(pixels.to(dtype)), processor(pixels.to(dtype).float())
            assert all(torch.equal(got[k], want[k]) for k in want), type(processor).__name__
    video = VideomtVideoProcessor(min_size=32, max_size=64)
    assert torch.equal(
        video([pixels.bfloat16()])["pixel_values"], video([pixels.bfloat16().float()])["pixel_values"]
    )


def test_videomt_processor_refuses_empty_and_elongated_videos() -> None:
    processor = VideomtVideoProcessor()
    with pytest.raises(ImageInputError, match="videos: .*an empty list"):
        processor([])
    with pytest.raises(ImageInputError, match="too elongated"):
        processor([np.zeros((2, 50000, 3), np.uint8)])
    with pytest.raises(ImageInputError, match="videos: expected"):
        processor(None)


def test_lazily_opened_truncated_jpeg(tmp_path: Path) -> None:
    data = (_image(tmp_path / "x.jpg", (200, 300))).read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 3])
    lazy = Image.open(tmp_path / "cut.jpg")  # not decoded yet: PIL reads it when the processor converts it
    with pytest.raises(ImageInputError, match="PIL cannot decode"):
        Deimv2ImageProcessor()(lazy)
    with pytest.raises(ImageInputError, match="PIL cannot decode"):
        Sam3LiteTextImageProcessor()(Image.open(tmp_path / "cut.jpg"))


@pytest.fixture(scope="module")
def bomb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bomb") / "bomb.png"
    Image.new("1", (20000, 20000)).save(path)  # 4e8 pixels in ~50 kB, over twice PIL's limit
    return path


def test_decompression_bomb(bomb: Path, deimv2: Path, tmp_path: Path) -> None:
    with pytest.raises(ImageInputError, match="decompression-bomb limit"):
        open_image(bomb)
    _one_error_line(_cli("detect", str(bomb), "--model", str(deimv2), "--output", str(tmp_path / "o")),
                    "bomb.png", "MAX_IMAGE_PIXELS")  # fmt: skip


def test_truncated_safetensors_in_model_folder(deimv2: Path, tmp_path: Path) -> None:
    broken = tmp_path / "model"
    broken.mkdir()
    for file in deimv2.iterdir():
        (broken / file.name).write_bytes(file.read_bytes())
    data = (deimv2 / "model.safetensors").read_bytes()
    (broken / "model.safetensors").write_bytes(data[: len(data) // 5])
    out = tmp_path / "out"
    result = _cli("detect", str(_image(tmp_path / "x.png")), "--model", str(broken), "--output", str(out))
    _one_error_line(result, str(broken), "cannot load the model")


def test_output_folder_not_writable_is_refused_before_loading(deimv2: Path, tmp_path: Path) -> None:
    (tmp_path / "a_file").write_text("")
    result = _cli("detect", str(_image(tmp_path / "x.png")), "--model", str(deimv2), "--output",
                  str(tmp_path / "a_file" / "out"))  # fmt: skip
    _one_error_line(result, "cannot write there")
    assert "Loading weights" not in result.stderr  # refused before the model loaded


def test_error_after_a_progress_bar_starts_its_own_line(deimv2: Path, tmp_path: Path) -> None:
    for name in ("a.png", "b.png", "c.png"):
        _image(tmp_path / "in" / name)
    (tmp_path / "out" / "b.png").mkdir(parents=True)  # a folder where the second picture must go
    (tmp_path / "out" / "b.png" / "keep").write_text("")
    result = _cli("detect", str(tmp_path / "in"), "--model", str(deimv2), "--output", str(tmp_path / "out"),
                  "--batch-size", "1")  # fmt: skip
    _one_error_line(result, "b.png")
    assert "detect:" in result.stderr  # the bar was shown before the error


def _one_by_one_video(path: Path) -> Path:
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("ffv1", rate=5)
        stream.width, stream.height, stream.pix_fmt = 1, 1, "yuv444p"
        for value in (0, 80, 160):
            frame = av.VideoFrame.from_ndarray(np.full((1, 1, 3), value, np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def test_one_by_one_video(videomt: Path, tmp_path: Path) -> None:
    clip = _one_by_one_video(tmp_path / "one.mkv")
    result = _cli("segment-video", str(clip), "--model", str(videomt), "--output", str(tmp_path / "o.mp4"))
    _one_error_line(result, "1x1", "too small")
    assert not (tmp_path / "o.mp4").exists()


def test_missing_av_extra(videomt: Path, tmp_path: Path) -> None:
    frames = _image(tmp_path / "frames" / "0.png").parent
    result = _cli("segment-video", "--frames-dir", str(frames), "--model", str(videomt), "--output",
                  str(tmp_path / "o.mp4"), prelude="sys.modules['av'] = None")  # fmt: skip
    _one_error_line(result, "pip install 'visionports[video]'")
    assert "segment:" not in result.stderr and "Loading weights" not in result.stderr  # said before any work
    code = ("import sys; sys.modules['av'] = None\nfrom visionports.utils.video import require_av\n"
            "require_av()")  # fmt: skip
    api = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert api.stderr.count("Traceback") == 1 and len(api.stderr.splitlines()) < 10, api.stderr
    assert issubclass(MissingExtraError, VisionportsError) and issubclass(MissingExtraError, ImportError)


def test_image_segmentation_pipeline_refuses_a_videomt_folder(videomt: Path) -> None:
    from transformers import AutoModelForUniversalSegmentation, pipeline

    from visionports.core.errors import UnsupportedTaskError

    with pytest.raises(UnsupportedTaskError, match="VidEoMT video model.*segment-video"):
        pipeline("image-segmentation", model=str(videomt))
    model = AutoModelForUniversalSegmentation.from_pretrained(videomt)  # the user's path still loads ours
    assert type(model).__module__.startswith("visionports.")
