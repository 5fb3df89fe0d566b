"""``visionports segment-video`` with a SAM3-LiteText folder: a text prompt's instances tracked, streamed."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from safetensors.torch import load_file

from golden import FIXTURES
from visionports.cli import main
from visionports.models.sam3_lite_text import Sam3LiteTextModel
from visionports.models.sam3_lite_text.video_sam3_lite_text import (
    Sam3LiteTextVideoSession,
    Sam3LiteTextVideoSettings,
)
from visionports.tasks.track_video import frame_pixels
from visionports.utils.masks import decode_rle

CASE = FIXTURES / "sam3_lite_text" / "tiny_video_s0_mct"
INPUTS = load_file(str(CASE / "inputs.safetensors"))
SETTINGS = [
    "--threshold",
    "0.36",
    "--new-object-threshold",
    "0.36",
]  # the case's (random weights score ~0.38)


@pytest.fixture(scope="module")
def tracker_dir(convert: Callable[..., Path]) -> Path:
    return convert("sam3-lite-text", CASE / "checkpoint.pt", "--set", "num_attention_heads=8")


@pytest.fixture(scope="module")
def frames_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("frames")
    for k, frame in enumerate(INPUTS["video_uint8"]):
        Image.fromarray(frame.permute(1, 2, 0).numpy()).save(folder / f"{k:03d}.png")
    return folder


def test_frames_are_prepared_as_the_original_loader(frames_dir: Path) -> None:
    for k, path in enumerate(sorted(frames_dir.iterdir())):
        assert torch.equal(frame_pixels(Image.open(path), 112), INPUTS["pixel_values_fp16"][k : k + 1])


def test_cli_tracks_what_the_session_tracks(tracker_dir: Path, frames_dir: Path, tmp_path: Path) -> None:
    out, results = tmp_path / "track.mp4", tmp_path / "track.json"
    result = CliRunner().invoke(main, ["segment-video", "--frames-dir", str(frames_dir), "--model", str(tracker_dir),
                                       "--prompt", "person", *SETTINGS, "--output", str(out), "--json", str(results)])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "6 frame(s), 2 track(s) of 'person'" in result.output
    with av.open(str(out)) as container:
        decoded = [frame.to_image() for frame in container.decode(video=0)]
    assert len(decoded) == 6 and decoded[0].size == (112, 112)
    model = Sam3LiteTextModel.from_pretrained(tracker_dir).eval()
    session = Sam3LiteTextVideoSession(model, INPUTS["input_ids"], Sam3LiteTextVideoSettings(
        score_threshold_detection=0.36, new_det_thresh=0.36), video_size=(112, 112))  # fmt: skip
    expected = [
        o for k in range(6) for o in session.step(INPUTS["pixel_values_fp16"][k : k + 1])
    ] + session.flush()
    payload = json.loads(results.read_text())
    assert payload["prompt"] == "person" and payload["frames"] == 6
    for segment in payload["segments"]:
        shown = [o for o in expected if segment["track_id"] in o.obj_ids.tolist()]
        assert segment["frames"] == [o.frame_index for o in shown if o.masks[o.obj_ids.tolist().index(
            segment["track_id"])].any()]  # fmt: skip
        for frame, rle in zip(segment["frames"], segment["masks"], strict=True):
            o = expected[frame]
            mask = o.masks[o.obj_ids.tolist().index(segment["track_id"])].numpy()
            assert np.array_equal(decode_rle(rle), mask)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ([], "give --prompt TEXT"),
        (["--prompt", "person", "--backend", "onnxruntime"], "--backend: not for SAM3-LiteText tracking"),
        (["--prompt", "  "], "--prompt: give the text of what to track"),
    ],
)
def test_refusals(
    tracker_dir: Path, frames_dir: Path, tmp_path: Path, extra: list[str], message: str
) -> None:
    out = tmp_path / "track.mp4"
    result = CliRunner().invoke(main, ["segment-video", "--frames-dir", str(frames_dir), "--model", str(tracker_dir),
                                       *extra, "--output", str(out)])  # fmt: skip
    assert result.exit_code != 0 and message in result.output
    assert not out.exists()


def test_a_folder_without_tracker_weights_is_refused(convert: Callable[..., Path], frames_dir: Path,
                                                     tmp_path: Path) -> None:  # fmt: skip
    folder = convert("sam3-lite-text", CASE / "checkpoint.pt", "--set", "tracker=null")
    out = tmp_path / "track.mp4"
    result = CliRunner().invoke(main, ["segment-video", "--frames-dir", str(frames_dir), "--model", str(folder),
                                       "--prompt", "person", "--output", str(out)])  # fmt: skip
    assert result.exit_code != 0 and "no tracker weights" in result.output
    assert not out.exists()


def test_pipeline_on_a_folder_and_on_images(tracker_dir: Path, frames_dir: Path) -> None:
    from transformers import pipeline

    tracker = pipeline("text-prompted-video-segmentation", model=str(tracker_dir))
    options = {"prompt": "person", "threshold": 0.36, "new_object_threshold": 0.36}
    from_folder = tracker(str(frames_dir), **options)
    images = [Image.open(p) for p in sorted(frames_dir.iterdir())]
    from_images = tracker(images, **options)
    assert [f["frame"] for f in from_folder] == list(range(6))
    assert [[o["id"] for o in f["objects"]] for f in from_folder] == [[0]] + [[0, 1]] * 5
    for a, b in zip(from_folder, from_images, strict=True):
        for x, y in zip(a["objects"], b["objects"], strict=True):
            assert x["id"] == y["id"] and np.array_equal(x["mask"], y["mask"]) and x["box"] == y["box"]
    with pytest.raises(ValueError, match="prompt: give the text"):
        tracker(images)


def test_half_precision_is_refused_by_name(tracker_dir: Path, frames_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "track.mp4"
    result = CliRunner().invoke(main, ["segment-video", "--frames-dir", str(frames_dir), "--model", str(tracker_dir),
                                       "--prompt", "person", "--dtype", "bfloat16", "--output", str(out)])  # fmt: skip
    assert result.exit_code != 0 and "video tracking runs the model in float32" in result.output
    assert not out.exists()
