from __future__ import annotations

from pathlib import Path

import pytest
import torch
from huggingface_hub.errors import StrictDataclassClassValidationError
from transformers import AutoConfig

from visionports import Deimv2Config, Deimv2ForObjectDetection
from visionports.models.deimv2 import PRESETS

# Eval-model parameter counts of the original (spec table). Ours hold `up`/`reg_scale` as buffers (-2) and
# drop DINOv3's pre-training mask token (-384 for L/X).
ORIGINAL_PARAMETERS = {"atto": 508_985, "femto": 983_945, "pico": 1_539_539, "n": 3_600_421, "s": 9_779_838,
                       "m": 18_357_750, "l": 32_551_214, "x": 51_211_736}  # fmt: skip


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_preset_matches_original_parameter_count(name: str) -> None:
    config = Deimv2Config.from_preset(name)
    with torch.device("meta"):
        model = Deimv2ForObjectDetection(config)
    count = sum(p.numel() for p in model.parameters())
    expected = ORIGINAL_PARAMETERS[name] - 2 - (384 if name in ("l", "x") else 0)
    assert count == expected


def test_preset_values() -> None:
    atto = Deimv2Config.from_preset("atto")
    assert (atto.num_queries, atto.eval_image_size, atto.image_mean) == (100, [320, 320], None)
    assert (atto.encoder_csp_channels, atto.encoder_csp_blocks) == (10, 2)
    x = Deimv2Config.from_preset("x")
    assert x.image_mean == [0.485, 0.456, 0.406] and x.vit_ffn_type == "swiglu"
    assert (x.encoder_csp_channels, x.encoder_csp_blocks) == (160, 4)
    assert x.id2label[0] == "person" and x.num_labels == 80


def test_round_trip_through_json(tmp_path: Path) -> None:
    config = Deimv2Config.from_preset("l", num_queries=123)
    config.save_pretrained(tmp_path)
    loaded = AutoConfig.from_pretrained(tmp_path)
    assert isinstance(loaded, Deimv2Config)
    drop = {"_name_or_path"}
    assert {k: v for k, v in loaded.to_dict().items() if k not in drop} == {
        k: v for k, v in config.to_dict().items() if k not in drop
    }


def test_invalid_configs() -> None:
    with pytest.raises(ValueError, match="unknown DEIMv2 preset"):
        Deimv2Config.from_preset("huge")
    # transformers' strict configs wrap validation errors in StrictDataclassClassValidationError
    with pytest.raises(StrictDataclassClassValidationError, match="decoder_n_points"):
        Deimv2Config.from_preset("atto", decoder_n_points=[4, 2, 1])
    with pytest.raises(StrictDataclassClassValidationError, match="layer_scale"):
        Deimv2Config.from_preset("atto", layer_scale=2.0)
