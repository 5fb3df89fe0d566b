"""``segment --backend onnxruntime|openvino`` (and ``--deploy``) for SAM3-LiteText: same instances as torch, a
cache built once and validated, a refused graph never cached.

The graphs are exported once per module (the ``graphs`` fixture, :func:`export_onnx` on the converted folder's
model: a real export of the image graph takes about a minute on two cores); the CLI runs copy those files instead
of exporting again, and validate, cache and run them as a fresh export would be.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from golden import FIXTURES
from visionports.backends import sam3_lite_text as graphs
from visionports.backends.cache import cache_root
from visionports.backends.validation import GraphValidationError
from visionports.cli import main
from visionports.utils.masks import decode_rle

pytest.importorskip("onnxscript")
BACKENDS = [
    pytest.param(name, marks=pytest.mark.skipif(importlib.util.find_spec(name) is None, reason=f"no {name}"))
    for name in ("onnxruntime", "openvino")
]
CASE = FIXTURES / "sam3_lite_text" / "tiny_detector_s0_mct_seed5"
PROMPTS = ("a cat", "person wearing a red hat")
EXPORT = "visionports.models.sam3_lite_text.export_sam3_lite_text.export_onnx"


@pytest.fixture(scope="module")
def model_dir(convert: Callable[..., Path]) -> Path:
    return convert("sam3-lite-text", CASE / "checkpoint.pt")


@pytest.fixture(scope="module")
def exported(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from visionports.models.sam3_lite_text.export_sam3_lite_text import export_onnx
    from visionports.models.sam3_lite_text.modeling_sam3_lite_text import Sam3LiteTextModel

    model = Sam3LiteTextModel.from_pretrained(model_dir).eval()
    return export_onnx(model, tmp_path_factory.mktemp("sam3_graphs"))


@pytest.fixture
def copied_export(exported: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    def export(model, folder: Path) -> dict[str, Path]:
        return {name: Path(shutil.copy(path, Path(folder) / path.name)) for name, path in exported.items()}

    monkeypatch.setattr(EXPORT, export)


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder, rng = tmp_path_factory.mktemp("sam3_images"), np.random.default_rng(0)
    paths = []
    for i, (h, w) in enumerate([(90, 120), (112, 112), (60, 150)]):
        paths.append(folder / f"img{i}.png")
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(paths[-1])
    return paths


def _segment(model: Path, images: list[Path], out: Path, *options: str) -> dict:
    prompts = [arg for p in PROMPTS for arg in ("--prompt", p)]
    args = ["segment", *map(str, images), *prompts, "--model", str(model), "--output", str(out)]
    result = CliRunner().invoke(main, [*args, "--device", "cpu", "--threshold", "0.05", *options])
    assert result.exit_code == 0, result.output
    return json.loads((out / "segments.json").read_text())


@pytest.fixture(scope="module")
def eager(model_dir: Path, images: list[Path], tmp_path_factory: pytest.TempPathFactory) -> dict:
    return _segment(model_dir, images, tmp_path_factory.mktemp("sam3_torch"))


def _entries(model: Path) -> list[Path]:
    root = cache_root(model)
    return sorted(p for p in root.iterdir() if not p.name.startswith(".")) if root.is_dir() else []


def _iou(a: dict, b: dict) -> float:
    first, second = decode_rle(a["mask"]), decode_rle(b["mask"])
    union = np.logical_or(first, second).sum()
    return float(np.logical_and(first, second).sum() / union) if union else 1.0


def _assert_same_instances(got: dict, want: dict, score_atol: float, min_iou: float) -> None:
    """Same instances per image (matched by prompt and box), scores close, masks overlapping."""
    assert got["images"].keys() == want["images"].keys()
    total = 0
    for key, wanted in want["images"].items():
        found = got["images"][key]
        assert len(found) == len(wanted), key
        for instance in wanted:
            same = [f for f in found if f["label"] == instance["label"]]
            match = min(same, key=lambda f: np.abs(np.subtract(f["box"], instance["box"])).sum())
            assert abs(match["score"] - instance["score"]) <= score_atol
            assert np.allclose(match["box"], instance["box"], atol=0.05)
            assert _iou(match, instance) >= min_iou
        total += len(wanted)
    assert total >= 3  # the comparison is not vacuous


@pytest.mark.parametrize("backend", BACKENDS)
def test_same_instances_as_torch_and_cache_reused(
    backend: str, model_dir: Path, images: list[Path], eager: dict, copied_export, tmp_path: Path, monkeypatch
) -> None:
    before = set(_entries(model_dir))
    ran = _segment(model_dir, images, tmp_path / backend, "--backend", backend)
    assert ran["backend"] == backend and eager.get("backend") is None
    (entry,) = set(_entries(model_dir)) - before  # one entry per backend
    figures = json.loads((entry / "validation.json").read_text())
    assert figures["backend"] == backend
    assert 0 < figures["fpn_0_max_abs_diff"] <= graphs.TOLERANCES["fpn"]
    assert figures["text_features_max_abs_diff"] <= graphs.TOLERANCES["text_features"]
    _assert_same_instances(ran, eager, score_atol=1e-4, min_iou=0.98)

    # reuse: no export, no validation on a second load
    mtimes = {p.name: p.stat().st_mtime_ns for p in entry.glob("*.onnx")}
    monkeypatch.setattr(EXPORT, _fail)
    monkeypatch.setattr(graphs, "validate", _fail)
    _segment(model_dir, images[:1], tmp_path / "again", "--backend", backend)
    assert set(_entries(model_dir)) - before == {entry}
    assert {p.name: p.stat().st_mtime_ns for p in entry.glob("*.onnx")} == mtimes and len(mtimes) == 2


def _fail(*args, **kwargs):
    raise AssertionError("must not be called on a cached entry")


def test_validation_failure_is_refused(
    model_dir: Path, images: list[Path], copied_export, tmp_path: Path, monkeypatch
) -> None:
    copy = tmp_path / "model"
    shutil.copytree(model_dir, copy)
    monkeypatch.setitem(graphs.TOLERANCES, "fpn", 1e-9)
    with pytest.raises(
        GraphValidationError, match=r"image graph .* max \|diff\| fpn_0 [0-9.e-]+ \(tolerance 1e-09\)"
    ):
        graphs.load_segmenter(copy)
    assert _entries(copy) == []  # nothing cached from a refused export
    result = CliRunner().invoke(main, ["segment", str(images[0]), "--prompt", "a cat", "--model", str(copy),
                                       "--output", str(tmp_path / "out"), "--backend", "onnxruntime"])  # fmt: skip
    assert result.exit_code != 0 and "disagrees with the eager model" in result.output
    assert _entries(copy) == []


def test_text_features_are_computed_once_per_run(model_dir: Path, images: list[Path]) -> None:
    segmenter = graphs.load_torch_segmenter(model_dir, "cpu")
    calls: list[int] = []
    encode = segmenter.encode_text
    segmenter.encode_text = lambda ids: calls.append(len(ids)) or encode(ids)
    results = [segmenter(Image.open(p), list(PROMPTS), threshold=0.05) for p in images]
    assert calls == [len(PROMPTS)] and all(isinstance(r, list) for r in results)


def test_deploy_and_compile_match_torch(
    model_dir: Path, images: list[Path], eager: dict, tmp_path: Path
) -> None:
    deployed = _segment(model_dir, images, tmp_path / "deploy", "--deploy")
    assert deployed["deploy"] is True
    _assert_same_instances(deployed, eager, score_atol=1e-5, min_iou=0.99)
    compiled = _segment(model_dir, images, tmp_path / "compile", "--compile")
    assert compiled["compile"] is True
    _assert_same_instances(compiled, eager, score_atol=1e-5, min_iou=0.99)


def test_graph_backend_refuses_deploy(model_dir: Path, images: list[Path], tmp_path: Path) -> None:
    args = [
        "segment",
        str(images[0]),
        "--prompt",
        "a cat",
        "--model",
        str(model_dir),
        "--output",
        str(tmp_path),
    ]
    result = CliRunner().invoke(main, [*args, "--backend", "onnxruntime", "--deploy"])
    assert result.exit_code != 0 and "--deploy applies to --backend torch" in result.output


@pytest.mark.parametrize("backend", BACKENDS)
def test_pipeline_on_the_graphs_equals_the_eager_pipeline(
    backend: str, model_dir: Path, images: list[Path], copied_export
) -> None:
    from transformers import pipeline

    eager = pipeline("text-prompted-segmentation", model=str(model_dir))
    graph = graphs.load_segmenter(model_dir, backend).pipeline()
    total = 0
    for path in images:
        want = eager(str(path), prompts=list(PROMPTS), threshold=0.05)
        got = graph(str(path), prompts=list(PROMPTS), threshold=0.05)
        assert [r["label"] for r in got] == [r["label"] for r in want]
        assert np.allclose([r["score"] for r in got], [r["score"] for r in want], atol=1e-4)
        for a, b in zip(got, want, strict=True):
            union = np.logical_or(a["mask"], b["mask"]).sum()
            assert union == 0 or np.logical_and(a["mask"], b["mask"]).sum() / union >= 0.98
        total += len(want)
    assert total >= 3  # the comparison is not vacuous
