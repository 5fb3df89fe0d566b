"""Packed SigLIP2 naflex against the standard transformers model, image by image (fp32, CPU)."""

from __future__ import annotations

import pytest
import torch
from transformers import (
    Siglip2Config,
    Siglip2Model,
    Siglip2TextConfig,
    Siglip2VisionConfig,
    Siglip2VisionModel,
)
from transformers.utils import logging as hf_logging

from visionports.models.packed.packing import pack_images, unpack
from visionports.models.packed.siglip2_packed import Siglip2PackedVisionModel

hf_logging.disable_progress_bar()

TOL = 1e-5
PATCH = 4
# the learned table is 4x4; grids go below and above it on each axis, plus 1x1, 1xn, nx1 and non-square
GRIDS = [(2, 7), (5, 3), (1, 1), (1, 6), (4, 4), (6, 1), (3, 9)]


def _vision_config(**overrides) -> Siglip2VisionConfig:
    kwargs = dict(
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=4,
        patch_size=PATCH,
        num_patches=16,
        num_channels=3,
    )
    kwargs.update(overrides)
    return Siglip2VisionConfig(**kwargs)


def _assert_close(actual: torch.Tensor, expected: torch.Tensor, what: str) -> float:
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    assert torch.isfinite(actual).all(), f"{what}: non-finite values"
    diff = (actual.double() - expected.double()).abs().max().item()
    assert diff <= TOL, f"{what}: max abs diff {diff}"  # NaN fails this comparison
    return diff


def _images(grids=GRIDS) -> list[torch.Tensor]:
    return [torch.randn(3, h * PATCH, w * PATCH) for h, w in grids]


@pytest.fixture(scope="module")
def saved_pair(tmp_path_factory):
    torch.manual_seed(1)
    reference = Siglip2VisionModel(_vision_config()).eval()
    folder = tmp_path_factory.mktemp("siglip2_vision")
    reference.save_pretrained(folder)
    return folder, reference


@pytest.fixture(scope="module")
def packed(saved_pair):
    folder, _ = saved_pair
    model, info = Siglip2PackedVisionModel.from_pretrained(folder, output_loading_info=True)
    return model.eval(), info


def _reference_one(reference: Siglip2VisionModel, rows: torch.Tensor, h: int, w: int, **kwargs):
    return reference(
        pixel_values=rows[None],
        pixel_attention_mask=torch.ones(1, h * w, dtype=torch.long),
        spatial_shapes=torch.tensor([[h, w]]),
        **kwargs,
    )


def test_loads_with_no_key_problems(packed):
    model, info = packed
    assert not info["missing_keys"], info["missing_keys"]
    assert not info["unexpected_keys"], info["unexpected_keys"]
    assert not info["mismatched_keys"], info["mismatched_keys"]
    assert model.num_prefix_tokens == 0


def test_parameter_names_match_upstream(saved_pair, packed):
    _, reference = saved_pair
    model, _ = packed
    assert set(model.state_dict()) == set(reference.state_dict())
    for name, tensor in reference.state_dict().items():
        assert torch.equal(model.state_dict()[name], tensor), name


@torch.no_grad()
def test_per_image_parity(saved_pair, packed):
    _, reference = saved_pair
    model, _ = packed
    hidden_states, grid_thw = pack_images(_images(), PATCH)
    out = model(hidden_states, grid_thw, output_hidden_states=True)
    assert out.last_hidden_state.shape == (hidden_states.shape[0], 64)
    assert out.pooler_output.shape == (len(GRIDS), 64)
    assert len(out.hidden_states) == model.config.num_hidden_layers + 1
    per_image = unpack(out.last_hidden_state, grid_thw)
    rows_per_image = unpack(hidden_states, grid_thw)
    for i, (h, w) in enumerate(GRIDS):
        ref = _reference_one(reference, rows_per_image[i], h, w, output_hidden_states=True)
        _assert_close(per_image[i], ref.last_hidden_state[0], f"image {i} ({h}x{w}) last_hidden_state")
        _assert_close(out.pooler_output[i], ref.pooler_output[0], f"image {i} ({h}x{w}) pooler_output")
        assert len(ref.hidden_states) == len(out.hidden_states)
        for j, (ours, theirs) in enumerate(zip(out.hidden_states, ref.hidden_states, strict=True)):
            _assert_close(unpack(ours, grid_thw)[i], theirs[0], f"image {i} hidden_states[{j}]")


@torch.no_grad()
def test_padded_naflex_batch_parity(saved_pair, packed):
    _, reference = saved_pair
    model, _ = packed
    hidden_states, grid_thw = pack_images(_images(), PATCH)
    out = model(hidden_states, grid_thw)
    rows_per_image = unpack(hidden_states, grid_thw)
    max_len = max(r.shape[0] for r in rows_per_image)
    pixel_values = torch.zeros(len(GRIDS), max_len, hidden_states.shape[1])
    mask = torch.zeros(len(GRIDS), max_len, dtype=torch.long)
    for i, rows in enumerate(rows_per_image):
        pixel_values[i, : rows.shape[0]] = rows
        mask[i, : rows.shape[0]] = 1
    ref = reference(pixel_values=pixel_values, pixel_attention_mask=mask, spatial_shapes=torch.tensor(GRIDS))
    for i, ours in enumerate(unpack(out.last_hidden_state, grid_thw)):
        _assert_close(ours, ref.last_hidden_state[i, : ours.shape[0]], f"padded image {i} last_hidden_state")
        _assert_close(out.pooler_output[i], ref.pooler_output[i], f"padded image {i} pooler_output")


@torch.no_grad()
def test_same_size_batch_matches(saved_pair, packed):
    _, reference = saved_pair
    model, _ = packed
    hidden_states, grid_thw = pack_images(_images([(3, 5)] * 3), PATCH)
    out = model(hidden_states, grid_thw)
    pixel_values = hidden_states.reshape(3, 15, -1)
    ref = reference(
        pixel_values=pixel_values,
        pixel_attention_mask=torch.ones(3, 15, dtype=torch.long),
        spatial_shapes=torch.tensor([[3, 5]] * 3),
    )
    _assert_close(out.last_hidden_state.reshape(3, 15, -1), ref.last_hidden_state, "same-size batch")
    _assert_close(out.pooler_output, ref.pooler_output, "same-size batch pooler")


@torch.no_grad()
def test_alone_equals_in_pack_and_permutation(packed):
    model, _ = packed
    images = _images()
    hidden_states, grid_thw = pack_images(images, PATCH)
    out = model(hidden_states, grid_thw)
    per_image = unpack(out.last_hidden_state, grid_thw)
    for i, image in enumerate(images):
        alone_rows, alone_grid = pack_images([image], PATCH)
        alone = model(alone_rows, alone_grid)
        _assert_close(per_image[i], alone.last_hidden_state, f"image {i} alone vs packed")
        _assert_close(out.pooler_output[i], alone.pooler_output[0], f"image {i} pooler alone vs packed")
    order = list(reversed(range(len(images))))
    hs_perm, grid_perm = pack_images([images[i] for i in order], PATCH)
    out_perm = model(hs_perm, grid_perm)
    for j, i in enumerate(order):
        _assert_close(unpack(out_perm.last_hidden_state, grid_perm)[j], per_image[i], f"permuted image {i}")
        _assert_close(out_perm.pooler_output[j], out.pooler_output[i], f"permuted pooler {i}")


@torch.no_grad()
def test_int32_grid_thw(packed):
    model, _ = packed
    hidden_states, grid_thw = pack_images(_images(), PATCH)
    out64 = model(hidden_states, grid_thw)
    out32 = model(hidden_states, grid_thw.to(torch.int32))
    assert torch.equal(out64.last_hidden_state, out32.last_hidden_state)
    assert torch.equal(out64.pooler_output, out32.pooler_output)


def test_invalid_inputs_raise(packed):
    model, _ = packed
    hidden_states, grid_thw = pack_images(_images([(2, 3)]), PATCH)
    with pytest.raises(ValueError, match="t=2"):
        model(torch.cat([hidden_states, hidden_states]), torch.tensor([[2, 2, 3]]))
    with pytest.raises(ValueError, match="rows"):
        model(hidden_states[:-1], grid_thw)
    with pytest.raises(ValueError):
        model(hidden_states[:, :-1], grid_thw)


def test_flash_attention_forced_on_cpu_raises(saved_pair):
    folder, _ = saved_pair
    hidden_states, grid_thw = pack_images(_images([(2, 3)]), PATCH)
    # transformers refuses at load time when flash-attn is missing; our backend check refuses CPU/fp32 otherwise
    with pytest.raises((ImportError, RuntimeError, ValueError)):
        model = Siglip2PackedVisionModel.from_pretrained(folder, attn_implementation="flash_attention_2")
        model(hidden_states, grid_thw)


@torch.no_grad()
def test_eager_equals_sdpa(saved_pair, packed):
    folder, _ = saved_pair
    model, _ = packed
    eager = Siglip2PackedVisionModel.from_pretrained(folder, attn_implementation="eager").eval()
    assert eager.config._attn_implementation == "eager"
    sdpa = Siglip2PackedVisionModel.from_pretrained(folder, attn_implementation="sdpa").eval()
    hidden_states, grid_thw = pack_images(_images(), PATCH)
    out_eager = eager(hidden_states, grid_thw)
    out_sdpa = sdpa(hidden_states, grid_thw)
    _assert_close(out_eager.last_hidden_state, out_sdpa.last_hidden_state, "eager vs sdpa")
    _assert_close(out_eager.pooler_output, out_sdpa.pooler_output, "eager vs sdpa pooler")
    _assert_close(
        out_sdpa.last_hidden_state, model(hidden_states, grid_thw).last_hidden_state, "sdpa vs default"
    )


@torch.no_grad()
def test_without_head_and_patch16(tmp_path):
    config = _vision_config(vision_use_head=False, patch_size=16, num_patches=9, num_attention_heads=2)
    reference = Siglip2VisionModel(config).eval()
    reference.save_pretrained(tmp_path)
    model, info = Siglip2PackedVisionModel.from_pretrained(tmp_path, output_loading_info=True)
    assert not (info["missing_keys"] or info["unexpected_keys"] or info["mismatched_keys"]), info
    model.eval()
    grids = [(2, 5), (1, 1), (4, 2)]
    images = [torch.randn(3, h * 16, w * 16) for h, w in grids]
    hidden_states, grid_thw = pack_images(images, 16)
    out = model(hidden_states, grid_thw)
    assert out.pooler_output is None
    for i, ((h, w), rows) in enumerate(zip(grids, unpack(hidden_states, grid_thw), strict=True)):
        ref = _reference_one(reference, rows, h, w)
        _assert_close(
            unpack(out.last_hidden_state, grid_thw)[i], ref.last_hidden_state[0], f"no-head image {i}"
        )


@torch.no_grad()
def test_two_tower_folder_loads_vision_tower(tmp_path):
    text = Siglip2TextConfig(
        vocab_size=99, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2
    )
    config = Siglip2Config(text_config=text.to_dict(), vision_config=_vision_config().to_dict())
    torch.manual_seed(3)
    full = Siglip2Model(config).eval()
    full.save_pretrained(tmp_path)
    model, info = Siglip2PackedVisionModel.from_pretrained(tmp_path, output_loading_info=True)
    model.eval()
    assert not info["missing_keys"], info["missing_keys"]
    assert not info["mismatched_keys"], info["mismatched_keys"]
    vision_state = full.vision_model.state_dict()
    assert set(model.state_dict()) == set(vision_state)
    for name, tensor in vision_state.items():
        assert torch.equal(model.state_dict()[name], tensor), name
    hidden_states, grid_thw = pack_images(_images(), PATCH)
    out = model(hidden_states, grid_thw)
    for i, ((h, w), rows) in enumerate(zip(GRIDS, unpack(hidden_states, grid_thw), strict=True)):
        ref = _reference_one(full.vision_model, rows, h, w)
        _assert_close(unpack(out.last_hidden_state, grid_thw)[i], ref.last_hidden_state[0], f"two-tower {i}")
        _assert_close(out.pooler_output[i], ref.pooler_output[0], f"two-tower pooler {i}")
