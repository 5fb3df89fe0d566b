"""benchmarks/gpu_benchmark.py on the CPU (``--device cpu --quick``): rows, parity, skips and the exit status."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")


@pytest.fixture(scope="module")
def script(request: pytest.FixtureRequest):
    sys.path.insert(0, str(BENCHMARKS))
    request.addfinalizer(lambda: sys.path.remove(str(BENCHMARKS)))
    import gpu_benchmark

    return gpu_benchmark


def _run(script, tmp_path: Path, family: str) -> tuple[int, list[dict]]:
    output = tmp_path / "out.json"
    args = ["--device", "cpu", "--quick", "--repeats", "2", "--no-compile", "--families", family]
    status = script.main([*args, "--output", str(output)])
    return status, json.loads(output.read_text())["rows"]


def test_deimv2_rows_time_every_backend_and_check_graph_parity(script, tmp_path: Path) -> None:
    status, rows = _run(script, tmp_path, "DEIMv2")
    assert status == 0
    by_backend = {r["backend"]: r for r in rows}
    for name in ("upstream eager", "ours eager", "ours deploy()"):
        assert by_backend[name]["median_ms"] > 0 and by_backend[name]["note"] == "", by_backend[name]
    graph = by_backend["onnxruntime (CPU provider)"]
    assert graph["parity_ok"] is True and set(graph["parity"]) == {"logits", "pred_boxes"}
    assert graph["parity"]["logits"] < 5e-3 and graph["median_ms"] > 0
    trt = [r for r in rows if r["backend"].startswith("tensorrt")]
    assert len(trt) == 2 and all(r["note"] == "skipped: TensorRT needs CUDA" for r in trt)


def test_graph_beyond_tolerance_fails_the_run(script, tmp_path: Path, monkeypatch) -> None:
    import gpu_cases

    real = gpu_cases.deimv2_cases

    def strict(quick: bool):
        found = real(quick)
        for case in found:
            case.tolerances = {"logits": 0.0}
        return found

    monkeypatch.setattr(gpu_cases, "deimv2_cases", strict)
    monkeypatch.setattr(gpu_cases, "all_cases", lambda quick: gpu_cases.deimv2_cases(quick))
    status, rows = _run(script, tmp_path, "DEIMv2")
    assert status == 1
    assert [r["parity_ok"] for r in rows if r["parity_ok"] is not None] == [False]


def test_packed_rows_time_each_path_and_skip_flash_without_cuda(script, tmp_path: Path) -> None:
    status, rows = _run(script, tmp_path, "packed")
    assert status == 0 and {r["family"] for r in rows} == {"aimv2"}
    by_backend = {r["backend"]: r for r in rows}
    assert by_backend["ours packed, flash varlen"]["note"] == "skipped: flash-attn varlen needs CUDA"
    for name in (
        "ours packed, per-image SDPA",
        "pad-and-mask (upstream layers)",
        "one upstream call per image",
    ):
        assert by_backend[name]["median_ms"] > 0 and by_backend[name]["note"] == "", by_backend[name]
