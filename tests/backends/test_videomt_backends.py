"""``segment-video --backend onnxruntime|openvino|torch --deploy|--compile`` for VidEoMT: same results as
torch, one validated step graph per frame size, cached and reused."""

from __future__ import annotations

import importlib.util
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from golden import FIXTURES
from visionports.backends import videomt as graphs
from visionports.backends.cache import cache_root
from visionports.backends.validation import GraphValidationError
from visionports.cli import main
from visionports.utils.masks import decode_rle
from visionports.utils.video import read_frames_with_times, write_video

pytest.importorskip("onnxscript")
BACKENDS = [
    pytest.param(name, marks=pytest.mark.skipif(importlib.util.find_spec(name) is None, reason=f"no {name}"))
    for name in ("onnxruntime", "openvino")
]
CASE = FIXTURES / "videomt" / "dinov2_tiny_s0_b1_t3"


@pytest.fixture(scope="module")
def model_dir(convert: Callable[..., Path]) -> Path:
    return convert("videomt", CASE / "checkpoint.pth", "--set", "num_attention_heads=4",
                   "--set", "num_thing_classes=2", "--set", "min_size_test=64")  # fmt: skip


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("clip") / "clip.mp4"
    write_video([rng.integers(0, 256, (72, 100, 3), dtype=np.uint8) for _ in range(5)], path, fps=5)
    return path


@pytest.fixture(scope="module")
def eager_results(model_dir: Path, clip: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    return _segment(model_dir, clip, tmp_path_factory.mktemp("torch"))


def _segment(model: Path, clip: Path, out: Path, *options: str, chunk: int = 2) -> dict:
    args = ["segment-video", str(clip), "--model", str(model), "--output", str(out / "out.mp4"),
            "--json", str(out / "out.json"), "--task", "instance", "--chunk", str(chunk), "--device", "cpu"]  # fmt: skip
    result = CliRunner().invoke(main, [*args, *options])
    assert result.exit_code == 0, result.output
    return json.loads((out / "out.json").read_text())


def _entries(model: Path) -> list[Path]:
    root = cache_root(model)
    return sorted(p for p in root.iterdir() if not p.name.startswith(".")) if root.is_dir() else []


def _assert_same_segments(got: dict, want: dict) -> None:
    """Same tracks, labels and frames; scores within 1e-4; masks equal but for a few round-off pixels."""
    assert want["segments"] and len(got["segments"]) == len(want["segments"])
    for ours, theirs in zip(got["segments"], want["segments"], strict=True):
        assert {k: ours[k] for k in ("track_id", "label_id", "frames")} == {
            k: theirs[k] for k in ("track_id", "label_id", "frames")
        }
        assert abs(ours["score"] - theirs["score"]) <= 1e-4
        for a, b in zip(ours["masks"], theirs["masks"], strict=True):
            assert np.mean(decode_rle(a) != decode_rle(b)) <= 1e-3


def _fail(*args, **kwargs):
    raise AssertionError("must not be called on a cached entry")


@pytest.mark.parametrize("backend", BACKENDS)
def test_same_results_as_torch_and_cache_reused(
    backend: str, model_dir: Path, clip: Path, eager_results: dict, tmp_path: Path, monkeypatch
) -> None:
    before = set(_entries(model_dir))
    got = _segment(model_dir, clip, tmp_path / "graph", "--backend", backend)
    assert got["backend"] == backend and "deploy" not in got
    _assert_same_segments(got, eager_results)
    (entry,) = set(_entries(model_dir)) - before  # one frame size: one entry
    figures = json.loads((entry / "validation.json").read_text())
    assert figures["backend"] == backend and figures["input_size"] == [64, 96]
    for name, tolerance in graphs.TOLERANCES.items():
        assert 0 <= figures[f"{name}_max_abs_diff"] <= tolerance

    mtime = (entry / "step.onnx").stat().st_mtime_ns
    monkeypatch.setattr("visionports.models.videomt.export_videomt.export_step_onnx", _fail)
    monkeypatch.setattr(graphs, "validate", _fail)
    again = _segment(model_dir, clip, tmp_path / "again", "--backend", backend)
    assert again["segments"] == got["segments"]
    assert set(_entries(model_dir)) - before == {entry} and (entry / "step.onnx").stat().st_mtime_ns == mtime


def test_segmenter_steps_like_the_eager_model(model_dir: Path, clip: Path) -> None:
    from transformers import AutoImageProcessor, AutoModelForUniversalSegmentation

    frames, _ = read_frames_with_times(clip)
    pixels = AutoImageProcessor.from_pretrained(model_dir)([frames], return_tensors="pt")["pixel_values"]
    model = AutoModelForUniversalSegmentation.from_pretrained(model_dir).eval()
    segmenter = graphs.load_segmenter(model_dir, "onnxruntime")
    state_eager = state_graph = None
    for start in (0, 3):  # chunks of 3 and 2 frames, the state carried across
        with torch.inference_mode():
            want = model(pixels[:, start : start + 3], state=state_eager)
        got = segmenter(pixels[:, start : start + 3], state=state_graph)
        state_eager, state_graph = want.state, got.state
        assert (
            got.state.frames_seen == want.state.frames_seen == start + pixels[:, start : start + 3].shape[1]
        )
        for name in ("class_queries_logits", "masks_queries_logits"):
            assert got[name].shape == want[name].shape
            torch.testing.assert_close(got[name], want[name], rtol=0, atol=graphs.TOLERANCES[name])
        torch.testing.assert_close(got.state.queries, want.state.queries, rtol=0, atol=1e-4)
    assert segmenter.validation["masks_queries_logits_max_abs_diff"] > 0


def test_validation_failure_is_refused(model_dir: Path, clip: Path, tmp_path: Path, monkeypatch) -> None:
    copy = tmp_path / "model"
    shutil.copytree(model_dir, copy)
    monkeypatch.setitem(graphs.TOLERANCES, "masks_queries_logits", 1e-9)
    segmenter = graphs.load_segmenter(copy)
    with pytest.raises(GraphValidationError, match=r"masks_queries_logits [0-9.e-]+ \(tolerance 1e-09\)"):
        segmenter(torch.zeros(1, 1, 3, 64, 96))
    assert _entries(copy) == []  # nothing cached from a refused export
    result = CliRunner().invoke(main, ["segment-video", str(clip), "--model", str(copy), "--output",
                                       str(tmp_path / "out.mp4"), "--backend", "onnxruntime"])  # fmt: skip
    assert result.exit_code != 0 and "disagrees with the eager model" in result.output
    assert _entries(copy) == [] and not (tmp_path / "out.mp4").exists()


@pytest.mark.parametrize("option", ["--deploy", "--compile"])
def test_deploy_and_compile_match_torch(
    option: str, model_dir: Path, clip: Path, eager_results: dict, tmp_path: Path
) -> None:
    # one chunk of all 5 frames: --compile compiles a single shape
    want = _segment(model_dir, clip, tmp_path / "eager", chunk=5)
    got = _segment(model_dir, clip, tmp_path / "fast", option, chunk=5)
    assert got[option.lstrip("-")] is True and "backend" not in got
    _assert_same_segments(got, want)
    _assert_same_segments(want, eager_results)  # the chunking does not change the results


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--backend", "onnxruntime", "--deploy"], "--deploy applies to --backend torch"),
        (["--backend", "openvino", "--compile"], "--compile applies to --backend torch"),
        (["--backend", "onnxruntime", "--dtype", "float16"], "float32 only"),
    ],
)
def test_bad_combinations_are_refused(
    options: list[str], message: str, model_dir: Path, clip: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out.mp4"
    result = CliRunner().invoke(
        main, ["segment-video", str(clip), "--model", str(model_dir), "--output", str(out), *options]
    )
    assert result.exit_code != 0 and message in result.output and not out.exists()
