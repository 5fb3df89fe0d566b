"""The state-dict helpers every converter shares: wrapper prefixes, shapes, indexed blocks."""

from __future__ import annotations

import pytest
import torch

from visionports.core.checkpoint import CheckpointError
from visionports.core.state_dict import (
    block_indices,
    count_blocks,
    shape_of,
    strip_key_prefixes,
    strip_wrapper_prefix,
)

PREFIXES = ("module.", "ema.module.", "model.")


def test_strip_wrapper_prefix_repeats_until_no_prefix_is_shared() -> None:
    sd = {"module.model.encoder.w": torch.ones(1), "module.model.decoder.w": torch.zeros(1)}
    assert set(strip_wrapper_prefix(sd, PREFIXES)) == {"encoder.w", "decoder.w"}
    assert set(strip_wrapper_prefix({"ema.module.a": torch.ones(1)}, PREFIXES)) == {"a"}


def test_strip_wrapper_prefix_keeps_prefixes_not_shared_by_every_key() -> None:
    sd = {"model.encoder.w": torch.ones(1), "decoder.w": torch.zeros(1)}
    out = strip_wrapper_prefix(sd, PREFIXES)
    assert out == sd and out is not sd
    assert strip_wrapper_prefix({}, PREFIXES) == {}


def test_strip_key_prefixes_strips_each_key_in_order() -> None:
    sd = {"module.detector.a": torch.ones(1), "detector.b": torch.ones(1), "c": torch.ones(1)}
    assert set(strip_key_prefixes(sd, ("module.", "detector."))) == {"a", "b", "c"}
    assert set(strip_key_prefixes(sd, ("detector.", "module."))) == {"detector.a", "b", "c"}


def test_shape_of_names_the_missing_key_and_checkpoint() -> None:
    sd = {"w": torch.zeros(2, 3)}
    assert shape_of(sd, "w", "DEIMv2") == (2, 3)
    with pytest.raises(CheckpointError, match="expected key 'v' in the VidEoMT checkpoint"):
        shape_of(sd, "v", "VidEoMT")


def test_block_indices_are_distinct_sorted_integers() -> None:
    sd = {f"blocks.{i}.{p}": torch.ones(1) for i in (10, 2, 0) for p in ("w", "b")}
    sd["head.blocks.5.w"] = torch.ones(1)  # matched at the start of the key only
    assert block_indices(sd, r"blocks\.(\d+)\.") == [0, 2, 10]
    assert count_blocks(sd, r"blocks\.(\d+)\.") == 3
    assert count_blocks(sd, r"layers\.(\d+)\.") == 0
