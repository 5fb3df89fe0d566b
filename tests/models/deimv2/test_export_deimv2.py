"""ONNX and torch.export of DEIMv2: onnxruntime against eager PyTorch on the golden checkpoints."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

from golden import FIXTURES
from visionports import Deimv2ForObjectDetection
from visionports.cli import main
from visionports.models.deimv2.export_deimv2 import export_onnx, export_program, export_wrapper

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

CASES = {"atto": "atto_s0_b1_320", "dinov3_s": "dinov3_s_tiny_s0_b1_256"}


@pytest.fixture(scope="module", params=sorted(CASES))
def converted(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    case = FIXTURES / "deimv2" / CASES[request.param]
    out = tmp_path_factory.mktemp("export") / request.param
    result = CliRunner().invoke(main, ["convert", "deimv2", str(case / "checkpoint.pth"), str(out)])
    assert result.exit_code == 0, result.output
    return case, out


def _batch(case: Path, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The golden image followed by perturbed copies, and (width, height) sizes per image."""
    inputs = load_file(case / "inputs.safetensors")
    pixels = inputs["pixel_values"][:1]
    generator = torch.Generator().manual_seed(0)
    noise = 0.05 * torch.randn((batch_size - 1, *pixels.shape[1:]), generator=generator)
    batch = torch.cat([pixels, pixels + noise]) if batch_size > 1 else pixels
    sizes = torch.tensor([[640, 480], [320, 320], [1000, 200], [77, 99]][:batch_size], dtype=torch.int64)
    return batch, sizes


def _session(path: Path):
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def test_onnx_matches_eager(converted: tuple[Path, Path], tmp_path: Path) -> None:
    case, model_dir = converted
    model = Deimv2ForObjectDetection.from_pretrained(model_dir).eval()
    reference = Deimv2ForObjectDetection.from_pretrained(model_dir).eval().double()
    raw = _session(export_onnx(model, tmp_path / "raw.onnx", dynamic_batch=True))
    post = _session(export_onnx(model, tmp_path / "post.onnx", dynamic_batch=True, postprocess=True))
    assert [i.name for i in post.get_inputs()] == ["pixel_values", "orig_target_sizes"]
    assert [o.name for o in post.get_outputs()] == ["labels", "boxes", "scores"]
    for batch_size in (1, 4):
        pixels, sizes = _batch(case, batch_size)
        with torch.no_grad():
            eager = model(pixels)
            exact = reference(pixels.double())
        logits, boxes = (torch.from_numpy(a) for a in raw.run(None, {"pixel_values": pixels.numpy()}))
        assert logits.shape == eager.logits.shape and boxes.shape == eager.pred_boxes.shape
        # float32 round-off of these random weights: eager float32 is itself up to ~1e-3 from float64 on logits,
        # so the ONNX graph is held to the same order of error against the float64 truth
        eager_error = (eager.logits.double() - exact.logits).abs().max().item()
        onnx_error = (logits.double() - exact.logits).abs().max().item()
        assert onnx_error <= 4 * eager_error + 1e-4, (onnx_error, eager_error)
        assert (logits - eager.logits).abs().max() <= 5e-3
        assert (boxes - eager.pred_boxes).abs().max() <= 1e-3

        labels, pixel_boxes, scores = post.run(
            None, {"pixel_values": pixels.numpy(), "orig_target_sizes": sizes.numpy()}
        )
        with torch.no_grad():
            ref_labels, ref_boxes, ref_scores = export_wrapper(model, postprocess=True)(pixels, sizes)
        assert labels.shape == tuple(ref_labels.shape) == (batch_size, 300)
        assert (torch.from_numpy(scores) - ref_scores).abs().max() <= 1e-3
        # sorted scores are robust to swaps of near-tied pairs; the leading detections are not tied here
        assert torch.equal(torch.from_numpy(labels[:, :10]), ref_labels[:, :10])
        assert (torch.from_numpy(pixel_boxes[:, :10]) - ref_boxes[:, :10]).abs().max() <= 1e-3 * sizes.max()


def test_torch_export_program_runs(converted: tuple[Path, Path]) -> None:
    case, model_dir = converted
    model = Deimv2ForObjectDetection.from_pretrained(model_dir).eval()
    program = export_program(model, dynamic_batch=True, postprocess=True)
    pixels, sizes = _batch(case, 3)
    with torch.no_grad():
        labels, boxes, scores = program.module()(pixels, sizes)
        ref_labels, ref_boxes, ref_scores = export_wrapper(model, postprocess=True)(pixels, sizes)
    assert torch.equal(labels, ref_labels)
    torch.testing.assert_close(boxes, ref_boxes, rtol=0, atol=1e-4 * sizes.max().item())
    torch.testing.assert_close(scores, ref_scores, rtol=0, atol=1e-6)


def test_cli_export_and_errors(converted: tuple[Path, Path], tmp_path: Path) -> None:
    _, model_dir = converted
    out = tmp_path / "model.onnx"
    result = CliRunner().invoke(
        main, ["export", "--model", str(model_dir), "--output", str(out), "--static-batch"]
    )
    assert result.exit_code == 0, result.output
    assert "static batch" in result.output and "deimv2 ->" in result.output
    session = _session(out)
    assert session.get_inputs()[0].shape[0] == 1
    again = CliRunner().invoke(main, ["export", "--model", str(model_dir), "--output", str(out)])
    assert again.exit_code != 0 and "--overwrite" in again.output
    old_form = CliRunner().invoke(main, ["export", "deimv2", str(model_dir), str(out), "--overwrite"])
    assert old_form.exit_code == 0 and "deprecated" in old_form.stderr and "dynamic batch" in old_form.stdout
    bad_size = CliRunner().invoke(main, ["export", "--model", str(model_dir), "--output", str(tmp_path / "b.onnx"), "--image-size", "100", "64"])  # fmt: skip
    assert bad_size.exit_code != 0 and "multiples of 32" in bad_size.output
    assert not (tmp_path / "b.onnx").exists()
    not_model = CliRunner().invoke(
        main, ["export", "--model", str(tmp_path), "--output", str(tmp_path / "c.onnx")]
    )
    assert not_model.exit_code != 0 and "config.json" in not_model.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]


def test_opset_too_low_is_refused(converted: tuple[Path, Path], tmp_path: Path) -> None:
    _, model_dir = converted
    model = Deimv2ForObjectDetection.from_pretrained(model_dir).eval()
    with pytest.raises(ValueError, match="opset"):
        export_onnx(model, tmp_path / "x.onnx", opset=16)
    assert not (tmp_path / "x.onnx").exists()
