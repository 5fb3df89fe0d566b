"""The CPU fast paths of the packed encoders are exact: layers run by row blocks, position tables built once
per distinct size, same-length images pooled in one batch, and ``torch.compile`` of the whole model."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from torch import nn
from transformers import (
    Aimv2VisionConfig,
    Aimv2VisionModel,
    DINOv3ViTConfig,
    DINOv3ViTModel,
    Siglip2VisionConfig,
    Siglip2VisionModel,
)

from visionports import Aimv2PackedVisionModel, Dinov3PackedVisionModel, Siglip2PackedVisionModel, unpack
from visionports.models.packed import common, packing
from visionports.models.packed.packing import Segments, pack_images, row_blocks

TOL = 1e-5  # packed vs the standard model, as in the other packed tests
PATCH = 4
GRIDS = [(2, 3), (1, 1), (2, 3), (3, 2), (1, 4), (1, 1)]  # repeated sizes: cached tables, batched pooling
SMALL = dict(
    hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4, patch_size=PATCH
)
FAMILIES = {
    "aimv2": (
        Aimv2PackedVisionModel,
        Aimv2VisionModel,
        lambda: Aimv2VisionConfig(image_size=16, is_native=True, **SMALL),
    ),
    "siglip2": (
        Siglip2PackedVisionModel,
        Siglip2VisionModel,
        lambda: Siglip2VisionConfig(num_patches=9, **SMALL),
    ),
    "dinov3": (
        Dinov3PackedVisionModel,
        DINOv3ViTModel,
        lambda: DINOv3ViTConfig(num_register_tokens=2, **SMALL),
    ),
}


@pytest.fixture
def one_thread() -> Iterator[None]:
    """The row-block path runs on one CPU thread only."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _pair(name: str) -> tuple[nn.Module, nn.Module]:
    packed_cls, standard_cls, make_config = FAMILIES[name]
    torch.manual_seed(0)
    standard = standard_cls(make_config()).eval()
    packed = packed_cls(make_config()).eval()
    packed.load_state_dict(standard.state_dict())
    return standard, packed


def _images() -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return [torch.randn(3, h * PATCH, w * PATCH, generator=generator) for h, w in GRIDS]


def _alone(name: str, standard: nn.Module, image: torch.Tensor) -> object:
    """The standard model on one image (SigLIP2: its naflex input with an all-ones mask)."""
    if name != "siglip2":
        return standard(image[None], output_hidden_states=True)
    rows, grid = pack_images([image], PATCH)
    mask = torch.ones(1, rows.shape[0], dtype=torch.long)
    return standard(pixel_values=rows[None], pixel_attention_mask=mask, spatial_shapes=grid[:, 1:],
                    output_hidden_states=True)  # fmt: skip


def test_row_blocks_hold_whole_consecutive_segments() -> None:
    segments = Segments(torch.tensor([0, 6, 7, 13, 17], dtype=torch.int32), 6, [6, 1, 6, 4])
    blocks = row_blocks(segments, rows=8)
    assert [(b.start, b.end, b.segments.lengths) for b in blocks] == [(0, 13, [6, 1, 6]), (13, 17, [4])]
    assert blocks[0].segments.cu_seqlens.tolist() == [0, 6, 7, 13] and blocks[0].segments.max_seqlen == 6
    assert [(b.start, b.end) for b in row_blocks(segments, rows=100)] == [(0, 17)]
    assert [b.segments.lengths for b in row_blocks(segments, rows=1)] == [[6], [1], [6], [4]]


@pytest.mark.parametrize("name", list(FAMILIES))
def test_row_blocks_and_cached_tables_match_the_standard_model(
    name: str, monkeypatch: pytest.MonkeyPatch, one_thread: None
) -> None:
    standard, packed = _pair(name)
    images = _images()
    hidden, grid = pack_images(images, PATCH)
    with torch.no_grad():
        one_pass = packed(hidden, grid, output_hidden_states=True)
        monkeypatch.setattr(packing, "ROW_BLOCK", 8)
        seen = []
        monkeypatch.setattr(
            common, "row_blocks", lambda segments: seen.append(row_blocks(segments)) or seen[-1]
        )
        out = packed(hidden, grid, output_hidden_states=True)
        assert len(seen) == 1 and len(seen[0]) > 2  # several blocks, computed once for all layers
        for i, image in enumerate(images):
            ref = _alone(name, standard, image)
            rows = unpack(out.last_hidden_state, grid, packed.num_prefix_tokens)[i]
            assert (rows - ref.last_hidden_state[0]).abs().max() <= TOL, i
            assert (out.pooler_output[i] - ref.pooler_output[0]).abs().max() <= TOL, i
            for ours, theirs in zip(out.hidden_states, ref.hidden_states, strict=True):
                assert (unpack(ours, grid, packed.num_prefix_tokens)[i] - theirs[0]).abs().max() <= TOL, i
    for key in ("last_hidden_state", "pooler_output"):
        assert (out[key] - one_pass[key]).abs().max() <= 1e-6, key


def test_several_threads_run_the_whole_pack(monkeypatch: pytest.MonkeyPatch) -> None:
    _, packed = _pair("aimv2")
    hidden, grid = pack_images(_images(), PATCH)
    monkeypatch.setattr(packing, "ROW_BLOCK", 8)
    calls = []
    monkeypatch.setattr(common, "row_blocks", lambda segments: calls.append(segments) or row_blocks(segments))
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        with torch.no_grad():
            whole = packed(hidden, grid).last_hidden_state
        torch.set_num_threads(1)
        with torch.no_grad():
            blocked = packed(hidden, grid).last_hidden_state
    finally:
        torch.set_num_threads(previous)
    assert len(calls) == 1  # the one-thread call only
    assert (whole - blocked).abs().max() <= 1e-6


@pytest.mark.slow
@pytest.mark.parametrize("name", list(FAMILIES))
def test_torch_compile_matches_eager(name: str) -> None:
    _, packed = _pair(name)
    hidden, grid = pack_images(_images(), PATCH)
    compiled = torch.compile(packed)
    with torch.inference_mode():
        want, got = packed(hidden, grid), compiled(hidden, grid)
    for key in ("last_hidden_state", "pooler_output"):
        assert got[key].shape == want[key].shape
        assert (got[key] - want[key]).abs().max() <= TOL, key
