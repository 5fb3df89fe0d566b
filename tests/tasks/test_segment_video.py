"""`visionports segment-video` on a model converted from the VidEoMT golden case (random weights)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from golden import FIXTURES
from visionports.cli import main
from visionports.utils.video import write_video

CASE = FIXTURES / "videomt" / "dinov2_tiny_s0_b1_t3"


@pytest.fixture(scope="module")
def model_dir(convert: Callable[..., Path]) -> Path:
    return convert("videomt", CASE / "checkpoint.pth", "--set", "num_attention_heads=4",
                   "--set", "num_thing_classes=2", "--set", "min_size_test=64")  # fmt: skip


def _clip(path: Path, frames: int = 5) -> Path:
    rng = np.random.default_rng(0)
    write_video([rng.integers(0, 256, (72, 100, 3), dtype=np.uint8) for _ in range(frames)], path, fps=5)
    return path


def _decode(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


@pytest.mark.parametrize("task", ["instance", "semantic", "panoptic"])
def test_segment_video_writes_a_decodable_video(model_dir: Path, tmp_path: Path, task: str) -> None:
    clip = _clip(tmp_path / "clip.mp4")
    out, js = tmp_path / f"{task}.mp4", tmp_path / f"{task}.json"
    result = CliRunner().invoke(main, ["segment-video", str(clip), "--model", str(model_dir), "--task", task,
                                       "--output", str(out), "--json", str(js), "--chunk", "2"])  # fmt: skip
    assert result.exit_code == 0, result.output
    frames, source = _decode(out), _decode(clip)
    assert len(frames) == 5 and frames[0].shape == (72, 100, 3)
    payload = json.loads(js.read_text())
    assert payload["task"] == task and payload["frames"] == 5
    if task != "panoptic":  # random weights: panoptic keeps no query above the 0.8 score threshold
        assert payload["segments"]
        assert np.abs(frames[0].astype(int) - source[0].astype(int)).mean() > 5  # masks were blended in


def test_frames_dir_and_bad_inputs(model_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(np.full((64, 64, 3), 40 * i, np.uint8)).save(folder / f"{i:03d}.png")
    runner = CliRunner()
    ok = runner.invoke(main, ["segment-video", "--frames-dir", str(folder), "--model", str(model_dir),
                              "--output", str(tmp_path / "dir.mp4")])  # fmt: skip
    assert ok.exit_code == 0, ok.output
    assert len(_decode(tmp_path / "dir.mp4")) == 3
    Image.fromarray(np.zeros((32, 48, 3), np.uint8)).save(folder / "999.png")
    mixed = runner.invoke(main, ["segment-video", "--frames-dir", str(folder), "--model", str(model_dir),
                                 "--output", str(tmp_path / "mixed.mp4")])  # fmt: skip
    assert (
        mixed.exit_code != 0 and "different sizes" in mixed.output and not (tmp_path / "mixed.mp4").exists()
    )
    (tmp_path / "bad.mp4").write_bytes(b"not a video")
    bad = runner.invoke(main, ["segment-video", str(tmp_path / "bad.mp4"), "--model", str(model_dir),
                               "--output", str(tmp_path / "bad_out.mp4")])  # fmt: skip
    assert bad.exit_code != 0 and "bad.mp4" in bad.output and not (tmp_path / "bad_out.mp4").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    none = runner.invoke(main, ["segment-video", "--frames-dir", str(empty), "--model", str(model_dir),
                                "--output", str(tmp_path / "none.mp4")])  # fmt: skip
    assert none.exit_code != 0 and "no image files" in none.output
    both = runner.invoke(main, ["segment-video", str(tmp_path / "bad.mp4"), "--frames-dir", str(folder),
                                "--model", str(model_dir), "--output", str(tmp_path / "x.mp4")])  # fmt: skip
    assert both.exit_code != 0 and "either VIDEO or --frames-dir" in both.output
