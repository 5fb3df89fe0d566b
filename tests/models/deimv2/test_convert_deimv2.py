"""Conversion of original DEIMv2 checkpoints: CLI, variant inference, checkpoint formats and failures."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file
from transformers import AutoImageProcessor, AutoModelForObjectDetection

from golden import FIXTURES
from visionports.cli import main
from visionports.core.checkpoint import CheckpointError
from visionports.core.conversion import convert_checkpoint
from visionports.core.registry import get_family
from visionports.models.deimv2.convert_deimv2 import guess_variant, infer_config, verify_recomputed_buffers

ATTO = FIXTURES / "deimv2" / "atto_s0_b1_320"
VIT_S = FIXTURES / "deimv2" / "dinov3_s_tiny_s0_b1_256"


def _state_dict(case: Path) -> dict[str, torch.Tensor]:
    return torch.load(case / "checkpoint.pth", map_location="cpu", weights_only=True)["model"]


def _convert(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["convert", "deimv2", *args])
    return result.exit_code, result.output


def _assert_matches_fixture(folder: Path, case: Path) -> None:
    model = AutoModelForObjectDetection.from_pretrained(folder).eval()
    inputs, outputs = (
        load_file(str(case / "inputs.safetensors")),
        load_file(str(case / "outputs.safetensors")),
    )
    with torch.no_grad():
        out = model(inputs["pixel_values"])
    torch.testing.assert_close(out.logits, outputs["pred_logits"], atol=9e-3, rtol=0)
    torch.testing.assert_close(out.pred_boxes, outputs["pred_boxes"], atol=9e-4, rtol=0)


def test_cli_converts_and_infers_the_variant(tmp_path: Path) -> None:
    out = tmp_path / "atto"
    code, text = _convert(str(ATTO / "checkpoint.pth"), str(out))
    assert code == 0, text
    assert "deimv2 (atto): 508,983 parameters" in text and "missing 0 / unexpected 0 / mis-shaped 0" in text
    assert {"config.json", "model.safetensors", "preprocessor_config.json"} <= {p.name for p in out.iterdir()}
    _assert_matches_fixture(out, ATTO)
    config = AutoModelForObjectDetection.from_pretrained(out).config
    assert config.id2label[0] == "person" and config.id2label[79] == "toothbrush"  # COCO names
    processor = AutoImageProcessor.from_pretrained(out)
    assert processor.size == {"height": 320, "width": 320} and not processor.do_normalize


def test_vit_case_infers_eval_size_and_normalisation(tmp_path: Path) -> None:
    sd = _state_dict(VIT_S)
    assert guess_variant(sd) == "s"
    config = infer_config(sd)
    assert config.eval_image_size == [256, 256]
    assert (config.vit_hidden_size, config.vit_num_heads, config.backbone_hidden_dim, config.d_model) == (
        48,
        3,
        80,
        80,
    )
    assert config.image_mean == [0.485, 0.456, 0.406]
    code, text = _convert(str(VIT_S / "checkpoint.pth"), str(tmp_path / "s"), "--variant", "s")
    assert code == 0, text
    _assert_matches_fixture(tmp_path / "s", VIT_S)
    assert AutoImageProcessor.from_pretrained(tmp_path / "s").do_normalize


def test_training_checkpoint_uses_ema_weights(tmp_path: Path) -> None:
    sd = _state_dict(ATTO)
    decoy = {k: torch.zeros_like(v) for k, v in sd.items()}
    torch.save(
        {"model": decoy, "ema": {"module": sd, "updates": 10}, "last_epoch": 3}, tmp_path / "train.pth"
    )
    code, text = _convert(str(tmp_path / "train.pth"), str(tmp_path / "out"))
    assert code == 0, text
    _assert_matches_fixture(tmp_path / "out", ATTO)


def test_bad_checkpoints_write_nothing(tmp_path: Path) -> None:
    sd = _state_dict(ATTO)
    torch.save({"model": sd, "hook": print}, tmp_path / "code.pth")  # a pickled callable
    data = (ATTO / "checkpoint.pth").read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[: len(data) // 3])
    torch.save({"model": {"encoder.weight": torch.ones(3)}}, tmp_path / "other.pth")
    for name, message in [("code.pth", "refusing to load"), ("cut.pth", "truncated or corrupt"),
                          ("other.pth", "not a DEIMv2 checkpoint")]:  # fmt: skip
        out = tmp_path / f"out_{name}"
        code, text = _convert(str(tmp_path / name), str(out))
        assert code != 0 and message in text, text
        assert not out.exists()
    code, text = _convert(str(ATTO / "checkpoint.pth"), str(tmp_path / "wrong"), "--variant", "s")
    assert code != 0 and "hgnetv2 backbone but variant 's'" in text
    assert not (tmp_path / "wrong").exists()


def test_incomplete_checkpoint_is_refused_unless_partial(tmp_path: Path) -> None:
    sd = _state_dict(ATTO)
    del sd["decoder.enc_score_head.bias"]
    sd["decoder.unknown_head.weight"] = torch.ones(2)
    torch.save({"model": sd}, tmp_path / "partial.pth")
    code, text = _convert(str(tmp_path / "partial.pth"), str(tmp_path / "out"))
    assert code != 0
    assert "model.decoder.enc_score_head.bias" in text and "decoder.unknown_head.weight" in text
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.partial-*"))
    code, text = _convert(str(tmp_path / "partial.pth"), str(tmp_path / "out"), "--allow-partial")
    assert code == 0 and "missing 1 / unexpected 1" in text


def test_existing_output_needs_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    code, text = _convert(str(ATTO / "checkpoint.pth"), str(out))
    assert code != 0 and "--overwrite" in text and (out / "keep.txt").exists()
    code, text = _convert(str(ATTO / "checkpoint.pth"), str(out), "--overwrite")  # not a conversion output
    assert code != 0 and "does not look like a visionports conversion output" in text
    assert (out / "keep.txt").read_text() == "x"
    (out / "keep.txt").unlink()
    assert _convert(str(ATTO / "checkpoint.pth"), str(out))[0] == 0  # an empty folder is fine
    # a previous output is replaced
    code, text = _convert(str(ATTO / "checkpoint.pth"), str(out), "--overwrite")
    assert code == 0 and (out / "config.json").is_file()


def test_stored_anchors_are_checked() -> None:
    sd = _state_dict(ATTO)
    config = infer_config(sd)
    verify_recomputed_buffers(sd, config)
    config.eval_image_size = [640, 640]
    with pytest.raises(CheckpointError, match="differ from the anchors"):
        verify_recomputed_buffers(sd, config)
    sd["decoder.anchors"] = sd["decoder.anchors"].clone()
    sd["decoder.anchors"][0, 0, 0] += 1
    with pytest.raises(CheckpointError, match="differ from the anchors"):
        verify_recomputed_buffers(sd, infer_config(_state_dict(ATTO)))


def test_ddp_prefix_and_tied_parameters() -> None:
    sd = {"module." + k: v for k, v in _state_dict(ATTO).items()}
    prepare = get_family("deimv2").prepare  # the prefix goes once, before the converter reads the weights
    assert infer_config(prepare(sd)).share_bbox_head is True
    sd["module.decoder.dec_bbox_head.1.layers.0.weight"] = torch.zeros_like(
        sd["module.decoder.dec_bbox_head.1.layers.0.weight"]
    )
    assert infer_config(prepare(sd)).share_bbox_head is False  # heads that differ are not shared


@pytest.mark.parametrize("prefix", ["module.", "ema.module.", "model.module."])
def test_wrapped_checkpoint_converts_identically(tmp_path: Path, prefix: str) -> None:
    sd = _state_dict(ATTO)
    torch.save({"model": {prefix + k: v for k, v in sd.items()}}, tmp_path / "wrapped.pth")
    family = get_family("deimv2")
    bare = convert_checkpoint(family, ATTO / "checkpoint.pth", progress=False)
    wrapped = convert_checkpoint(family, tmp_path / "wrapped.pth", progress=False)
    assert wrapped.config.to_dict() == bare.config.to_dict()
    assert wrapped.report.summary() == bare.report.summary()
    ours, theirs = wrapped.model.state_dict(), bare.model.state_dict()
    assert list(ours) == list(theirs) and all(torch.equal(ours[k], theirs[k]) for k in ours)


def test_safetensors_export_without_duplicate_tensors(tmp_path: Path) -> None:
    """Hugging Face uploads (safetensors) keep one copy of tied/shared tensors."""
    from safetensors.torch import save_file

    sd = _state_dict(ATTO)
    for key in [k for k in sd if k.startswith(("decoder.decoder.up", "decoder.decoder.reg_scale"))
                or k.startswith(("decoder.dec_bbox_head.1.", "decoder.dec_bbox_head.2."))]:  # fmt: skip
        del sd[key]
    save_file({k: v.contiguous() for k, v in sd.items()}, str(tmp_path / "model.safetensors"))
    assert infer_config(sd).share_bbox_head is True
    code, text = _convert(str(tmp_path / "model.safetensors"), str(tmp_path / "out"))
    assert code == 0 and "missing 0 / unexpected 0" in text, text
    _assert_matches_fixture(tmp_path / "out", ATTO)


def test_backbone_is_read_once_and_intermediates_stay_out_of_the_config(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from visionports.models.deimv2 import convert_deimv2

    calls = []
    read = convert_deimv2._infer_hgnet
    monkeypatch.setattr(convert_deimv2, "_infer_hgnet", lambda sd: calls.append(1) or read(sd))
    sd = _state_dict(ATTO)
    config = infer_config(get_family("deimv2").prepare({f"module.{k}": v for k, v in sd.items()}))
    assert len(calls) == 1 and config.to_dict() == infer_config(sd).to_dict()
    layout = convert_deimv2._infer_encoder(sd)
    assert not any(k.startswith("_") for k in layout.values) and layout.csp_blocks > 0
    assert not {"_csp_channels", "_csp_blocks", "_num_aifi"} & set(config.to_dict())


def test_named_variant_is_checked_against_the_weights() -> None:
    sd = _state_dict(ATTO)
    with pytest.raises(CheckpointError, match="--variant femto has .* those of variant 'atto'"):
        infer_config(sd, variant="femto")
    with pytest.raises(ValueError, match="unknown DEIMv2 setting 'no_such_key'"):
        infer_config(sd, no_such_key=1)
    assert infer_config(sd, variant="atto").to_dict() == infer_config(sd).to_dict()
