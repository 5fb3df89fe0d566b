"""Packed DINOv3 against the standard ``DINOv3ViTModel`` run one image at a time."""

from __future__ import annotations

import pytest
import torch
import transformers
from transformers import DINOv3ViTConfig, DINOv3ViTModel

from visionports.models.packed.dinov3_packed import Dinov3PackedVisionModel
from visionports.models.packed.packing import pack_images, unpack

transformers.utils.logging.disable_progress_bar()

TOL = 1e-5
# (h, w) grids in patches: non-square both ways, 1x1, 1xn, nx1, square.
GRIDS = [(3, 5), (1, 1), (1, 6), (4, 4), (7, 2), (5, 1)]

CONFIGS = {
    "reg2_p4": dict(patch_size=4, num_register_tokens=2),
    "reg0_p4": dict(patch_size=4, num_register_tokens=0),
    "gated_reg2_p16": dict(patch_size=16, num_register_tokens=2, use_gated_mlp=True, hidden_act="silu"),
    "reg4_nobias": dict(
        patch_size=4, num_register_tokens=4, query_bias=False, value_bias=False, proj_bias=False
    ),
}


def _config(**overrides) -> DINOv3ViTConfig:
    base = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128, image_size=64,
                layerscale_value=0.5)  # fmt: skip
    base.update(overrides)
    return DINOv3ViTConfig(**base)


def _pair(tmp_path, name: str, **load_kwargs):
    torch.manual_seed(0)
    reference = DINOv3ViTModel(_config(**CONFIGS[name])).eval()
    reference.save_pretrained(tmp_path)
    packed, info = Dinov3PackedVisionModel.from_pretrained(tmp_path, output_loading_info=True, **load_kwargs)
    return reference, packed.eval(), info


def _images(patch_size: int, grids=GRIDS, channels: int = 3) -> list[torch.Tensor]:
    return [torch.randn(channels, h * patch_size, w * patch_size) for h, w in grids]


def _max_abs(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    assert torch.isfinite(a).all() and torch.isfinite(b).all()
    return (a - b).abs().max().item()


def _assert_close(a: torch.Tensor, b: torch.Tensor, tol: float = TOL) -> float:
    diff = _max_abs(a, b)
    if not (diff <= tol):  # NaN-safe: a NaN diff fails too
        raise AssertionError(f"max abs diff {diff} > {tol}")
    return diff


@pytest.mark.parametrize("name", list(CONFIGS))
def test_loads_standard_checkpoint_without_key_changes(tmp_path, name):
    reference, packed, info = _pair(tmp_path, name)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    assert packed.num_prefix_tokens == 1 + reference.config.num_register_tokens
    assert set(packed.state_dict()) == set(reference.state_dict())
    for key, value in reference.state_dict().items():
        assert torch.equal(packed.state_dict()[key], value), key


@pytest.mark.parametrize("name", list(CONFIGS))
def test_each_image_matches_standard_model(tmp_path, name):
    reference, packed, _ = _pair(tmp_path, name)
    p, prefix = reference.config.patch_size, packed.num_prefix_tokens
    images = _images(p)
    hidden_states, grid_thw = pack_images(images, p)
    with torch.no_grad():
        out = packed(hidden_states, grid_thw, output_hidden_states=True)
        expected_rows = sum(prefix + h * w for h, w in GRIDS)
        assert out.last_hidden_state.shape == (expected_rows, reference.config.hidden_size)
        assert out.pooler_output.shape == (len(images), reference.config.hidden_size)
        assert len(out.hidden_states) == reference.config.num_hidden_layers + 1
        worst = 0.0
        for i, image in enumerate(images):
            ref = reference(pixel_values=image[None], output_hidden_states=True)
            rows = unpack(out.last_hidden_state, grid_thw, prefix)[i]
            worst = max(worst, _assert_close(rows, ref.last_hidden_state[0]))
            worst = max(worst, _assert_close(out.pooler_output[i], ref.pooler_output[0]))
            assert len(ref.hidden_states) == len(out.hidden_states)
            for mine, theirs in zip(out.hidden_states, ref.hidden_states, strict=True):
                worst = max(worst, _assert_close(unpack(mine, grid_thw, prefix)[i], theirs[0]))
    print(f"{name}: max abs diff vs standard model {worst:.3g}")


def test_same_size_batch_matches_packed_rows(tmp_path):
    reference, packed, _ = _pair(tmp_path, "reg2_p4")
    images = _images(4, grids=[(3, 5)] * 3)
    hidden_states, grid_thw = pack_images(images, 4)
    with torch.no_grad():
        out = packed(hidden_states, grid_thw)
        ref = reference(pixel_values=torch.stack(images))
    for i, rows in enumerate(unpack(out.last_hidden_state, grid_thw, packed.num_prefix_tokens)):
        _assert_close(rows, ref.last_hidden_state[i])


def test_alone_equals_in_pack_and_permutation(tmp_path):
    _, packed, _ = _pair(tmp_path, "reg2_p4")
    prefix = packed.num_prefix_tokens
    images = _images(4)
    hidden_states, grid_thw = pack_images(images, 4)
    with torch.no_grad():
        together = unpack(packed(hidden_states, grid_thw).last_hidden_state, grid_thw, prefix)
        for image, rows in zip(images, together, strict=True):
            alone_hs, alone_grid = pack_images([image], 4)
            _assert_close(rows, packed(alone_hs, alone_grid).last_hidden_state)
        order = [3, 0, 5, 1, 4, 2]
        perm_hs, perm_grid = pack_images([images[j] for j in order], 4)
        perm_out = packed(perm_hs, perm_grid)
        permuted = unpack(perm_out.last_hidden_state, perm_grid, prefix)
        for k, j in enumerate(order):
            _assert_close(permuted[k], together[j])
            _assert_close(perm_out.pooler_output[k], together[j][0])


def test_int32_grid_thw(tmp_path):
    _, packed, _ = _pair(tmp_path, "reg0_p4")
    hidden_states, grid_thw = pack_images(_images(4), 4)
    with torch.no_grad():
        a = packed(hidden_states, grid_thw)
        b = packed(hidden_states, grid_thw.to(torch.int32))
    assert torch.equal(a.last_hidden_state, b.last_hidden_state)
    assert torch.equal(a.pooler_output, b.pooler_output)


def test_return_tuple(tmp_path):
    _, packed, _ = _pair(tmp_path, "reg2_p4")
    hidden_states, grid_thw = pack_images(_images(4, grids=[(2, 3), (1, 1)]), 4)
    with torch.no_grad():
        out = packed(hidden_states, grid_thw, return_dict=False)
    assert isinstance(out, tuple) and len(out) == 2
    assert out[1].shape == (2, 64)


def test_invalid_inputs_raise(tmp_path):
    _, packed, _ = _pair(tmp_path, "reg2_p4")
    hidden_states, grid_thw = pack_images(_images(4, grids=[(2, 3), (1, 1)]), 4)
    bad_t = grid_thw.clone()
    bad_t[1, 0] = 2
    with pytest.raises(ValueError, match="t=2"):
        packed(hidden_states, bad_t)
    with pytest.raises(ValueError, match="rows"):
        packed(hidden_states[:-1], grid_thw)
    with pytest.raises(ValueError):
        packed(hidden_states[:, :-1], grid_thw)


def test_forced_flash_on_cpu_raises(tmp_path):
    reference = DINOv3ViTModel(_config(**CONFIGS["reg2_p4"])).eval()
    reference.save_pretrained(tmp_path)
    hidden_states, grid_thw = pack_images(_images(4, grids=[(2, 3)]), 4)
    # transformers refuses at load time when flash-attn is missing; if it loads, the forward must refuse.
    try:
        packed = Dinov3PackedVisionModel.from_pretrained(tmp_path, attn_implementation="flash_attention_2")
    except (ImportError, ValueError):
        packed = Dinov3PackedVisionModel.from_pretrained(tmp_path).eval()
        packed.config._attn_implementation_internal = "flash_attention_2"
    assert packed.config._attn_implementation == "flash_attention_2"
    with pytest.raises(RuntimeError, match="cannot run"):
        packed(hidden_states, grid_thw)


@pytest.mark.parametrize("name", ["reg2_p4", "gated_reg2_p16"])
def test_eager_equals_sdpa(tmp_path, name):
    _, sdpa, _ = _pair(tmp_path, name, attn_implementation="sdpa")
    eager = Dinov3PackedVisionModel.from_pretrained(tmp_path, attn_implementation="eager").eval()
    assert eager.config._attn_implementation == "eager"
    p = sdpa.config.patch_size
    hidden_states, grid_thw = pack_images(_images(p), p)
    with torch.no_grad():
        a = sdpa(hidden_states, grid_thw)
        b = eager(hidden_states, grid_thw)
    _assert_close(a.last_hidden_state, b.last_hidden_state)
    _assert_close(a.pooler_output, b.pooler_output)


def test_train_mode_augments_rope_per_image(tmp_path):
    torch.manual_seed(0)
    reference = DINOv3ViTModel(_config(patch_size=4, pos_embed_shift=0.1)).eval()
    reference.save_pretrained(tmp_path)
    packed = Dinov3PackedVisionModel.from_pretrained(tmp_path)
    hidden_states, grid_thw = pack_images(_images(4, grids=[(3, 3)]), 4)
    with torch.no_grad():
        packed.eval()
        a = packed(hidden_states, grid_thw).last_hidden_state
        packed.train()
        b = packed(hidden_states, grid_thw).last_hidden_state
    assert torch.isfinite(b).all()
    assert not torch.equal(a[packed.num_prefix_tokens :], b[packed.num_prefix_tokens :])
