"""Hostile inputs to what conversion infers from weights and settings: crafted tables, bad values, wrong variants.

Each case must end in one clear error (naming the key) or a correct result: never a hang, a traceback or a
model that crashes later.
"""

from __future__ import annotations

import logging
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from huggingface_hub.errors import StrictDataclassError

from golden import FIXTURES
from visionports.cli import main
from visionports.core.checkpoint import CheckpointError, load_state_dict
from visionports.models.deimv2 import Deimv2Config
from visionports.models.deimv2.convert_deimv2 import infer_config as deimv2_config
from visionports.models.sam3_lite_text.configuration_sam3_lite_text import (
    Sam3LiteTextConfig,
    Sam3LiteTextTextConfig,
)
from visionports.models.sam3_lite_text.convert_sam3_lite_text import TEXT_PREFIX, strip_prefixes
from visionports.models.sam3_lite_text.convert_sam3_lite_text import infer_config as sam3_config
from visionports.models.videomt import VideomtConfig
from visionports.models.videomt.convert_videomt import infer_config as videomt_config

ATTO = FIXTURES / "deimv2" / "atto_s0_b1_320" / "checkpoint.pth"
VIDEOMT = FIXTURES / "videomt" / "dinov2_tiny_s0_b1_t3" / "checkpoint.pth"
SAM3_TEXT = FIXTURES / "sam3_lite_text" / "s0_mct_reduced_ctx16" / "checkpoint.pt"
SAM3_FULL = FIXTURES / "sam3_lite_text" / "tiny_detector_s0_mct_seed5" / "checkpoint.pt"
SCALE = "decoder.decoder.layers.0.cross_attn.num_points_scale"
BAD_SCALES = {"two": 2.0, "inf": float("inf"), "nan": float("nan"), "zero": 0.0, "negative": -0.25,
              "not_a_run": 0.6, "huge": 1e30}  # fmt: skip


def _atto() -> dict[str, torch.Tensor]:
    return dict(load_state_dict(ATTO)[0])


def _one_line_error(args: list[str], tmp_path: Path) -> str:
    """Run ``visionports convert``; assert exit 1, one ``Error:`` line and nothing written; return it."""
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["convert", *args[:2], str(out), *args[2:]])
    assert result.exit_code == 1, result.output
    lines = re.findall(r"Error: [^\r\n]*", result.output)
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    assert result.output.rstrip().endswith(lines[0])
    assert not out.exists()
    return lines[0]


# --- DEIMv2: num_points_scale (the hang) and values read from weights ----------------------------------


def test_crafted_num_points_scale_is_refused_quickly_in_a_bounded_subprocess() -> None:
    """Old code: ``i += round(1 / scale[i])`` adds 0 forever. Run under a timeout and a memory cap."""
    script = (
        textwrap.dedent(f"""
        import resource, torch
        resource.setrlimit(resource.RLIMIT_AS, (6 << 30, 6 << 30))
        from visionports.core.checkpoint import load_state_dict
        from visionports.models.deimv2.convert_deimv2 import infer_config
        sd = dict(load_state_dict({str(ATTO)!r})[0])
        for name, value in {BAD_SCALES!r}.items():
            crafted = dict(sd)
            table = sd[{SCALE!r}].clone()
            table[0] = value
            crafted[{SCALE!r}] = table
            try:
                infer_config(crafted)
                print(name, "accepted")
            except Exception as err:
                print(name, type(err).__name__, {SCALE!r} in str(err))
    """)
        .replace("inf,", "float('inf'),")
        .replace("nan,", "float('nan'),")
    )
    try:
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("infer_config did not return within 60 s on a crafted num_points_scale (hang)")
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split("\n")[:-1] == [f"{name} CheckpointError True" for name in BAD_SCALES]


@pytest.mark.parametrize(
    "value", [float("nan"), 0.0, -1.0], ids=["nan", "zero", "negative"]
)  # 2.0: subprocess above
def test_num_points_scale_value_names_the_key(value: float) -> None:
    sd = _atto()
    sd[SCALE] = torch.full_like(sd[SCALE], value)
    with pytest.raises(CheckpointError, match=r"num_points_scale holds"):
        deimv2_config(sd)


def test_all_nan_weights_name_the_key_not_a_float_conversion() -> None:
    sd = {k: torch.full_like(v, float("nan")) if v.is_floating_point() else v for k, v in _atto().items()}
    with pytest.raises(CheckpointError) as err:
        deimv2_config(sd)
    assert "num_points_scale" in str(err.value) and "cannot convert float NaN" not in str(err.value)


@pytest.mark.parametrize("key", ["decoder.up", "decoder.reg_scale"])
def test_non_finite_scalars_are_refused(key: str) -> None:
    sd = _atto()
    sd[key] = torch.tensor([float("inf")])
    with pytest.raises(CheckpointError, match=key.replace(".", r"\.") + " holds inf"):
        deimv2_config(sd)


@pytest.mark.parametrize(
    ("key", "shape"),
    [(SCALE, (0,)), (SCALE, ()), ("decoder.enc_score_head.weight", (80,)), ("decoder.anchors", (7,)),
     ("decoder.decoder.layers.0.cross_attn.sampling_offsets.weight", (7, 64))],
)  # fmt: skip
def test_damaged_shapes_give_a_checkpoint_error(key: str, shape: tuple[int, ...]) -> None:
    sd = _atto()
    sd[key] = torch.zeros(shape)
    with pytest.raises(CheckpointError):
        deimv2_config(sd) if key != "decoder.anchors" else _convert_in_memory(sd)


def _convert_in_memory(sd: dict[str, torch.Tensor]) -> None:
    from visionports.models.deimv2.convert_deimv2 import verify_recomputed_buffers

    verify_recomputed_buffers(sd, deimv2_config(sd))


# --- DEIMv2: variant contradictions, settings, CLI -------------------------------------------------------


def test_atto_weights_with_variant_femto_are_refused(tmp_path: Path) -> None:
    line = _one_line_error(["deimv2", str(ATTO), "--variant", "femto"], tmp_path)
    assert "--variant femto" in line and "'atto'" in line and "num_queries (femto: 150, atto: 100)" in line
    assert deimv2_config(_atto(), variant="atto").num_queries == 100  # the right variant still converts


@pytest.mark.parametrize(
    ("setting", "key"),
    [("num_queries=0", "num_queries"), ("num_attention_heads=-1", "decoder_attention_heads"),
     ("num_attention_heads=0", "decoder_attention_heads"), ("num_queries=1.5", "num_queries"),
     ("d_model=true", "d_model"), ("reg_scale=NaN", "reg_scale"), ("eval_image_size=[330, 330]", "eval_image_size"),
     ("hgnet_out_indices=[9]", "hgnet_out_indices"), ("no_such_key=1", "no_such_key"),
     ("num_querys=3", "num_queries")],
)  # fmt: skip
def test_bad_settings_give_one_error_line_naming_the_key(setting: str, key: str, tmp_path: Path) -> None:
    line = _one_line_error(["deimv2", str(ATTO), "--set", setting], tmp_path)
    assert key in line


@pytest.mark.parametrize("size", ["0", "-32"])
def test_non_positive_image_size_is_a_usage_error(size: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["convert", "deimv2", str(ATTO), str(tmp_path / "o"), "--image-size", size]
    )
    assert result.exit_code == 2 and "Invalid value for '--image-size'" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "o").exists()


def test_image_size_not_a_multiple_of_the_stride_is_refused(tmp_path: Path) -> None:
    assert "eval_image_size" in _one_line_error(["deimv2", str(ATTO), "--image-size", "330"], tmp_path)


def test_guessed_values_of_unmatched_weights_are_announced(caplog: pytest.LogCaptureFixture) -> None:
    sd = _atto()
    sd["decoder.decoder.layers.0.swish_ffn.w12.weight"] = torch.zeros(96, 64)  # a width no release has
    with caplog.at_level(logging.WARNING):
        config = deimv2_config(sd)
    assert (
        config.decoder_ffn_dim == 96
        and "num_queries=100" in caplog.text
        and "--set num_queries" in caplog.text
    )
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        deimv2_config(sd, num_queries=100)
        deimv2_config(_atto())
    assert not caplog.text  # set, or the weights of a released variant: nothing guessed


@pytest.mark.parametrize(
    "values",
    [{"num_queries": 0}, {"decoder_attention_heads": 0}, {"encoder_attention_heads": 0}, {"max_num_bins": -1},
     {"decoder_n_points": [4, 0]}, {"eval_image_size": [0, 0]}, {"hgnet_out_indices": [7]}, {"eval_idx": 5},
     {"up": float("inf")}, {"hgnet_stages": [[16, 16, 64, 0, False, False, 3, 3]]}],
)  # fmt: skip
def test_deimv2_config_validates_values_when_built(values: dict) -> None:
    with pytest.raises(StrictDataclassError, match=next(iter(values))):
        Deimv2Config.from_preset("atto", **values)


# --- VidEoMT ----------------------------------------------------------------------------------------------


def _videomt() -> dict[str, torch.Tensor]:
    return dict(load_state_dict(VIDEOMT)[0])


def test_videomt_heads_guess_is_announced(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        config = videomt_config(_videomt())
    assert config.num_attention_heads == 1  # the guess is kept (width 64 // 64) ...
    assert "num_attention_heads=1" in caplog.text and "--set num_attention_heads" in caplog.text  # ... loudly
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert videomt_config(_videomt(), num_attention_heads=4, norm_queries=False).num_attention_heads == 4
    assert not caplog.text


def test_videomt_variant_contradicting_the_weights_is_refused() -> None:
    with pytest.raises(
        CheckpointError, match="--variant dinov2_s_ytvis2019 has hidden_size=384 but the weights hold 64"
    ):
        videomt_config(_videomt(), variant="dinov2_s_ytvis2019")


@pytest.mark.parametrize(
    ("values", "key"),
    [({"num_attention_heads": 0}, "num_attention_heads"), ({"num_attention_heads": 3}, "num_attention_heads"),
     ({"no_such_key": 1}, "no_such_key"), ({"num_queries": -1}, "num_queries"),
     ({"position_grid_size": 0}, "position_grid_size"), ({"segmenter_blocks": [-1, 0]}, "segmenter_blocks")],
)  # fmt: skip
def test_videomt_bad_settings_are_one_value_error(values: dict, key: str) -> None:
    with pytest.raises(ValueError, match=key) as err:
        videomt_config(_videomt(), **values)
    assert "\n" not in str(err.value)


def test_videomt_damaged_tables_give_a_checkpoint_error() -> None:
    sd = _videomt()
    sd["backbone.attn_mask_probs"] = torch.zeros(99)
    with pytest.raises(CheckpointError, match="attn_mask_probs"):
        videomt_config(sd)
    sd = _videomt()
    sd["backbone.class_head.weight"] = torch.zeros(1, 64)
    with pytest.raises(CheckpointError, match="class_head"):
        videomt_config(sd)


def test_videomt_config_validates_values_when_built() -> None:
    for values in (
        {"num_attention_heads": 0},
        {"hidden_size": -8},
        {"patch_size": 0},
        {"layer_norm_eps": 0.0},
    ):
        with pytest.raises(StrictDataclassError, match=next(iter(values))):
            VideomtConfig(**values)


# --- SAM3-LiteText ----------------------------------------------------------------------------------------


def _sam3(path: Path) -> dict[str, torch.Tensor]:
    return strip_prefixes(load_state_dict(path)[0])


def _s1_sized_text() -> dict[str, torch.Tensor]:
    """Key layout of an S1-sized (base, 512 wide, 12 blocks) text encoder, on the meta device."""
    meta = torch.device("meta")
    sd = {TEXT_PREFIX + "encoder.embedding_layer.weight": torch.empty(49408, 512, device=meta),
          TEXT_PREFIX + "projector.weight": torch.empty(256, 512, device=meta)}  # fmt: skip
    for i in range(12):
        block = f"{TEXT_PREFIX}encoder.transformer.{i}."
        sd[block + "pre_norm_mha.1.qkv_proj.weight"] = torch.empty(1536, 512, device=meta)
        sd[block + "pre_norm_ffn.1.weight"] = torch.empty(2048, 512, device=meta)
    return sd


def test_sam3_text_variant_contradicting_the_weights_is_refused() -> None:
    assert sam3_config(_s1_sized_text()).variant == "s1"
    with pytest.raises(CheckpointError, match="--variant l has hidden_size=768.*those of variant 's1'"):
        sam3_config(_s1_sized_text(), variant="l")


def test_sam3_heads_guess_is_announced(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        config = sam3_config(_sam3(SAM3_TEXT))
    assert "num_attention_heads=1" in caplog.text and config.num_attention_heads == 1
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        sam3_config(_sam3(SAM3_TEXT), num_attention_heads=8)
        sam3_config(_s1_sized_text())
    assert not caplog.text


@pytest.mark.parametrize(
    ("values", "key"),
    [({"no_such_key": 1}, "no_such_key"), ({"detector": {"no_such_width": 1}}, "no_such_width"),
     ({"detector": 5}, "detector"), ({"num_attention_heads": 0}, "num_attention_heads"),
     ({"context_length": 0}, "context_length"), ({"detector": {"image_size": 1000}}, "image_size"),
     ({"detector": {"n_heads": 0}}, "n_heads"), ({"threshold": float("nan")}, "threshold")],
)  # fmt: skip
def test_sam3_bad_settings_are_one_value_error(values: dict, key: str) -> None:
    with pytest.raises(ValueError, match=key) as err:
        sam3_config(_sam3(SAM3_FULL), num_attention_heads=8, **values) if "num_attention_heads" not in values else (
            sam3_config(_sam3(SAM3_FULL), **values))  # fmt: skip
    assert "\n" not in str(err.value)


def test_sam3_threshold_setting_reaches_the_full_model() -> None:
    assert sam3_config(_sam3(SAM3_FULL), num_attention_heads=8, threshold=0.3).threshold == 0.3
    with pytest.raises(ValueError, match="threshold"):  # a text-only file has none
        sam3_config(_sam3(SAM3_TEXT), num_attention_heads=8, threshold=0.3)


def test_sam3_damaged_rope_table_gives_a_checkpoint_error() -> None:
    sd = _sam3(SAM3_FULL)
    key = next(k for k in sd if k.endswith("attn.freqs_cis"))
    sd[key] = torch.zeros(sd[key].shape[0], 0)
    with pytest.raises(CheckpointError, match="freqs_cis"):
        sam3_config(sd, num_attention_heads=8)


def test_sam3_configs_validate_values_when_built() -> None:
    with pytest.raises(StrictDataclassError, match="num_attention_heads"):
        Sam3LiteTextTextConfig(num_attention_heads=0)
    with pytest.raises(StrictDataclassError, match="vit_global_att_blocks"):
        Sam3LiteTextConfig(detector={"vit_depth": 8})
