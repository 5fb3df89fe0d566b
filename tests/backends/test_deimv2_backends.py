"""``--backend onnxruntime|openvino`` for DEIMv2: same detections as torch, a cache built once, validated, keyed on
content."""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from golden import FIXTURES
from visionports.backends import deimv2 as graphs
from visionports.backends import runtimes
from visionports.backends.cache import cache_key, cache_root
from visionports.backends.validation import GraphValidationError
from visionports.cli import main
from visionports.core.errors import MissingExtraError

pytest.importorskip("onnxscript")
BACKENDS = [
    pytest.param(name, marks=pytest.mark.skipif(importlib.util.find_spec(name) is None, reason=f"no {name}"))
    for name in ("onnxruntime", "openvino")
]

CHECKPOINT = FIXTURES / "deimv2" / "atto_s0_b1_320" / "checkpoint.pth"


@pytest.fixture(scope="module")
def model_dir(convert: Callable[..., Path]) -> Path:
    # its own folder (``convert`` writes a new one per call), so cache tests do not share entries
    return convert("deimv2", CHECKPOINT)


def _images(folder: Path, count: int = 3) -> list[Path]:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, (h, w) in enumerate([(240, 320), (320, 320), (200, 500)][:count]):
        path = folder / f"img{i}.png"
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def _detect(model: Path, images: list[Path], out: Path, *options: str) -> dict:
    args = ["detect", *map(str, images), "--model", str(model), "--output", str(out), "--device", "cpu"]
    result = CliRunner().invoke(main, [*args, "--threshold", "0.0", "--batch-size", "2", *options])
    assert result.exit_code == 0, result.output
    return json.loads((out / "detections.json").read_text())


def _entries(model: Path) -> list[Path]:
    root = cache_root(model)
    return sorted(p for p in root.iterdir() if not p.name.startswith(".")) if root.is_dir() else []


@pytest.mark.parametrize("backend", BACKENDS)
def test_same_detections_as_torch_and_cache_reused(
    backend: str, model_dir: Path, tmp_path: Path, monkeypatch
) -> None:
    images = _images(tmp_path / "in")
    eager = _detect(model_dir, images, tmp_path / "torch")
    before = set(_entries(model_dir))
    ort = _detect(model_dir, images, tmp_path / "ort", "--backend", backend)
    assert ort["backend"] == backend
    (entry,) = set(_entries(model_dir)) - before  # one entry per backend
    figures = json.loads((entry / "validation.json").read_text())
    assert figures["backend"] == backend
    assert figures["logits_max_abs_diff"] <= graphs.TOLERANCES["logits"]
    eager_rows, ort_rows = _rows(eager), _rows(ort)
    assert eager_rows.keys() == ort_rows.keys() and len(eager_rows) == len(images)
    for key, want in eager_rows.items():
        got = ort_rows[key]
        # threshold 0: every one of the top-k detections; compare the leading (well-separated) ones
        want, got = want[:20], got[:20]
        assert [d["label"] for d in got] == [d["label"] for d in want]
        assert np.allclose([d["score"] for d in got], [d["score"] for d in want], atol=1e-4)
        # boxes: the validation bound on normalised boxes (1e-3) in pixels of the longest side, + JSON rounding;
        # measured up to ~7e-4 x side on these random-weight models' near-degenerate boxes
        side = max(Image.open(next(p for p in images if p.name == key)).size)
        assert np.allclose(
            [d["box"] for d in got],
            [d["box"] for d in want],
            atol=graphs.TOLERANCES["pred_boxes"] * side + 0.01,
        )

    # reuse: no export, no validation on a second load
    mtime = (entry / "model.onnx").stat().st_mtime_ns
    monkeypatch.setattr("visionports.models.deimv2.export_deimv2.export_onnx", _fail)
    monkeypatch.setattr(graphs, "validate", _fail)
    _detect(model_dir, images[:1], tmp_path / "ort2", "--backend", backend)
    assert set(_entries(model_dir)) - before == {entry} and (entry / "model.onnx").stat().st_mtime_ns == mtime


def _rows(manifest: dict) -> dict[str, list[dict]]:
    return {Path(k).name: v for k, v in manifest["images"].items()}


def _fail(*args, **kwargs):
    raise AssertionError("must not be called on a cached entry")


def test_changed_folder_gives_a_new_key(model_dir: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "model"
    shutil.copytree(model_dir, copy)
    settings = {"backend": "onnxruntime", "input_size": [320, 320]}
    key = cache_key(copy, settings)
    assert cache_key(copy, settings) == key
    assert cache_key(copy, {**settings, "input_size": [640, 640]}) != key
    config = json.loads((copy / "config.json").read_text())
    (copy / "config.json").write_text(json.dumps({**config, "note": "edited"}))
    edited = cache_key(copy, settings)
    assert edited != key
    weights = next(p for p in copy.iterdir() if p.suffix in (".safetensors", ".bin"))
    weights.write_bytes(weights.read_bytes())  # same bytes, rewritten: a new mtime
    stat = weights.stat()
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert cache_key(copy, settings) not in (key, edited)


def test_validation_failure_is_refused(model_dir: Path, tmp_path: Path, monkeypatch) -> None:
    import shutil

    copy = tmp_path / "model"
    shutil.copytree(model_dir, copy)
    monkeypatch.setitem(graphs.TOLERANCES, "logits", 1e-9)
    with pytest.raises(GraphValidationError, match=r"max \|diff\| logits [0-9.e-]+ \(tolerance 1e-09\)"):
        graphs.load_detector(copy)
    assert _entries(copy) == []  # nothing cached from a refused export
    result = CliRunner().invoke(main, ["detect", *map(str, _images(tmp_path / "in", 1)), "--model", str(copy),
                                       "--output", str(tmp_path / "out"), "--backend", "onnxruntime"])  # fmt: skip
    assert result.exit_code != 0 and "disagrees with the eager model" in result.output


@pytest.mark.parametrize(
    ("options", "message"),
    [(["--dtype", "float16"], "--dtype float16"), (["--dtype", "bfloat16"], "float32 only")],
)
def test_half_precision_is_refused(model_dir: Path, tmp_path: Path, options: list[str], message: str) -> None:
    args = ["detect", *map(str, _images(tmp_path / "in", 1)), "--model", str(model_dir), "--device", "cpu"]
    result = CliRunner().invoke(
        main, [*args, "--output", str(tmp_path / "out"), "--backend", "onnxruntime", *options]
    )
    assert result.exit_code != 0 and message in result.output


def test_cuda_without_its_provider_is_refused(monkeypatch) -> None:
    import onnxruntime

    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CPUExecutionProvider"])
    with pytest.raises(runtimes.BackendOptionError, match="no CUDAExecutionProvider"):
        runtimes.check_backend("onnxruntime", "cuda", "float32")
    assert runtimes.check_backend("onnxruntime", "auto", "float32").type == "cpu"


def test_openvino_serves_the_cpu_only() -> None:
    pytest.importorskip("openvino")
    assert runtimes.check_backend("openvino", "auto", "float32").type == "cpu"
    with pytest.raises(runtimes.BackendOptionError, match="use cpu"):
        runtimes.check_backend("openvino", "mps", "float32")


def test_missing_onnxruntime_names_the_extra(monkeypatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    monkeypatch.setitem(sys.modules, "openvino", None)
    with pytest.raises(MissingExtraError, match=r"pip install 'visionports\[export\]'"):
        runtimes.check_backend("onnxruntime", "cpu", "float32")
    with pytest.raises(MissingExtraError, match=r"pip install 'visionports\[openvino\]'"):
        runtimes.check_backend("openvino", "cpu", "float32")


@pytest.mark.parametrize("backend", BACKENDS)
def test_pipeline_on_the_graph_equals_the_eager_pipeline(
    backend: str, model_dir: Path, tmp_path: Path
) -> None:
    from transformers import pipeline

    (path,) = _images(tmp_path / "in", 1)
    image = Image.open(path)
    eager = pipeline("object-detection", model=str(model_dir))(image, threshold=0.0)[:20]
    graph = graphs.load_detector(model_dir, backend).pipeline()(image, threshold=0.0)[:20]
    assert [d["label"] for d in graph] == [d["label"] for d in eager]
    assert np.allclose([d["score"] for d in graph], [d["score"] for d in eager], atol=1e-4)
    boxes = [[d["box"][k] for k in ("xmin", "ymin", "xmax", "ymax")] for d in (*graph, *eager)]
    bound = graphs.TOLERANCES["pred_boxes"] * max(image.size) + 1  # the pipeline rounds boxes to pixels
    assert np.abs(np.array(boxes[: len(graph)]) - np.array(boxes[len(graph) :])).max() <= bound
