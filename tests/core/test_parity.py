"""Every golden case (visible ones and $VISIONPORTS_FIXTURES) passes the parity tool."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file, save_file

from golden import golden_cases
from visionports.cli import main
from visionports.core.parity import compare_tensors, run_parity
from visionports.core.registry import family_names, get_family

CASES = golden_cases("deimv2")
ALL_CASES = [(m, case) for m in family_names() for case in golden_cases(m)]


@pytest.mark.parametrize(("model", "case_dir"), ALL_CASES, ids=[f"{m}/{c.name}" for m, c in ALL_CASES])
def test_golden_case(model: str, case_dir: Path) -> None:
    report = run_parity(get_family(model), case_dir)
    assert report.ok, report.render()
    if (case_dir / "outputs_float64.safetensors").is_file():
        assert "float64" in report.sections  # the strict check ran


def test_visible_cases_present() -> None:
    assert {"atto_s0_b1_320", "dinov3_s_tiny_s0_b1_256"} <= {c.name for c in CASES}
    assert "dinov2_tiny_s0_b1_t3" in {c.name for c in golden_cases("videomt")}


def test_cli_parity_exit_codes(tmp_path: Path) -> None:
    case = next(c for c in CASES if c.name == "atto_s0_b1_320")
    runner = CliRunner()
    ok = runner.invoke(main, ["parity", "deimv2", str(case), "--no-float64"])
    assert ok.exit_code == 0, ok.output
    assert "PARITY OK" in ok.output and "pred_logits" in ok.output

    broken = tmp_path / "broken"
    shutil.copytree(case, broken)
    reference = load_file(str(broken / "outputs.safetensors"))
    limit = json.loads((broken / "case.json").read_text())["tolerance"]["float32"]["per_tensor_atol"][
        "pred_logits"
    ]
    reference["pred_logits"][0, 0, 0] += 2 * limit  # the original's result moved beyond the tolerance
    save_file(reference, str(broken / "outputs.safetensors"))
    failed = runner.invoke(main, ["parity", "deimv2", str(broken), "--no-float64"])
    assert failed.exit_code == 1
    assert "PARITY FAILED" in failed.output and "first divergence: pred_logits" in failed.output


def test_manifest_case(tmp_path: Path) -> None:
    case = next(c for c in CASES if c.name == "dinov3_s_tiny_s0_b1_256")
    checkpoint = torch.load(case / "checkpoint.pth", map_location="cpu", weights_only=True)["model"]
    keys = [
        {"name": k, "shape": list(v.shape), "dtype": str(v.dtype).replace("torch.", "")}
        for k, v in checkpoint.items()
    ]
    manifest = tmp_path / "manifest"
    manifest.mkdir()
    (manifest / "keys.json").write_text(json.dumps({"variant": "s", "keys": keys}))
    report = run_parity(get_family("deimv2"), manifest)
    assert report.ok, report.render()

    incomplete = tmp_path / "incomplete"
    incomplete.mkdir()
    dropped = [k for k in keys if k["name"] != "decoder.enc_score_head.bias"]
    dropped.append({"name": "decoder.extra_head.weight", "shape": [3, 3]})
    (incomplete / "keys.json").write_text(json.dumps({"variant": "s", "keys": dropped}))
    report = run_parity(get_family("deimv2"), incomplete)
    assert not report.ok
    text = report.render()
    assert "model.decoder.enc_score_head.bias" in text and "decoder.extra_head.weight" in text


def test_compare_tensors_integer_and_float() -> None:
    ref = {"a": torch.tensor([1.0, 2.0]), "idx": torch.tensor([3, 1])}
    ours = {"a": torch.tensor([1.0, 2.5]), "idx": torch.tensor([1, 3])}
    checks = {c.name: c for c in compare_tensors(ours, ref, ["a", "idx"], {"a": 0.1}, 1e-5, {"a"})}
    assert not checks["a"].passed and checks["a"].max_abs == pytest.approx(0.5)
    assert not checks["idx"].passed and checks["idx"].final


def test_report_has_a_row_per_stage() -> None:
    case = next(c for c in CASES if c.name == "atto_s0_b1_320")
    result = CliRunner().invoke(main, ["parity", "deimv2", str(case), "--no-float64"])
    assert result.exit_code == 0, result.output
    rows = {line.split()[0]: line for line in result.output.splitlines() if line.split()[:1]}
    for stage in ("converted", "reloaded", "processor", "post-processing"):
        assert stage in rows, result.output
    assert "pass" in rows["converted"] and "all bit-identical" in rows["reloaded"]


def test_a_reload_that_changes_a_weight_fails_the_reloaded_stage(monkeypatch: pytest.MonkeyPatch) -> None:
    """The reloaded stage is an exact comparison: one weight moved by 1e-6 after loading fails it."""
    import visionports.core.parity as parity

    real_load_saved = parity.load_saved

    def drifting_load_saved(family, folder):
        model, processor = real_load_saved(family, folder)
        with torch.no_grad():
            next(model.parameters()).add_(1e-6)
        return model, processor

    monkeypatch.setattr(parity, "load_saved", drifting_load_saved)
    case = next(c for c in CASES if c.name == "atto_s0_b1_320")
    report = run_parity(get_family("deimv2"), case, float64=False)
    assert not report.ok
    assert report.stage_passed("converted") and not report.stage_passed("reloaded")
    assert "reloaded         FAIL" in report.render_stages()


def test_compare_exact_treats_nan_and_inf_as_values() -> None:
    from visionports.core.parity import compare_exact

    ref = {"x": torch.tensor([1.0, float("nan"), float("inf")]), "i": torch.tensor([1, 2])}
    same = compare_exact({k: v.clone() for k, v in ref.items()}, ref, [])
    assert all(c.passed for c in same)
    moved = compare_exact({"x": torch.tensor([1.0, float("nan"), 1e30]), "i": torch.tensor([1, 3])}, ref, [])
    assert [c.passed for c in moved] == [False, False]


def test_docs_show_the_stage_rows_the_tool_prints() -> None:
    """docs/parity.md's example is the atto case's actual stage summary."""
    docs = (Path(__file__).resolve().parents[2] / "docs" / "parity.md").read_text()
    example = docs.split("```\nstage", 1)[1].split("```", 1)[0]
    case = next(c for c in CASES if c.name == "atto_s0_b1_320")
    report = run_parity(get_family("deimv2"), case)
    printed = report.render_stages().splitlines()
    shown = ("stage" + example).strip().splitlines()
    assert shown[0] == printed[0]
    assert [row.split()[:2] for row in shown[1:-1]] == [row.split()[:2] for row in printed[1:]]
    assert shown[-1] == "PARITY OK" and report.ok


def test_one_reading_of_every_tolerance_schema() -> None:
    from visionports.core.parity import read_tolerance

    deimv2 = {"tolerance": {"float32": {"per_tensor_atol": {"pred_logits": 9e-3}, "rtol": 0.0}}}
    assert read_tolerance(deimv2, "float32") == ({"pred_logits": 9e-3}, 1e-5, 0.0)
    assert read_tolerance(deimv2, "float64") == ({}, 1e-8, 0.0)
    videomt = {"tolerances": {"suggested_port_float32": {"atol": 1e-5, "rtol": 1e-4}}}
    assert read_tolerance(videomt, "float32") == ({}, 1e-5, 1e-4)
    sam3 = {
        "tolerances": {"float32_max_abs_diff": 1e-4, "note": "post_boxes_xyxy is in pixels: 1e-2. Others"},
        "outputs": [{"name": "p0_post_boxes_xyxy"}, {"name": "p0_pred_logits"}],
    }
    assert read_tolerance(sam3, "float32") == ({"p0_post_boxes_xyxy": 1e-2}, 1e-4, 0.0)
    assert read_tolerance({}, "float32") == ({}, 1e-5, 0.0)
