"""Conversion of released SAM3-LiteText files: prefixes, table filtering (in the converter only), key rules."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from golden import FIXTURES
from visionports.core.checkpoint import CheckpointError, load_state_dict
from visionports.core.conversion import convert_checkpoint
from visionports.core.registry import get_family
from visionports.models.sam3_lite_text.convert_sam3_lite_text import (
    TEXT_PREFIX,
    VIT_POSITIONS,
    convert_state_dict,
    filter_checkpoint,
    guess_variant,
    infer_config,
    strip_prefixes,
)
from visionports.models.sam3_lite_text.modeling_sam3_lite_text import build_model

CASE = FIXTURES / "sam3_lite_text" / "tiny_detector_s0_mct_seed5"
TEXT_TABLE = f"{TEXT_PREFIX}encoder.positional_embedding.pos_embed.pos_embed"
OURS = "detector.vision_encoder.backbone.embeddings.position_embeddings"


def _released() -> dict[str, torch.Tensor]:
    return load_state_dict(CASE / "checkpoint.pt")[0]


def test_filter_drops_the_vit_cls_row_and_slices_the_text_table() -> None:
    sd = strip_prefixes(_released())
    out = filter_checkpoint(sd, context_length=16)
    table = sd[VIT_POSITIONS]
    assert torch.equal(out[VIT_POSITIONS], table[:, 1:])
    assert out[TEXT_TABLE].shape[0] == 16
    assert sd[VIT_POSITIONS] is table  # the input is left as it was
    with pytest.raises(CheckpointError, match="fewer than context_length"):
        filter_checkpoint(sd, context_length=10_000)


def test_the_model_loads_the_converted_table_as_is() -> None:
    sd = strip_prefixes(_released())
    config = infer_config(sd)
    mapped = convert_state_dict(sd, config)
    model = build_model(config)
    assert mapped.tensors[OURS].shape == model.state_dict()[OURS].shape
    model.load_state_dict(mapped.tensors, strict=True)
    assert torch.equal(model.state_dict()[OURS], mapped.tensors[OURS])
    with pytest.raises(RuntimeError, match="position_embeddings"):  # no second filtering in the model
        model.load_state_dict({**mapped.tensors, OURS: sd[VIT_POSITIONS]}, strict=True)


def test_wrapped_and_bare_keys_convert_alike() -> None:
    sd = _released()
    wrapped = {f"module.{k}": v for k, v in sd.items()}
    prepare = get_family("sam3_lite_text").prepare  # prefixes go once, before the converter reads the weights
    assert prepare(wrapped).keys() == prepare(sd).keys() == strip_prefixes(sd).keys()
    assert guess_variant(prepare(wrapped)) == guess_variant(prepare(sd))
    assert infer_config(prepare(wrapped)).to_dict() == infer_config(prepare(sd)).to_dict()
    config = infer_config(prepare(sd))
    mapped = convert_state_dict(prepare(wrapped), config)
    assert mapped.source == convert_state_dict(prepare(sd), config).source


def test_wrapped_checkpoint_converts_identically(tmp_path: Path) -> None:
    torch.save({"model": {f"module.{k}": v for k, v in _released().items()}}, tmp_path / "wrapped.pt")
    family = get_family("sam3_lite_text")
    bare = convert_checkpoint(family, CASE / "checkpoint.pt", progress=False)
    wrapped = convert_checkpoint(family, tmp_path / "wrapped.pt", progress=False)
    assert wrapped.config.to_dict() == bare.config.to_dict()
    ours, theirs = wrapped.model.state_dict(), bare.model.state_dict()
    assert list(ours) == list(theirs) and all(torch.equal(ours[k], theirs[k]) for k in ours)


def test_unknown_settings_and_bad_values_are_refused() -> None:
    sd = strip_prefixes(_released())
    with pytest.raises(ValueError, match="unknown SAM3-LiteText detector setting 'no_such_width'"):
        infer_config(sd, detector={"no_such_width": 1})
    with pytest.raises(ValueError, match="num_attention_heads must be an integer >= 1"):
        infer_config(sd, num_attention_heads=0)
