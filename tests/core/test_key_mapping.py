from __future__ import annotations

import pytest
import torch

from visionports.core.checkpoint import CheckpointError
from visionports.core.key_mapping import Duplicate, Fold, KeyMapping, Rename, Skip, Split
from visionports.core.load_report import IncompleteCheckpointError, load_mapped


def test_rename_split_skip_duplicate_fold() -> None:
    qkv = torch.arange(12.0).reshape(6, 2)
    sd = {
        "enc.attn.in_proj_weight": qkv,
        "enc.attn.bias": torch.ones(3),
        "enc.attn.bias_mask": torch.tensor([1.0, 0.0, 1.0]),
        "anchors": torch.zeros(1),
        "head.1.w": torch.ones(2),
        "head.0.w": torch.ones(2),
    }
    mapping = KeyMapping([
        Skip(r"anchors", "recomputed"),
        Duplicate(r"head\.1\.(.*)", r"head.0.\1"),
        Fold(r"(.*)\.bias_mask", r"\1.bias", lambda b, m: b * m),
        Rename(r"^enc\.", "model.encoder."),
        Split(r"(.*)\.in_proj_weight", (r"\1.q.weight", r"\1.k.weight", r"\1.v.weight")),
    ])  # fmt: skip
    out = mapping.apply(sd)
    assert set(out.tensors) == {"model.encoder.attn.q.weight", "model.encoder.attn.k.weight",
                                "model.encoder.attn.v.weight", "model.encoder.attn.bias", "head.0.w"}  # fmt: skip
    assert torch.equal(out.tensors["model.encoder.attn.k.weight"], qkv[2:4])
    assert torch.equal(out.tensors["model.encoder.attn.bias"], torch.tensor([1.0, 0.0, 1.0]))
    assert out.source["model.encoder.attn.v.weight"] == "enc.attn.in_proj_weight"
    assert out.skipped["anchors"] == "recomputed" and "identical copy" in out.skipped["head.1.w"]


def test_duplicate_must_be_identical() -> None:
    mapping = KeyMapping([Duplicate(r"b", "a")])
    with pytest.raises(CheckpointError, match="exact copy"):
        mapping.apply({"a": torch.ones(1), "b": torch.zeros(1)})


def test_collisions_and_bad_splits() -> None:
    with pytest.raises(CheckpointError, match="both map to"):
        KeyMapping([Rename(r"^x", "y")]).apply({"x": torch.ones(1), "y": torch.ones(1)})
    with pytest.raises(CheckpointError, match="cannot be split"):
        KeyMapping([Split(r"w", ("a", "b", "c"))]).apply({"w": torch.ones(4)})


def test_load_report_names_every_problem() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Linear(3, 1))
    sd = {"0.weight": torch.ones(3, 2), "0.bias": torch.ones(4), "9.weight": torch.ones(1)}
    mapped = KeyMapping([]).apply(sd)
    with pytest.raises(IncompleteCheckpointError) as err:
        load_mapped(model, mapped)
    report = err.value.report
    assert report.missing == ["1.bias", "1.weight"]
    assert report.unexpected == ["9.weight"]
    assert report.mismatched == [("0.bias", "0.bias", (4,), (3,))]
    assert "1.bias" in str(err.value) and "0.bias -> 0.bias: [4] vs [3]" in str(err.value)
    partial = load_mapped(model, mapped, allow_partial=True)
    assert partial.loaded == 1 and torch.equal(model[0].weight, torch.ones(3, 2))
