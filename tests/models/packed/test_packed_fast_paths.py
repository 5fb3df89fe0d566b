"""The packed encoders' shared work is exact: position tables built once per distinct size, same-length images
pooled in one batch, and ``torch.compile`` of the whole model."""

from __future__ import annotations

import pytest
import torch
from test_packed_conventions import FAMILIES, PATCH  # the small standard / packed pairs of every family
from torch import nn

from visionports import unpack
from visionports.models.packed.packing import pack_images

TOL = 1e-5  # packed vs the standard model, as in the other packed tests
GRIDS = [(2, 3), (1, 1), (2, 3), (3, 2), (1, 4), (1, 1)]  # repeated sizes: cached tables, batched pooling


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


@pytest.mark.parametrize("name", list(FAMILIES))
def test_cached_tables_and_batched_pooling_match_the_standard_model(name: str) -> None:
    standard, packed = _pair(name)
    images = _images()
    hidden, grid = pack_images(images, PATCH)
    with torch.no_grad():
        out = packed(hidden, grid, output_hidden_states=True)
        for i, image in enumerate(images):
            ref = _alone(name, standard, image)
            rows = unpack(out.last_hidden_state, grid, packed.num_prefix_tokens)[i]
            assert (rows - ref.last_hidden_state[0]).abs().max() <= TOL, i
            assert (out.pooler_output[i] - ref.pooler_output[0]).abs().max() <= TOL, i
            for ours, theirs in zip(out.hidden_states, ref.hidden_states, strict=True):
                assert (unpack(ours, grid, packed.num_prefix_tokens)[i] - theirs[0]).abs().max() <= TOL, i


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
