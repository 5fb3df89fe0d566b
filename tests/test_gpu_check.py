"""benchmarks/gpu_check.py on the CPU (``--device cpu``): the table, the JSON and the exit status."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"
FAMILIES = "videomt,aimv2"
CPU = torch.device("cpu")
KEYS = {"family", "case", "dtype", "output", "max_abs", "cosine", "median_abs", "finite", "bound", "passed",
        "golden_max_abs", "note"}  # fmt: skip


@pytest.fixture(scope="module")
def gpu_check() -> ModuleType:
    spec = importlib.util.spec_from_file_location("benchmarks_gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module's annotations through sys.modules
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def report(gpu_check: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> tuple[int, dict]:
    output = tmp_path_factory.mktemp("gpu_check") / "out.json"
    status = gpu_check.main(["--device", "cpu", "--families", FAMILIES, "--output", str(output)])
    return status, json.loads(output.read_text())


def test_cpu_run_passes_with_finite_rows(report: tuple[int, dict]) -> None:
    status, payload = report
    assert status == 0 and payload["ok"]
    rows = payload["rows"]
    assert {r["family"] for r in rows} == {"videomt", "aimv2"}
    assert {r["dtype"] for r in rows} == {"float32", "bfloat16", "float16"}
    for row in rows:
        assert set(row) == KEYS
        assert row["passed"] and row["finite"], row
        assert math.isfinite(row["max_abs"]) and math.isfinite(row["cosine"]), row
    assert {r["output"] for r in rows if r["family"] == "videomt"} == {
        "class_logits", "mask_logits", "propagated_queries"}  # fmt: skip
    assert {r["output"] for r in rows if r["family"] == "aimv2"} == {"last_hidden_state", "pooler_output"}


def test_float32_cpu_equals_reference_and_matches_golden(report: tuple[int, dict]) -> None:
    fp32 = [r for r in report[1]["rows"] if r["dtype"] == "float32"]
    assert fp32 and all(r["cosine"] == 1.0 and r["max_abs"] == 0.0 for r in fp32)
    assert all(r["golden_max_abs"] is not None and r["bound"].startswith("golden atol") for r in fp32)
    half = [r for r in report[1]["rows"] if r["dtype"] != "float32"]
    assert all(0.99 <= r["cosine"] < 1.0 and r["max_abs"] > 0 for r in half if r["dtype"] == "bfloat16")


def test_flash_is_skipped_on_cpu(report: tuple[int, dict]) -> None:
    assert report[1]["flash"] == [] and report[1]["flash_skipped"].startswith("skipped:")


def test_table_and_failing_bound(gpu_check: ModuleType, capsys: pytest.CaptureFixture[str],
                                 monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.setitem(gpu_check.HALF_COSINE, "bfloat16", 1.01)  # unreachable: every bf16 row must fail
    assert gpu_check.main(["--device", "cpu", "--families", "videomt"]) == 1
    out = capsys.readouterr().out
    lines = [line.split() for line in out.splitlines() if line.startswith("videomt")]
    assert len(lines) == 9 and {line[2] for line in lines} == {"float32", "bfloat16", "float16"}
    assert all(line[-1] == ("FAIL" if line[2] == "bfloat16" else "pass") for line in lines)
    assert "GPU CHECK FAILED" in out and "\n  skipped: " in out  # no flash check on the CPU


def test_float32_outside_golden_tolerance_fails(
    gpu_check: ModuleType, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(gpu_check, "PACKED_ATOL", 0.0)  # packed vs standard differs by ~1e-7: must fail
    rows = gpu_check.check_target(lambda: gpu_check.packed_target("aimv2", tmp_path), "aimv2", "s0", CPU)
    assert {r.dtype for r in rows if not r.passed} == {"float32"}


def test_unknown_family_is_refused(gpu_check: ModuleType) -> None:
    with pytest.raises(SystemExit, match="unknown 'yolo'"):
        gpu_check.parse_families("videomt,yolo")
    assert gpu_check.parse_families("packed,aimv2") == ["aimv2", "siglip2", "dinov3"]
