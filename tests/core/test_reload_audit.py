"""Reload audit: every family and preset shape, save_pretrained -> from_pretrained gives the saved model back.

Each model is built at tiny widths from its presets, given non-trivial weights, saved and loaded three times
with the Auto class a user takes, while every freshly allocated tensor is poisoned (NaN for floats): every
parameter and buffer must equal what was saved (or was deterministically recomputed), and the outputs must
be bit-identical to the in-memory model's.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from transformers import (
    Aimv2VisionConfig,
    AutoModel,
    AutoModelForObjectDetection,
    AutoModelForUniversalSegmentation,
    DINOv3ViTConfig,
    Siglip2VisionConfig,
)

from reload_checks import model_tensors, poisoned_memory
from visionports import (
    Aimv2PackedVisionModel,
    Deimv2Config,
    Deimv2ForObjectDetection,
    Dinov3PackedVisionModel,
    Siglip2PackedVisionModel,
    pack_images,
)
from visionports.core.pretrained import own_aligned_storage
from visionports.models.sam3_lite_text import Sam3LiteTextConfig, Sam3LiteTextModel, Sam3LiteTextTextModel
from visionports.models.sam3_lite_text.configuration_sam3_lite_text import Sam3LiteTextTextConfig
from visionports.models.videomt import PRESETS as VIDEOMT_PRESETS
from visionports.models.videomt import VideomtConfig, VideomtForUniversalSegmentation

Run = Callable[[torch.nn.Module], dict[str, torch.Tensor]]

_DEIM_VIT = dict(vit_hidden_size=32, vit_num_heads=2, vit_ffn_hidden_size=64, vit_depth=4, vit_out_indices=[1, 2, 3],
                 sta_inplanes=8, backbone_hidden_dim=32, encoder_in_channels=[32, 32, 32], encoder_hidden_dim=32,
                 encoder_ffn_dim=64, d_model=32, decoder_ffn_dim=64)  # fmt: skip
_VIDEOMT = dict(hidden_size=64, num_hidden_layers=5, num_attention_heads=4, intermediate_size=128,
                segmenter_blocks=[3, 4], num_queries=6)  # fmt: skip
_SAM3_TEXT = dict(hidden_size=32, num_attention_heads=4, num_transformer_layers=2, projection_dim=32)
_SAM3_DETECTOR = dict(d_model=32, ffn_dim=64, n_heads=8, num_queries=20, image_size=112, patch_size=14,
                      pretrain_img_size=56, vit_embed_dim=32, vit_depth=4, vit_heads=2, vit_window_size=4,
                      vit_global_att_blocks=[1, 3], vit_mlp_ratio=4.625)  # fmt: skip


def _deimv2(preset: str) -> Deimv2ForObjectDetection:
    shrink = _DEIM_VIT if preset in ("s", "m", "l", "x") else {}
    config = Deimv2Config.from_preset(preset, num_queries=10, eval_image_size=[64, 64], **shrink)
    return Deimv2ForObjectDetection(config)


def _videomt(preset: str) -> VideomtForUniversalSegmentation:
    grid = {"position_grid_size": 4} if VIDEOMT_PRESETS[preset]["backbone_type"] == "dinov2" else {}
    config = VideomtConfig.from_preset(preset, **_VIDEOMT, **grid, num_labels=5)
    return VideomtForUniversalSegmentation(config)


def _sam3_text(preset: str) -> Sam3LiteTextTextModel:
    return Sam3LiteTextTextModel(Sam3LiteTextTextConfig.from_preset(preset, **_SAM3_TEXT))


def _sam3_full(preset: str) -> Sam3LiteTextModel:
    config = Sam3LiteTextConfig.from_preset(
        preset, text_overrides=dict(_SAM3_TEXT), detector=dict(_SAM3_DETECTOR)
    )
    return Sam3LiteTextModel(config)


_PACKED = dict(hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4, patch_size=4)
PACKED = {
    "aimv2": lambda: Aimv2PackedVisionModel(Aimv2VisionConfig(image_size=16, is_native=True, **_PACKED)),
    "siglip2": lambda: Siglip2PackedVisionModel(Siglip2VisionConfig(num_patches=9, **_PACKED)),
    "dinov3": lambda: Dinov3PackedVisionModel(
        DINOv3ViTConfig(num_register_tokens=2, layerscale_value=0.5, **_PACKED)
    ),
}


def _run_packed(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    images = [torch.randn(3, 4 * h, 4 * w, generator=generator) for h, w in ((2, 3), (1, 1), (3, 2))]
    pixel_values, grid_thw = pack_images(images, 4)
    return {"hidden": model(pixel_values, grid_thw).last_hidden_state}


def _run_deimv2(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    out = model(_seeded(2, 3, 64, 64))
    return {"logits": out.logits, "pred_boxes": out.pred_boxes}


def _run_videomt(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    out = model(_seeded(1, 2, 3, 32, 64))
    return {"class": out.class_queries_logits, "masks": out.masks_queries_logits}


def _run_sam3_text(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    ids = torch.randint(1, 1000, (2, 16), generator=torch.Generator().manual_seed(0))
    return {"text": model(ids).last_hidden_state}


def _run_sam3_full(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    ids = torch.randint(1, 1000, (1, 16), generator=torch.Generator().manual_seed(0))
    out = model(pixel_values=_seeded(1, 3, 112, 112), input_ids=ids)
    return {"logits": out.pred_logits, "boxes": out.pred_boxes, "masks": out.pred_masks}


def _seeded(*shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(0))


CASES: dict[str, tuple[Callable[[], torch.nn.Module], Run, type]] = {
    **{f"deimv2-{p}": (lambda p=p: _deimv2(p), _run_deimv2, AutoModelForObjectDetection)
       for p in ("atto", "femto", "pico", "n", "s", "m", "l", "x")},
    **{f"videomt-{p}": (lambda p=p: _videomt(p), _run_videomt, AutoModelForUniversalSegmentation)
       for p in VIDEOMT_PRESETS},
    **{f"sam3_lite_text-text-{p}": (lambda p=p: _sam3_text(p), _run_sam3_text, AutoModel) for p in ("s0", "s1", "l")},
    "sam3_lite_text-full-s0": (lambda: _sam3_full("s0"), _run_sam3_full, AutoModel),
    # packed encoders keep upstream's config classes, so a user loads them with the packed class itself
    **{f"packed-{name}": (build, _run_packed, type(build())) for name, build in PACKED.items()},
}  # fmt: skip


def _scramble(model: torch.nn.Module) -> None:
    """Non-trivial values everywhere (initialisations leave e.g. zero biases and unit scales)."""
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, param in model.named_parameters():
            noise = torch.randn(param.shape, generator=generator, dtype=param.dtype) * 0.02
            param.add_(noise.abs() if "var" in name else noise)


def _differences(got: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> list[str]:
    wrong = sorted(set(got) ^ set(expected))
    for name, value in expected.items():
        other = got.get(name)
        if other is not None and (other.shape != value.shape or not torch.equal(other, value)):
            wrong.append(name)
    return wrong


@pytest.mark.parametrize("case", sorted(CASES))
def test_reload_is_bit_identical(case: str, tmp_path: Path) -> None:
    build, run, auto_class = CASES[case]
    torch.manual_seed(0)
    model = build().eval()
    _scramble(model)
    with torch.no_grad():
        expected = run(model)
    saved = model_tensors(model)
    model.save_pretrained(tmp_path)
    for _ in range(3):
        with poisoned_memory():
            loaded = auto_class.from_pretrained(tmp_path).eval()
        assert type(loaded) is type(model)
        wrong = _differences(model_tensors(loaded), saved)
        assert not wrong, f"{case}: {len(wrong)} tensors not restored after reload, e.g. {wrong[:5]}"
        with torch.no_grad():
            got = run(loaded)
        for name, value in expected.items():
            assert torch.equal(got[name], value), f"{case}: output {name} changed after reload"


def test_from_pretrained_storage_is_aligned(tmp_path: Path) -> None:
    """Loaded weights get their own aligned memory (kernels' summation order depends on the alignment)."""
    model = _sam3_text("s1").eval()
    model.save_pretrained(tmp_path)
    loaded = AutoModel.from_pretrained(tmp_path)
    assert all(p.data_ptr() % 64 == 0 for p in loaded.parameters() if p.numel())
    assert own_aligned_storage(loaded) == 0  # nothing left to copy
    view = torch.zeros(17)[1:]
    holder = torch.nn.Linear(4, 4)
    holder.weight.data = view[:16].view(4, 4)
    assert own_aligned_storage(holder) == 1 and holder.weight.data_ptr() % 64 == 0
    assert torch.equal(holder.weight, torch.zeros(4, 4))


def test_poisoning_catches_an_uninitialised_buffer(tmp_path: Path) -> None:
    """The audit can fail: a non-persistent buffer filled only in ``__init__`` comes back as NaN."""

    class Leaky(Sam3LiteTextTextModel):
        def __init__(self, config: Sam3LiteTextTextConfig) -> None:
            super().__init__(config)
            self.register_buffer("table", torch.arange(4.0), persistent=False)

    model = Leaky(Sam3LiteTextTextConfig.from_preset("s1", **_SAM3_TEXT))
    model.save_pretrained(tmp_path)
    with poisoned_memory():
        loaded = Leaky.from_pretrained(tmp_path)
    assert not torch.equal(loaded.table, torch.arange(4.0))
