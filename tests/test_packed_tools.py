"""Packed encoders: processor, save/load with the model, and `visionports parity packed`."""

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
    result = CliRunner().invoke(main, ["parity", "packed", str(tmp_path), "--sizes", "16x16,8x24,4x4"])
    assert result.exit_code == 0, result.output
    assert "PARITY OK" in result.output and result.output.count("pass") == 3
    bad = CliRunner().invoke(main, ["parity", "packed", str(tmp_path), "--sizes", "16x17"])
    assert bad.exit_code != 0
