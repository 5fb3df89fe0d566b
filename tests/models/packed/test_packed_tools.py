"""Packed encoders: processor, save/load with the model, and `visionports parity-packed`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from transformers import (
    Aimv2VisionConfig,
    Aimv2VisionModel,
    DINOv3ViTConfig,
    DINOv3ViTModel,
    Siglip2VisionConfig,
    Siglip2VisionModel,
)

import visionports
from visionports.cli import main


def test_processor_budget_and_round_trip(tmp_path: Path) -> None:
    processor = visionports.PackedImageProcessor(patch_size=14, min_pixels=56 * 56, max_pixels=448 * 448)
    assert processor.target_size(480, 640) == (392, 504)
    assert processor.target_size(10, 10) == (56, 56)
    h, w = processor.target_size(2000, 100)
    assert h % 14 == 0 and w % 14 == 0 and h * w <= 448 * 448
    out = processor([np.zeros((100, 150, 3), np.uint8), np.full((60, 30, 3), 255, np.uint8)])
    grid = out["grid_thw"]
    assert out["hidden_states"].shape == (int((grid[:, 1] * grid[:, 2]).sum()), 14 * 14 * 3)
    processor.save_pretrained(tmp_path)
    loaded = visionports.PackedImageProcessor.from_pretrained(tmp_path)
    assert loaded.to_dict() == processor.to_dict()
    fixed = visionports.PackedImageProcessor.for_config(
        Aimv2VisionConfig(image_size=56, patch_size=14, is_native=False)
    )
    assert fixed(np.zeros((30, 90, 3), np.uint8))["grid_thw"].tolist() == [[1, 4, 4]]
    dino = visionports.PackedImageProcessor.for_config(DINOv3ViTConfig(patch_size=16))
    assert dino.image_mean == [0.485, 0.456, 0.406]
    with pytest.raises(ValueError, match="min_pixels"):
        visionports.PackedImageProcessor(min_pixels=100, max_pixels=10)


@pytest.mark.parametrize("kind", ["aimv2", "dinov3", "siglip2"])
def test_cli_parity_packed(tmp_path: Path, kind: str) -> None:
    torch.manual_seed(0)
    if kind == "aimv2":
        model = Aimv2VisionModel(Aimv2VisionConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                                   num_attention_heads=4, patch_size=4, is_native=True))  # fmt: skip
    elif kind == "siglip2":
        model = Siglip2VisionModel(Siglip2VisionConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                                       num_attention_heads=4, patch_size=4, num_patches=16))  # fmt: skip
    else:
        model = DINOv3ViTModel(DINOv3ViTConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                               num_attention_heads=4, patch_size=4, num_register_tokens=2))  # fmt: skip
    model.save_pretrained(tmp_path)
    result = CliRunner().invoke(
        main, ["parity-packed", "--model", str(tmp_path), "--sizes", "16x16,8x24,4x4"]
    )
    assert result.exit_code == 0, result.output
    assert "PARITY OK" in result.output and result.output.count("pass") == 3
    bad = CliRunner().invoke(main, ["parity-packed", "--model", str(tmp_path), "--sizes", "16x17"])
    assert bad.exit_code != 0
    old_form = CliRunner().invoke(main, ["parity", "packed", str(tmp_path), "--sizes", "16x16,8x24,4x4"])
    assert old_form.exit_code == 0 and "deprecated" in old_form.stderr and old_form.stdout == result.stdout


def test_processor_standard_switches() -> None:
    from PIL import Image

    processor = visionports.PackedImageProcessor(patch_size=2, min_pixels=4, max_pixels=64)
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    out = processor(image)
    h, w = processor.target_size(5, 7)
    resized = np.asarray(Image.fromarray(image).resize((w, h), resample=Image.BICUBIC)).astype(np.float32)
    mean, std = np.array(processor.image_mean), np.array(processor.image_std)
    expected = torch.from_numpy(((resized * (1 / 255) - mean) / std).astype(np.float32)).permute(2, 0, 1)
    assert torch.allclose(out["hidden_states"], visionports.pack_images([expected], 2)[0], atol=1e-6)

    raw = rng.integers(0, 256, (4, 6, 3), dtype=np.uint8)
    plain = processor(raw, do_resize=False, do_rescale=False, do_normalize=False)
    assert plain["grid_thw"].tolist() == [[1, 2, 3]]
    assert torch.equal(
        plain["hidden_states"],
        visionports.pack_images([torch.from_numpy(raw).permute(2, 0, 1).float()], 2)[0],
    )
    with pytest.raises(ValueError, match="multiples of 2"):
        processor(rng.integers(0, 256, (5, 6, 3), dtype=np.uint8), do_resize=False)

    custom = processor(
        raw, do_resize=False, image_mean=[0.5] * 3, image_std=[0.25] * 3, rescale_factor=1 / 100
    )
    assert torch.allclose(custom["hidden_states"], (plain["hidden_states"] / 100 - 0.5) / 0.25, atol=1e-6)
    chw = processor(
        np.ascontiguousarray(raw.transpose(2, 0, 1)), do_resize=False, input_data_format="channels_first"
    )
    assert torch.equal(chw["hidden_states"], processor(raw, do_resize=False)["hidden_states"])

    gray = rng.random((4, 6)).astype(np.float32)
    one_channel = processor(gray, do_convert_rgb=False, do_resize=False, do_rescale=False, image_mean=[0.0],
                            image_std=[2.0])  # fmt: skip
    assert one_channel["hidden_states"].shape == (6, 4)
    assert torch.allclose(one_channel["hidden_states"][0], torch.from_numpy(gray[:2, :2].reshape(-1) / 2))
    assert processor(gray, do_resize=False)["hidden_states"].shape == (6, 12)  # converted to RGB
    with pytest.raises(ValueError, match="1 channels"):
        processor(gray, do_convert_rgb=False, do_resize=False)

    as_numpy = processor([raw, image], return_tensors="np")
    assert isinstance(as_numpy["hidden_states"], np.ndarray) and as_numpy["grid_thw"].shape == (2, 3)
    with pytest.raises(ValueError, match="return_tensors"):
        processor(raw, return_tensors="tf")
    with pytest.raises(TypeError, match="size"):
        processor(raw, size=3)
