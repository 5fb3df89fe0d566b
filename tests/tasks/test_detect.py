"""`visionports detect` and the transformers pipeline on a model converted from a golden case."""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from transformers import pipeline

from golden import FIXTURES
from visionports.cli import main

ATTO = FIXTURES / "deimv2" / "atto_s0_b1_320"


@pytest.fixture(scope="module")
def model_dir(convert: Callable[..., Path]) -> Path:
    return convert("deimv2", ATTO / "checkpoint.pth")


def _images(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for name, size in (("small.png", (48, 80)), ("large.jpg", (900, 1200))):
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(folder / name)
        paths.append(folder / name)
    return paths


def test_detect_folder_writes_pictures_and_json(model_dir: Path, tmp_path: Path) -> None:
    images = _images(tmp_path / "in")
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["detect", str(tmp_path / "in"), "--model", str(model_dir), "--threshold",
                                       "0.3", "--output", str(out), "--batch-size", "1"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "2 image(s)" in result.output
    payload = json.loads((out / "detections.json").read_text())
    assert payload["threshold"] == 0.3 and set(payload["images"]) == {str(p) for p in images}
    for source in images:
        picture = Image.open(out / f"{source.stem}.png")
        original = Image.open(source)
        assert picture.format == "PNG" and picture.size == original.size
        detections = payload["images"][str(source)]
        assert detections, "random weights still give scores above 0.3"
        for det in detections:
            assert (
                set(det) == {"label_id", "label", "score", "box"}
                and det["score"] > 0.3
                and len(det["box"]) == 4
            )
        assert not np.array_equal(
            np.asarray(picture), np.asarray(original.convert("RGB"))
        )  # boxes were drawn


def test_bad_inputs_write_nothing(model_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    _images(folder)
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    out = tmp_path / "out"
    runner = CliRunner()
    result = runner.invoke(main, ["detect", str(folder), "--model", str(model_dir), "--output", str(out)])
    assert result.exit_code != 0 and "broken.png" in result.output
    assert not out.exists()
    result = runner.invoke(
        main, ["detect", str(folder / "small.png"), "--model", str(model_dir), "--threshold", "2"]
    )
    assert result.exit_code != 0 and "--threshold" in result.output
    result = runner.invoke(
        main, ["detect", str(folder / "small.png"), "--model", str(tmp_path), "--output", str(out)]
    )
    assert result.exit_code != 0 and "not a model folder" in result.output and not out.exists()


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_pipeline_without_warnings(model_dir: Path) -> None:
    image = Image.fromarray(np.random.default_rng(2).integers(0, 256, (120, 200, 3), dtype=np.uint8))
    logged = _Records()
    library_logger = logging.getLogger("transformers")  # does not propagate to the root logger
    library_logger.addHandler(logged)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            detector = pipeline("object-detection", model=str(model_dir))
            found = detector(image, threshold=0.2)
    finally:
        library_logger.removeHandler(logged)
    assert not [w for w in caught if "visionports" in str(w.filename) or "transformers" in str(w.filename)]
    assert not logged.records, [r.getMessage() for r in logged.records]
    assert found and set(found[0]) == {"score", "label", "box"}
    assert set(found[0]["box"]) == {"xmin", "ymin", "xmax", "ymax"} and isinstance(found[0]["label"], str)


def test_same_file_name_in_two_folders_gets_two_pictures(model_dir: Path, tmp_path: Path) -> None:
    first, second = _images(tmp_path / "a")[0], tmp_path / "b" / "small.png"
    second.parent.mkdir()
    Image.fromarray(np.zeros((30, 40, 3), np.uint8)).save(second)
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["detect", str(first), str(second), "--model", str(model_dir),
                                       "--output", str(out), "--threshold", "0.3"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "2 image(s)" in result.output
    payload = json.loads((out / "detections.json").read_text())
    assert payload["pictures"] == {str(first): "small.png", str(second): "small_1.png"}
    assert Image.open(out / "small.png").size == (80, 48) and Image.open(out / "small_1.png").size == (40, 30)


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_detect_in_half_precision_matches_float32(model_dir: Path, tmp_path: Path, dtype: str) -> None:
    from visionports.tasks.detect import detect_files

    images = _images(tmp_path / "in")
    full = detect_files(images, model_dir, tmp_path / "f32", threshold=0.0, progress=False, device="cpu")
    half = detect_files(images, model_dir, tmp_path / dtype, threshold=0.0, progress=False, device="cpu",
                        dtype=dtype)  # fmt: skip
    for path in map(str, images):
        top = max(full.results[path], key=lambda d: d.score)
        assert all(np.isfinite(d.score) for d in half.results[path]) and half.results[path]
        best = max(half.results[path], key=lambda d: d.score)
        assert abs(best.score - top.score) < 0.05  # random weights: only the strongest detection is stable


def test_detect_refuses_an_unavailable_device(model_dir: Path, tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    result = CliRunner().invoke(main, ["detect", str(_images(tmp_path / "in")[0]), "--model", str(model_dir),
                                       "--output", str(tmp_path / "out"), "--device", "cuda"])  # fmt: skip
    assert result.exit_code == 1 and "Error: --device cuda: CUDA is not available" in result.output
    assert not (tmp_path / "out").exists()


def test_detect_in_deploy_mode_finds_the_same_objects(model_dir: Path, tmp_path: Path) -> None:
    """``--deploy`` (BatchNorm folded, RepVGG merged, channels_last): the same detections up to float32 round-off
    (random weights: near-tied queries may swap, so the strongest ones are compared)."""
    images = _images(tmp_path / "in")
    for name, extra in (("eager", []), ("deployed", ["--deploy"])):
        result = CliRunner().invoke(main, ["detect", *map(str, images), "--model", str(model_dir), "--threshold", "0",
                                           "--output", str(tmp_path / name), "--device", "cpu", *extra])  # fmt: skip
        assert result.exit_code == 0, result.output
    eager, deployed = (
        json.loads((tmp_path / n / "detections.json").read_text()) for n in ("eager", "deployed")
    )
    assert deployed["deploy"] is True and "deploy" not in eager
    for path in map(str, images):
        want = sorted(eager["images"][path], key=lambda d: -d["score"])[:10]
        got = sorted(deployed["images"][path], key=lambda d: -d["score"])[:10]
        assert [d["label_id"] for d in got] == [d["label_id"] for d in want]
        assert np.allclose([d["score"] for d in got], [d["score"] for d in want], atol=1e-4)
        assert np.allclose([d["box"] for d in got], [d["box"] for d in want], atol=0.5)
    both = CliRunner().invoke(main, ["detect", str(images[0]), "--model", str(model_dir), "--output",
                                     str(tmp_path / "x"), "--deploy", "--backend", "onnxruntime"])  # fmt: skip
    assert both.exit_code != 0 and "Error: --deploy applies to --backend torch" in both.output
    assert not (tmp_path / "x").exists()


def test_detect_compile_wraps_the_forward(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--compile`` hands the model's forward to ``torch.compile`` (compiling Atto takes ~1.5 min on this CPU, so
    torch.compile is recorded here, not run; its effect is measured in benchmarks/run_all.py)."""
    import torch

    compiled = []
    monkeypatch.setattr(torch, "compile", lambda fn, **options: compiled.append(options) or fn)
    image = str(_images(tmp_path / "in")[0])
    result = CliRunner().invoke(main, ["detect", image, "--model", str(model_dir), "--output", str(tmp_path / "out"),
                                       "--device", "cpu", "--compile"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert compiled == [{"dynamic": False}]
    assert json.loads((tmp_path / "out" / "detections.json").read_text())["compile"] is True
    both = CliRunner().invoke(main, ["detect", image, "--model", str(model_dir), "--output", str(tmp_path / "x"),
                                     "--compile", "--backend", "onnxruntime"])  # fmt: skip
    assert both.exit_code != 0 and "Error: --compile applies to --backend torch" in both.output
